"""examples/github-actions: the workflow is well formed, and its grading step works on the seed notebook.

The workflow's grading step only runs ``bash .github/grade.sh "$NOTEBOOK" graded``, so the
test lays out a course repository (the script in ``.github/``, the notebook where ``NOTEBOOK``
says), runs that very ``run:`` line with the workflow's ``env:`` and this environment's
``grader`` on PATH, and checks what the student and the instructor get: the exit status, the
artifact files, the annotations, the Classroom output and the step summary.

PyYAML is not a dependency, so the workflow is read by ``read_workflow``: a reader for the
YAML subset the file is written in (block mappings, ``- key:`` sequences, plain and quoted
scalars, ``|`` blocks, comments), which fails loudly on anything else.
"""
from __future__ import annotations

import base64
import json
import os
import re
import shutil
import subprocess
import sys
import xml.etree.ElementTree as ET
from html.parser import HTMLParser
from pathlib import Path

import pytest

from tests.conftest import REPO, SEED

EXAMPLE = REPO / "examples" / "github-actions"
WORKFLOW = EXAMPLE / "grade.yml"
SCRIPT = EXAMPLE / "grade.sh"
CHECKS = ["activation.values", "d_activation.values", "d_activation.gradient", "forward.values",
          "backward.values", "backward.gradient", "training.converges"]
FAILING = ["backward.values", "backward.gradient", "training.converges"]
ANNOTATION = re.compile(r"^::error file=(?P<file>[^,]*),title=(?P<title>[^:]*)::(?P<message>.*)$")


# --------------------------------------------------------------------------- a reader for the workflow's YAML


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
            self.lines[self.i] = line[:indent] + "  " + line[indent + 2:]  # "- key: v" -> "  key: v"
            items.append(self._mapping(indent + 2))

    def _mapping(self, indent: int) -> dict:
        result = {}
        while True:
            self._skip_blank()
            if self.i >= len(self.lines) or self._indent() < indent:
                return result
            assert self._indent() == indent, f"line {self.i + 1}: unexpected indentation"
            match = re.fullmatch(r"([A-Za-z0-9_.-]+):(?:\s+(.*))?", self.lines[self.i].strip())
            assert match, f"line {self.i + 1}: not a 'key: value' line: {self.lines[self.i]!r}"
            key, value = match.group(1), match.group(2)
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
        return text[1:text.index("'", 1)]
    return re.split(r"\s+#", text, maxsplit=1)[0].strip()


def read_workflow(text: str) -> dict:
    reader = _Reader(text)
    document = reader.node(0)
    reader._skip_blank()
    assert reader.i == len(reader.lines), f"line {reader.i + 1} was not read"
    return document


def test_the_reader_reads_what_the_workflow_uses():
    doc = read_workflow('a: 1  # note\nb:\n  - name: x\n    run: |\n      one\n\n      two\n  - uses: "q # r"\nc:\n')
    assert doc == {"a": "1", "b": [{"name": "x", "run": "one\n\ntwo\n"}, {"uses": "q # r"}], "c": None}


# --------------------------------------------------------------------------- the workflow


@pytest.fixture(scope="module")
def workflow() -> dict:
    return read_workflow(WORKFLOW.read_text(encoding="utf-8"))


def _steps(workflow: dict) -> dict[str, dict]:
    steps = workflow["jobs"]["grade"]["steps"]
    return {step.get("name"): step for step in steps}


def test_workflow_triggers_installs_grades_and_uploads(workflow):
    assert set(workflow["on"]) >= {"push", "pull_request"}
    env = workflow["env"]
    assert env["NOTEBOOK"].endswith(".ipynb") and env["FAIL_UNDER"] == "60"
    assert env["GRADER_PACKAGE"].startswith("grader @ git+https://github.com/")
    steps = list(_steps(workflow).values())
    assert [step.get("uses", "run").split("@")[0] for step in steps] == [
        "actions/checkout", "actions/setup-python", "run", "run", "actions/upload-artifact"]
    checkout, python, install, grade, upload = steps
    assert python["with"]["python-version"] == "3.11"
    assert 'pip install "$GRADER_PACKAGE"' in install["run"]
    assert grade["id"] == "grade" and grade["run"] == 'bash .github/grade.sh "$NOTEBOOK" graded'
    assert upload["uses"] == "actions/upload-artifact@v4" and upload["if"] == "always()"
    assert upload["with"]["path"].split() == ["graded/report.html", "graded/junit.xml"]


