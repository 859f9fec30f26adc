"""examples/github-actions: a GitHub Classroom workflow in Classroom's own shape, grading with the student pack.

``classroom.yml`` is what GitHub Classroom generates for "Run command" tests (``name: Autograding Tests``,
push and repository_dispatch, job ``run-autograding-tests`` with the ``github-classroom[bot]`` guard,
``classroom-resources/autograding-command-grader@v1`` steps, ``autograding-grading-reporter@v1`` last), with
one test per released rubric check. It runs in the student's repository, so it installs the **student
pack** committed to the template (``.github/grader/numpy_nn_grader_pack-*.whl``), never the grader.

The fast tests read the workflow and check that shape, and that the tests are the pack's checks with their
points. The slow tests build a pack (``grader pack``), install it alone in a fresh environment
(``tests/student_pack.py``), lay out a student's repository and run every command-grader step as the action
does (its ``src/main.js``: ``setup-command`` then ``command`` through ``/bin/sh``, with only ``PATH``,
``HOME``, ``FORCE_COLOR`` and two DOTNET variables in the environment; exit 0 is "pass" and earns
``max-score``, any other exit "fail" and 0; a timeout is "error"; the result is base64 JSON). Then they total
the results as the reporter does (``src/main.js``, ``src/notify-classroom.js``: one ``<ID>_RESULTS``
variable per id in ``runners``, the points are the sum of the tests' scores).

PyYAML is not a dependency, so the workflow is read by ``read_workflow``: a reader for the YAML subset the
file is written in (block mappings with plain or quoted keys, ``- key:`` and ``- scalar`` sequences, plain
and quoted scalars, ``|`` blocks, comments), which fails loudly on anything else.
"""
from __future__ import annotations

import base64
import json
import re
import shutil
import subprocess
import time
import tomllib
import zipfile
from pathlib import Path

import pytest

from grader.pack.build import RELEASED_BY_DEFAULT, released_checks
from grader.rubric import load_rubric
from tests.conftest import REPO, SEED

EXAMPLE = REPO / "examples" / "github-actions"
WORKFLOW = EXAMPLE / "classroom.yml"
CORRECT = REPO / "tests" / "fixtures" / "notebooks" / "correct" / "relu_maximum_docstrings.ipynb"
CHECKS = ["activation.values", "d_activation.values", "d_activation.gradient", "forward.values",
          "backward.values", "backward.gradient", "training.converges"]
FAILING = ["backward.values", "backward.gradient", "training.converges"]  # the seed's: 50 of 100 points
COMMAND_GRADER = "classroom-resources/autograding-command-grader@v1"
REPORTER = "classroom-resources/autograding-grading-reporter@v1"
#: The command grader's inputs (its action.yml).
GRADER_INPUTS = {"test-name", "setup-command", "command", "timeout", "max-score"}
PACK_GLOB = ".github/grader/numpy_nn_grader_pack-*.whl"
ANSI = re.compile(r"\x1b\[[0-9;]*m")


# --------------------------------------------------------------------------- a reader for the workflow's YAML

_KEY = r"""(?:'(?P<single>[^']*)'|"(?P<double>[^"\\]*)"|(?P<plain>[A-Za-z0-9_.-]+))"""
_KEY_LINE = re.compile(_KEY + r":(?:\s+(?P<value>.*))?")


class _Reader:
    def __init__(self, text: str) -> None:
        assert "\t" not in text, "tabs are not valid YAML indentation"
        self.lines = text.splitlines()
        self.i = 0

    def _skip_blank(self) -> None:
        while self.i < len(self.lines) and (not self.lines[self.i].strip()
                                            or self.lines[self.i].lstrip().startswith("#")):
            self.i += 1

    def _indent(self) -> int:
        line = self.lines[self.i]
        return len(line) - len(line.lstrip(" "))

    def node(self, indent: int):
        self._skip_blank()
        if self.i >= len(self.lines) or self._indent() < indent:
            return None
        if self.lines[self.i].lstrip().startswith("- "):
            return self._sequence(self._indent())
        return self._mapping(self._indent())

    def _sequence(self, indent: int) -> list:
        items = []
        while True:
            self._skip_blank()
            if self.i >= len(self.lines) or self._indent() != indent or not self.lines[self.i].lstrip().startswith("- "):
                return items
            line = self.lines[self.i]
            item = line[indent + 2:]
            if _KEY_LINE.fullmatch(item.strip()):
                self.lines[self.i] = line[:indent] + "  " + item  # "- key: v" -> "  key: v"
                items.append(self._mapping(indent + 2))
            else:
                items.append(_scalar(item.strip()))
                self.i += 1

    def _mapping(self, indent: int) -> dict:
        result = {}
        while True:
            self._skip_blank()
            if self.i >= len(self.lines) or self._indent() < indent:
                return result
            assert self._indent() == indent, f"line {self.i + 1}: unexpected indentation"
            match = _KEY_LINE.fullmatch(self.lines[self.i].strip())
            assert match, f"line {self.i + 1}: not a 'key: value' line: {self.lines[self.i]!r}"
            key = next(match.group(kind) for kind in ("single", "double", "plain") if match.group(kind) is not None)
            value = match.group("value")
            assert key not in result, f"line {self.i + 1}: {key!r} given twice"
            self.i += 1
            if value is None or value.startswith("#"):
                result[key] = self.node(indent + 1)
            elif value == "|":
                result[key] = self._block(indent)
            else:
                result[key] = _scalar(value)

    def _block(self, indent: int) -> str:
        body = []
        while self.i < len(self.lines) and (not self.lines[self.i].strip() or self._indent() > indent):
            body.append(self.lines[self.i])
            self.i += 1
        while body and not body[-1].strip():
            body.pop()
        margin = min(len(line) - len(line.lstrip(" ")) for line in body if line.strip())
        return "\n".join(line[margin:] for line in body) + "\n"


def _scalar(text: str) -> str:
    if text.startswith('"'):
        end = text.index('"', 1)
        assert not text[end + 1:].strip() or text[end + 1:].strip().startswith("#"), text
        return json.loads(text[:end + 1])
    if text.startswith("'"):
        end = text.index("'", 1)
        assert not text[end + 1:].strip() or text[end + 1:].strip().startswith("#"), text
        return text[1:end]
    # Flow collections, anchors, aliases, tags, folded or chomped blocks: not in the subset.
    assert text[:1] not in set("[]{}&*!>|%@`"), f"not in the YAML subset this reader knows: {text!r}"
    return re.split(r"\s+#", text, maxsplit=1)[0].strip()


def read_workflow(text: str) -> dict:
    reader = _Reader(text)
    document = reader.node(0)
    reader._skip_blank()
    assert reader.i == len(reader.lines), f"line {reader.i + 1} was not read"
    return document


def test_the_reader_reads_what_the_workflow_uses():
    doc = read_workflow("a: 1  # note\n'on':\n  - push\n  - 'x y'\nb:\n  - name: x\n    run: |\n      one\n\n"
                        "      two\n  - uses: \"q # r\"\n    if: x != 'y[z]'\nc:\n")
    assert doc == {"a": "1", "on": ["push", "x y"], "b": [{"name": "x", "run": "one\n\ntwo\n"},
                                                          {"uses": "q # r", "if": "x != 'y[z]'"}], "c": None}


@pytest.mark.parametrize("text", ["on: [push]\n", "a: &x 1\n", "a: >\n  folded\n", "a: 1\na: 2\n", "a: |-\n  b\n"])
def test_the_reader_refuses_what_it_does_not_know(text):
    with pytest.raises(AssertionError):
        read_workflow(text)


# --------------------------------------------------------------------------- the workflow's shape