def test_readme_tells_where_the_files_go_and_explains_every_step(workflow):
    readme = (EXAMPLE / "README.md").read_text(encoding="utf-8")
    assert "`.github/workflows/grade.yml`" in readme and "`.github/grade.sh`" in readme
    for name in _steps(workflow):
        assert f"**{name}**" in readme, name
    for env in workflow["env"]:
        assert f"`{env}`" in readme, env


def test_the_script_runs_the_documented_grader_commands():
    script = SCRIPT.read_text(encoding="utf-8")
    subprocess.run(["bash", "-n", str(SCRIPT)], check=True)
    for fmt, target in (("html", "report.html"), ("junit", "junit.xml"), ("classroom", "classroom.json")):
        assert re.search(rf'grader check "\$notebook" .*--format {fmt} > "\$out/{target}"', script), fmt
    assert re.search(r'--format json --fail-under "\$fail_under"', script)


# --------------------------------------------------------------------------- running the grading step


def _path_with_grader(tmp_path: Path) -> str:
    """PATH with this environment's ``grader`` and ``python`` first (shims when grader is not installed)."""
    bin_dir = Path(sys.executable).parent
    if not (bin_dir / "grader").exists():
        bin_dir = tmp_path / "bin"
        bin_dir.mkdir()
        for name, command in (("grader", f'"{sys.executable}" -m grader'), ("python", f'"{sys.executable}"')):
            shim = bin_dir / name
            shim.write_text(f'#!/bin/sh\nPYTHONPATH="{REPO}${{PYTHONPATH:+:$PYTHONPATH}}" exec {command} "$@"\n')
            shim.chmod(0o755)
    return f"{bin_dir}{os.pathsep}{os.environ.get('PATH', '')}"


def _run_grade_step(workflow: dict, repo: Path, notebook_bytes: bytes, **env: str) -> subprocess.CompletedProcess:
    """Lay out a course repository in ``repo`` and run the workflow's grading step there."""
    (repo / ".github").mkdir(parents=True)
    shutil.copyfile(SCRIPT, repo / ".github" / "grade.sh")
    notebook = repo / workflow["env"]["NOTEBOOK"]
    notebook.parent.mkdir(parents=True, exist_ok=True)
    notebook.write_bytes(notebook_bytes)
    environment = {name: value for name, value in os.environ.items() if name not in ("GRADER_ARGS", "PYTHON")}
    environment.update(workflow["env"])
    environment.update(PATH=_path_with_grader(repo.parent), GITHUB_OUTPUT=str(repo.parent / "github_output"),
                       GITHUB_STEP_SUMMARY=str(repo.parent / "step_summary.md"), **env)
    step = _steps(workflow)["Grade the notebook"]
    # The shell GitHub Actions uses for a `run:` step on Linux.
    return subprocess.run(["bash", "--noprofile", "--norc", "-eo", "pipefail", "-c", step["run"]], cwd=repo,
                          env=environment, capture_output=True, text=True, timeout=300)


def _annotations(stdout: str) -> list[dict[str, str]]:
    found = []
    for line in stdout.splitlines():
        if line.startswith("::error"):
            match = ANNOTATION.match(line)
            assert match, f"malformed annotation: {line!r}"
            found.append(match.groupdict())
    return found