@pytest.fixture(scope="module")
def workflow() -> dict:
    return read_workflow(WORKFLOW.read_text(encoding="utf-8"))


def _job(workflow: dict) -> dict:
    return workflow["jobs"]["run-autograding-tests"]


def _grader_steps(workflow: dict) -> list[dict]:
    return [step for step in _job(workflow)["steps"] if step.get("uses") == COMMAND_GRADER]


def _step_id(check: str) -> str:
    """Classroom's id for a test: its name in lower case, with dashes (a step id cannot hold dots)."""
    return re.sub(r"[^a-z0-9]+", "-", check.lower()).strip("-")


def test_the_workflow_has_the_shape_classroom_generates(workflow):
    assert list(workflow) == ["name", "on", "permissions", "jobs"]  # no `env:`: it would not reach the commands
    assert workflow["name"] == "Autograding Tests"
    assert workflow["on"] == ["push", "repository_dispatch"]
    # Classroom's generator also writes `checks: write`, which the reporter stopped using in v1 (2024-11-13).
    assert workflow["permissions"] == {"actions": "read", "contents": "read"}
    assert list(workflow["jobs"]) == ["run-autograding-tests"]
    job = _job(workflow)
    assert job["runs-on"] == "ubuntu-latest" and job["if"] == "github.actor != 'github-classroom[bot]'"
    steps = job["steps"]
    assert [step.get("uses") for step in steps] == [
        "actions/checkout@v4", "actions/setup-python@v5", *[COMMAND_GRADER] * len(CHECKS), REPORTER]
    assert steps[0]["name"] == "Checkout code" and steps[-1]["name"] == "Autograding Reporter"
    assert steps[1]["with"] == {"python-version": "3.11"}
    for step in _grader_steps(workflow):
        assert set(step) == {"name", "id", "uses", "with"} and set(step["with"]) <= GRADER_INPUTS, step
        assert step["name"] == step["with"]["test-name"] and step["id"] == _step_id(step["name"])
        assert step["with"]["timeout"] == "10"  # minutes, Classroom's default


def test_one_test_per_released_check_worth_its_points(workflow):
    rubric = load_rubric(None, None)
    released = released_checks(rubric, RELEASED_BY_DEFAULT)
    assert released == CHECKS
    steps = _grader_steps(workflow)
    assert [step["name"] for step in steps] == released
    assert {step["name"]: int(step["with"]["max-score"]) for step in steps} == {
        check: rubric.checks[check].points for check in released}
    assert sum(int(step["with"]["max-score"]) for step in steps) == rubric.max_score == 100
    for step in steps:
        assert step["with"]["command"] == f"python -m pytest --grader 'simple_nn.ipynb::{step['name']}'"
    # The pack (and pytest, which runs its plugin) is installed once, by the first test, before it grades.
    assert [step["with"].get("setup-command") for step in steps] == [
        f"python -m pip install {PACK_GLOB} pytest", *[""] * (len(steps) - 1)]


def test_the_reporter_reads_every_test(workflow):
    reporter = _job(workflow)["steps"][-1]
    ids = [step["id"] for step in _grader_steps(workflow)]
    assert reporter["with"] == {"runners": ",".join(ids)}
    assert reporter["env"] == {f"{i.upper()}_RESULTS": f"${{{{steps.{i}.outputs.result}}}}" for i in ids}


def test_readme_tells_where_the_files_go_and_explains_every_step(workflow):
    readme = (EXAMPLE / "README.md").read_text(encoding="utf-8")
    for text in ("`.github/workflows/classroom.yml`", "grader pack --out .github/grader", "grader grade",
                 "grade of record", "hidden probes", "public probes"):
        assert text in readme, text
    for step in _job(workflow)["steps"]:
        if step.get("uses") != COMMAND_GRADER:
            assert f"**{step['name']}**" in readme, step["name"]
    for source in ("classroom-resources/autograding-command-grader", "classroom-resources/autograding-grading-reporter"):
        assert f"https://github.com/{source}" in readme and f"https://github.com/{source}" in WORKFLOW.read_text()


# --------------------------------------------------------------------------- running the tests with the pack


@pytest.fixture(scope="module")
def student_bin(student_python: Path) -> Path:
    """The bin folder of an environment holding the pack and its dependencies, nothing else of the grader."""
    return student_python.parent


def _lay_out(repo: Path, notebook: bytes, pack: Path | None) -> None:
    """A student's repository made from the template: the notebook, the workflow and (unless None) the pack."""
    (repo / ".github" / "workflows").mkdir(parents=True)
    shutil.copyfile(WORKFLOW, repo / ".github" / "workflows" / "classroom.yml")
    if pack is not None:
        (repo / ".github" / "grader").mkdir()
        shutil.copyfile(pack, repo / ".github" / "grader" / pack.name)
    (repo / "simple_nn.ipynb").write_bytes(notebook)


def _command_grader(step: dict, repo: Path, bin_dir: Path, home: Path) -> tuple[str, str]:
    """What autograding-command-grader@v1 does with ``step``: its output ``result`` and its log."""
    inputs = step["with"]
    timeout = float(inputs.get("timeout") or 10) * 60
    max_score = int(inputs.get("max-score") or 0)
    env = {"PATH": f"{bin_dir}:/usr/local/bin:/usr/bin:/bin", "FORCE_COLOR": "true", "DOTNET_CLI_HOME": "/tmp",
           "DOTNET_NOLOGO": "true", "HOME": str(home),
           # Here only: everything the setup command installs is already there, so nothing comes from an index.
           "PIP_NO_INDEX": "1", "PIP_DISABLE_PIP_VERSION_CHECK": "1"}
    log, status, message, started = "", "pass", None, time.monotonic()
    for command in (inputs.get("setup-command"), inputs["command"]):
        if not command:
            continue
        try:
            done = subprocess.run(["/bin/sh", "-c", command], cwd=repo, env=env, capture_output=True, text=True,
                                  timeout=timeout)
        except subprocess.TimeoutExpired:
            status, message = "error", "Command timed out"
            break
        log += done.stdout + done.stderr
        if done.returncode != 0:
            status, message = "fail", "failed with exit code 1"
            break
    result = {"version": 1, "status": status, "max_score": max_score, "tests": [{
        "name": inputs["test-name"], "status": status, "score": max_score if status == "pass" else 0,
        "message": message, "test_code": inputs["command"], "filename": "", "line_no": 0,
        "duration": int(1000 * (time.monotonic() - started))}]}
    return base64.b64encode(json.dumps(result).encode()).decode(), ANSI.sub("", log)


def _reporter(step: dict, outputs: dict[str, str]) -> dict:
    """What autograding-grading-reporter@v1 makes of the results: each runner's tests, the points it reports to
    Classroom, and whether it fails the job."""
    env = {}
    for name, value in step["env"].items():
        match = re.fullmatch(r"\$\{\{\s*steps\.([A-Za-z0-9_-]+)\.outputs\.result\s*\}\}", value)
        assert match, value
        env[name] = outputs[match.group(1)]  # a step id the workflow does not have is a KeyError
    results = {runner: json.loads(base64.b64decode(env[f"{runner.strip().upper()}_RESULTS"]))
               for runner in step["with"]["runners"].split(",")}
    scored = [result for result in results.values() if result["max_score"]]
    return {"tests": {test["name"]: test["status"] for result in results.values() for test in result["tests"]},
            "points": sum(test["score"] for result in scored for test in result["tests"]),
            "max_points": sum(result["max_score"] for result in scored),
            "fails_the_job": any(result["status"] in ("fail", "error") for result in results.values())}