@pytest.mark.slow
def test_grading_step_on_the_seed_notebook(workflow, tmp_path):
    repo = tmp_path / "course"
    result = _run_grade_step(workflow, repo, SEED.read_bytes())
    assert result.returncode == 1, result.stderr  # 50 % is under the pass mark of 60 %
    assert "Traceback" not in result.stderr

    upload = _steps(workflow)["Upload the report"]
    artifacts = [repo / path for path in upload["with"]["path"].split()]
    assert all(path.is_file() for path in artifacts)

    suite = ET.parse(repo / "graded" / "junit.xml").getroot()
    cases = list(suite.iter("testcase"))
    assert [case.get("name") for case in cases] == CHECKS
    assert [case.get("name") for case in cases if case.find("failure") is not None] == FAILING

    class Collect(HTMLParser):
        def __init__(self):
            super().__init__()
            self.tags: set[str] = set()

        def handle_starttag(self, tag, attrs):
            self.tags.add(tag)

    page = (repo / "graded" / "report.html").read_text(encoding="utf-8")
    parser = Collect()
    parser.feed(page)
    parser.close()
    assert {"html", "head", "body", "table"} <= parser.tags
    assert all(check in page for check in CHECKS) and "d_activation_on_w2_partials" in page

    notebook = workflow["env"]["NOTEBOOK"]
    annotations = _annotations(result.stdout)
    assert [a["title"] for a in annotations] == FAILING
    assert {a["file"] for a in annotations} == {notebook}
    by_check = {a["title"]: a["message"] for a in annotations}
    assert by_check["backward.values"].startswith("6 of 6 probes differ from the reference")
    assert by_check["backward.gradient"].startswith("implied gradient wrong on 6 of 6 probes")
    for check in ("backward.values", "backward.gradient"):
        assert "%0Aknown mistake d_activation_on_w2_partials: " in by_check[check]
    assert by_check["training.converges"].startswith("prediction after 200 iterations is 0.966886")
    assert "\n" not in "".join(by_check.values())
    assert f"::notice title=grade::{notebook}: 50/100 (50%25), pass mark 60%25" in result.stdout.splitlines()

    classroom = json.loads((repo / "graded" / "classroom.json").read_text(encoding="utf-8"))
    assert [test["name"] for test in classroom["tests"]] == CHECKS
    output = (tmp_path / "github_output").read_text(encoding="utf-8").splitlines()
    assert len(output) == 1 and output[0].startswith("result=")
    assert json.loads(base64.b64decode(output[0][len("result="):])) == classroom
    summary = (tmp_path / "step_summary.md").read_text(encoding="utf-8")
    assert f"### {notebook}: 50/100 (50%), pass mark 60%" in summary and "| `training.converges` | ❌ | 0/10 |" in summary


@pytest.mark.slow
def test_grading_step_passes_at_the_mark_and_forwards_grader_args(workflow, tmp_path):
    repo = tmp_path / "course"
    result = _run_grade_step(workflow, repo, SEED.read_bytes(), FAIL_UNDER="50", GRADER_ARGS="--seed 1")
    assert result.returncode == 0, result.stdout + result.stderr
    report = json.loads((repo / "graded" / "report.json").read_text(encoding="utf-8"))
    assert report["seed"] == 1 and report["score"] == 50
    assert [a["title"] for a in _annotations(result.stdout)] == FAILING  # still shown, the run is green


@pytest.mark.slow
def test_grading_step_on_a_file_that_is_not_a_notebook(workflow, tmp_path):
    repo = tmp_path / "course"
    result = _run_grade_step(workflow, repo, b"print('I handed in a script')\n")
    assert result.returncode == 2
    annotations = _annotations(result.stdout)
    assert [a["title"] for a in annotations] == ["grading"]
    message = annotations[0]["message"]
    assert "is not a Jupyter notebook" in message and message.endswith("resubmit.")
    suite = ET.parse(repo / "graded" / "junit.xml").getroot()
    assert [case.get("name") for case in suite.iter("testcase")] == ["grading"]
    assert (repo / "graded" / "report.html").is_file()