def _run_workflow(workflow: dict, tmp_path: Path, notebook: bytes, pack: Path | None,
                  student_bin: Path) -> tuple[dict, dict[str, str]]:
    """Lay out a student's repository, run every test step there, then the reporter: its verdict and each log."""
    repo, home = tmp_path / "student-repo", tmp_path / "home"
    home.mkdir()
    _lay_out(repo, notebook, pack)
    outputs, logs = {}, {}
    for step in _grader_steps(workflow):
        outputs[step["id"]], logs[step["name"]] = _command_grader(step, repo, student_bin, home)
    return _reporter(_job(workflow)["steps"][-1], outputs), logs


@pytest.mark.slow
def test_the_pack_the_template_holds_has_the_workflows_tests(workflow, pack):
    with zipfile.ZipFile(pack) as wheel:
        packed = tomllib.loads(wheel.read("grader/rubrics/simple_nn.toml").decode())
    assert {step["name"]: int(step["with"]["max-score"]) for step in _grader_steps(workflow)} == {
        check: table["points"] for check, table in packed["checks"].items()}
    assert packed["max_score"] == 100


@pytest.mark.slow
def test_the_seed_notebook_gets_50_of_100_and_the_failing_checks_say_why(workflow, pack, student_bin, tmp_path):
    report, logs = _run_workflow(workflow, tmp_path, SEED.read_bytes(), pack, student_bin)
    assert [name for name, status in report["tests"].items() if status != "pass"] == FAILING
    assert (report["points"], report["max_points"], report["fails_the_job"]) == (50, 100, True)

    first = logs["activation.values"]  # the setup command installed the pack the template holds
    assert f"Processing ./.github/grader/{pack.name}" in first
    # The checks ran with the pack's plugin, from the student's environment.
    assert f"numpy-nn-grader-pack-{pack.name.split('-')[1]}" in first
    assert f"{student_bin.parent}/lib/" in first and "rubrics/simple_nn.toml" in first
    gradient = logs["backward.gradient"]
    assert "implied gradient wrong on 6 of 6 probes" in gradient and "(0 / 20 points)" in gradient
    assert "known mistake d_activation_on_w2_partials:" in gradient
    assert "prediction after 200 iterations" in logs["training.converges"]
    assert "1 passed" in logs["forward.values"] and "Traceback" not in "".join(logs.values())


@pytest.mark.slow
def test_a_correct_notebook_gets_every_point(workflow, pack, student_bin, tmp_path):
    report, logs = _run_workflow(workflow, tmp_path, CORRECT.read_bytes(), pack, student_bin)
    assert set(report["tests"].values()) == {"pass"} and list(report["tests"]) == CHECKS
    assert (report["points"], report["max_points"], report["fails_the_job"]) == (100, 100, False)
    assert all("1 passed" in log for log in logs.values())


@pytest.mark.slow
def test_a_script_handed_in_as_the_notebook_gets_nothing_and_is_told_why(workflow, pack, student_bin, tmp_path):
    report, logs = _run_workflow(workflow, tmp_path, b"print('I handed in a script')\n", pack, student_bin)
    assert set(report["tests"].values()) == {"fail"}
    assert (report["points"], report["max_points"], report["fails_the_job"]) == (0, 100, True)
    assert all("is not a Jupyter notebook" in log for log in logs.values())
    assert "not graded, so 0 of 20 points" in logs["backward.values"]


@pytest.mark.slow
def test_a_template_without_the_pack_fails_the_first_test_at_setup(workflow, student_bin, tmp_path):
    step = _grader_steps(workflow)[0]
    repo, home = tmp_path / "student-repo", tmp_path / "home"
    home.mkdir()
    _lay_out(repo, SEED.read_bytes(), None)
    encoded, log = _command_grader(step, repo, student_bin, home)
    result = json.loads(base64.b64decode(encoded))
    assert (result["status"], result["tests"][0]["score"]) == ("fail", 0)
    assert PACK_GLOB in log and "collected" not in log  # pip names the missing file; nothing was graded
