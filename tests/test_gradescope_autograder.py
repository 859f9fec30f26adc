"""``grader gradescope``: the autograder zip, and run_autograder in a simulated ``/autograder``.

Each end-to-end test builds the zip, unpacks it the way Gradescope does (into ``source/``, with
``run_autograder`` copied to the root and the zip's permissions kept, as ``unzip`` keeps them),
puts a submission in ``submission/`` and runs the real ``run_autograder`` as a subprocess. The
test venv's Python stands in for the one setup.sh installs (``GRADER_AUTOGRADER_PYTHON``). Every
results.json is checked against Gradescope's specification (gradescope/autograder_samples,
``docs/specs.md``): a finite top-level score, or every test scored; each test with name, score,
max_score, status, visibility and output.
"""
from __future__ import annotations

import base64
import hashlib
import json
import math
import os
import shutil
import stat
import subprocess
import sys
import time
import zipfile
from importlib.metadata import version
from pathlib import Path

import pytest

from grader.cli import main as cli_main
from grader.integrations import gradescope_autograder as gs
from grader.model import VISIBILITIES

from conftest import CORRECT_CELLS, REPO, SEED, notebook_json

CORRECT = REPO / "tests" / "fixtures" / "notebooks" / "correct" / "relu_inplace_template_style.ipynb"
WITH_HELPER = REPO / "tests" / "fixtures" / "notebooks" / "correct" / "py_helper_beside"
LOGISTIC = REPO / "tests" / "assignments" / "logistic"
SEED_BUG = "d_activation_on_w2_partials"
STATUSES = ("passed", "failed")


# ----------------------------------------------------------------------------- helpers


@pytest.fixture(scope="module")
def built(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The zip for the default assignment and rubric."""
    out = tmp_path_factory.mktemp("zip") / "autograder.zip"
    gs.build_autograder(out)
    return out


def hidden_rubric(folder: Path) -> Path:
    """simple_nn's rubric with backward.gradient hidden and training after the due date (template beside it)."""
    text = (REPO / "rubrics" / "simple_nn.toml").read_text(encoding="utf-8")
    text = text.replace('[checks."backward.gradient"]\npoints = 20\npartial_credit = true\n',
                        '[checks."backward.gradient"]\npoints = 20\npartial_credit = true\nvisibility = "hidden"\n')
    text = text.replace('[checks."training.converges"]\npoints = 10\npartial_credit = false\n',
                        '[checks."training.converges"]\npoints = 10\npartial_credit = false\n'
                        'visibility = "after_due_date"\n')
    assert text.count("visibility") == 2
    folder.mkdir(parents=True, exist_ok=True)
    shutil.copy(REPO / "rubrics" / "simple_nn_seed.ipynb", folder / "simple_nn_seed.ipynb")
    path = folder / "course.toml"
    path.write_text(text, encoding="utf-8")
    return path


@pytest.fixture(scope="module")
def built_hidden(tmp_path_factory: pytest.TempPathFactory) -> Path:
    folder = tmp_path_factory.mktemp("hidden")
    out = folder / "autograder.zip"
    gs.build_autograder(out, rubric=str(hidden_rubric(folder / "course")))
    return out


def unpack(archive: Path, root: Path) -> None:
    """What Gradescope's image build does: the zip into source/ (modes kept), run_autograder copied to the root."""
    source = root / "source"
    with zipfile.ZipFile(archive) as zipped:
        for info in zipped.infolist():
            target = source / info.filename
            target.parent.mkdir(parents=True, exist_ok=True)
            target.write_bytes(zipped.read(info))
            mode = (info.external_attr >> 16) & 0o777
            if mode:
                target.chmod(mode)
    shutil.copy2(source / "run_autograder", root / "run_autograder")
    (root / "submission").mkdir()
    (root / "results").mkdir()


def run_autograder(archive: Path, root: Path, files: dict[str, bytes | Path], **env: str
                   ) -> tuple[dict, subprocess.CompletedProcess[str], float]:
    """Unpack ``archive`` under ``root``, submit ``files`` and run run_autograder; (results.json, process, seconds)."""
    unpack(archive, root)
    for name, content in files.items():
        target = root / "submission" / name
        target.parent.mkdir(parents=True, exist_ok=True)
        if isinstance(content, Path):
            shutil.copy(content, target)
        else:
            target.write_bytes(content)
    (root / "submission_metadata.json").write_text(json.dumps({"id": 4242, "users": [{"name": "Ada"}]}))
    environment = {**os.environ, "GRADER_AUTOGRADER_ROOT": str(root), "GRADER_AUTOGRADER_PYTHON": sys.executable,
                   **env}
    started = time.perf_counter()
    done = subprocess.run([str(root / "run_autograder")], env=environment, capture_output=True, text=True,
                          timeout=120)
    seconds = time.perf_counter() - started
    results = root / "results" / "results.json"
    assert results.is_file(), f"no results.json; stdout:\n{done.stdout}\nstderr:\n{done.stderr}"
    document = json.loads(results.read_text(encoding="utf-8"), parse_constant=_reject)
    assert_valid(document)
    return document, done, seconds


def _reject(token: str) -> None:
    raise ValueError(f"non-standard JSON token {token}")


def assert_valid(document: dict) -> None:
    """Gradescope's results.json rules: a finite score at the top or on every test; each test complete."""
    assert isinstance(document, dict)
    tests = document.get("tests")
    assert isinstance(tests, list) and tests, "never an empty list of tests"
    if "score" in document:
        assert _finite(document["score"])
    for test in tests:
        assert isinstance(test["name"], str) and test["name"]
        assert _finite(test["score"]) and _finite(test["max_score"])
        assert test["status"] in STATUSES
        assert test["visibility"] in VISIBILITIES
        assert isinstance(test["output"], str) and test["output"]
    assert document.get("visibility", "visible") in VISIBILITIES
    assert document.get("stdout_visibility", "visible") in VISIBILITIES
    assert isinstance(document["output"], str) and document["output"].strip()


def _finite(value: object) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)


def by_name(document: dict) -> dict[str, dict]:
    return {test["name"]: test for test in document["tests"]}


def fake_python(folder: Path, body: str) -> Path:
    """A stand-in for the venv's Python that does ``body`` (a bash script) instead of grading."""
    path = folder / "fake-python"
    path.write_text("#!/usr/bin/env bash\n" + body + "\n", encoding="utf-8")
    path.chmod(0o755)
    return path


# ----------------------------------------------------------------------------- the zip


def test_zip_holds_the_scripts_executable_with_lf_endings(built: Path) -> None:
    with zipfile.ZipFile(built) as zipped:
        infos = {info.filename: info for info in zipped.infolist()}
        for script in (gs.SETUP, gs.RUN):
            info = infos[script]  # at the root of the archive, as Gradescope requires
            mode = info.external_attr >> 16
            assert stat.S_ISREG(mode) and mode & 0o111 == 0o111, f"{script} is not executable: {oct(mode)}"
            assert info.create_system == 3
            data = zipped.read(info)
            assert data.startswith(b"#!/usr/bin/env bash\n")
            assert b"\r" not in data
        assert not infos[gs.CONFIG_NAME].external_attr >> 16 & 0o111
        config = json.loads(zipped.read(gs.CONFIG_NAME))
    assert config == {"schema": gs.CONFIG_SCHEMA, "rubric": None, "assignment": None, "seed": 0, "max_score": 100.0,
                      "time_limit_s": gs.DEFAULT_TIME_LIMIT_S, "grader_version": version(gs.DISTRIBUTION)}
    assert {name.split("/")[0] for name in infos} == {gs.SETUP, gs.RUN, gs.CONFIG_NAME, gs.CONSTRAINTS, gs.WHEELS,
                                                     gs.FALLBACK}


@pytest.mark.parametrize("script", [gs.SETUP, gs.RUN])
def test_scripts_are_valid_bash(built: Path, tmp_path: Path, script: str) -> None:
    path = tmp_path / script
    path.write_bytes(zipfile.ZipFile(built).read(script))
    done = subprocess.run(["bash", "-n", str(path)], capture_output=True, text=True)
    assert done.returncode == 0, done.stderr


def test_setup_installs_python_311_and_the_bundled_wheel_into_a_venv(built: Path) -> None:
    setup = zipfile.ZipFile(built).read(gs.SETUP).decode()
    assert "set -euo pipefail" in setup
    assert "sys.version_info < (3, 11)" in setup and "python3.11-venv" in setup and "ppa:deadsnakes/ppa" in setup
    assert '"$PYTHON" -m venv "$VENV"' in setup
    assert '--constraint "$SOURCE/constraints.txt" "$SOURCE"/wheels/*.whl' in setup
    assert "self-test" in setup


def test_the_wheel_is_complete_and_its_record_is_right(built: Path) -> None:
    with zipfile.ZipFile(built) as zipped:
        (wheel_name,) = [n for n in zipped.namelist() if n.startswith(gs.WHEELS + "/")]
        data = zipped.read(wheel_name)
    assert wheel_name == f"{gs.WHEELS}/numpy_nn_grader-{version(gs.DISTRIBUTION)}-py3-none-any.whl"
    import io

    with zipfile.ZipFile(io.BytesIO(data)) as wheel:
        names = set(wheel.namelist())
        info = f"numpy_nn_grader-{version(gs.DISTRIBUTION)}.dist-info"
        for needed in ("grader/cli.py", "grader/py.typed", "grader/sandbox/worker.py", "grader/render/visibility.py",
                       "grader/integrations/gradescope_autograder.py", "grader/reference/simple_nn/__init__.py",
                       "grader/rubrics/simple_nn.toml", "grader/rubrics/simple_nn_seed.ipynb",
                       f"{info}/METADATA", f"{info}/WHEEL", f"{info}/entry_points.txt", f"{info}/RECORD"):
            assert needed in names, needed
        assert not [n for n in names if "__pycache__" in n or n.endswith(".pyc")]
        assert "grader = grader.cli:run" in wheel.read(f"{info}/entry_points.txt").decode()
        record = wheel.read(f"{info}/RECORD").decode().splitlines()
        listed = {}
        for line in record:
            name, digest, size = line.rsplit(",", 2)
            listed[name] = (digest, size)
        assert set(listed) == names
        for name in names - {f"{info}/RECORD"}:
            content = wheel.read(name)
            expected = base64.urlsafe_b64encode(hashlib.sha256(content).digest()).rstrip(b"=").decode()
            assert listed[name] == (f"sha256={expected}", str(len(content))), name
        # The checkout's files, byte for byte.
        assert wheel.read("grader/rubrics/simple_nn.toml") == (REPO / "rubrics" / "simple_nn.toml").read_bytes()


def test_constraints_pin_the_dependencies_installed_here(built: Path) -> None:
    text = zipfile.ZipFile(built).read(gs.CONSTRAINTS).decode()
    pins = [line for line in text.splitlines() if line and not line.startswith("#")]
    assert f"numpy=={version('numpy')}" in pins and f"nbformat=={version('nbformat')}" in pins
    assert f"ipython=={version('ipython')}" in pins
    assert not [pin for pin in pins if pin.startswith(("pytest==", "hypothesis==", "mypy=="))], "test extras pinned"
    assert not [pin for pin in pins if pin.startswith("numpy-nn-grader")]


def test_the_same_inputs_give_the_same_zip(built: Path, tmp_path: Path) -> None:
    again = tmp_path / "again.zip"
    gs.build_autograder(again)
    assert again.read_bytes() == built.read_bytes()


def test_fallback_documents_are_valid_and_carry_no_score(built: Path) -> None:
    with zipfile.ZipFile(built) as zipped:
        for kind in ("timeout", "crash"):
            document = json.loads(zipped.read(f"{gs.FALLBACK}/{kind}.json"))
            assert_valid(document)
            assert "score" not in document
            assert document["extra_data"]["failure"] == kind
            grading, detail = document["tests"]
            assert grading["visibility"] == "visible" and grading["max_score"] == 100.0
            assert detail["visibility"] == "hidden" and detail["max_score"] == 0.0


def test_a_custom_assignment_folder_is_bundled_and_loads_from_the_zip(tmp_path: Path) -> None:
    out = tmp_path / "logistic.zip"
    gs.build_autograder(out, assignment=str(LOGISTIC))
    source = tmp_path / "source"
    with zipfile.ZipFile(out) as zipped:
        names = zipped.namelist()
        zipped.extractall(source)
    assert f"{gs.BUNDLE}/logistic/__init__.py" in names and f"{gs.BUNDLE}/logistic/rubric.toml" in names
    assert not [n for n in names if "__pycache__" in n]
    config = gs.Config.read(source)
    assert (config.rubric, config.assignment) == (None, f"{gs.BUNDLE}/logistic")
    rubric = config.load_rubric(source)
    assert rubric.assignment.name == "logistic"
    assert Path(rubric.assignment.path).is_relative_to(source)


def test_a_rubric_by_path_keeps_its_relative_references(tmp_path: Path) -> None:
    course = tmp_path / "course"
    shutil.copytree(LOGISTIC, course / "assignments" / "logistic",
                    ignore=shutil.ignore_patterns("__pycache__"))
    text = (LOGISTIC / "rubric.toml").read_text(encoding="utf-8")
    rubric = course / "rubrics" / "logistic.toml"
    rubric.parent.mkdir()
    rubric.write_text('assignment = "../assignments/logistic"\n' + text.replace('assignment = "', '# was: "'),
                      encoding="utf-8")
    out = tmp_path / "autograder.zip"
    gs.build_autograder(out, rubric=str(rubric))
    source = tmp_path / "source"
    zipfile.ZipFile(out).extractall(source)
    config = gs.Config.read(source)
    assert config.rubric == f"{gs.BUNDLE}/rubrics/logistic.toml" and config.assignment is None
    loaded = config.load_rubric(source)
    assert loaded.assignment.name == "logistic" and Path(loaded.path).is_relative_to(source)


def test_hidden_checks_with_points_get_a_note_for_the_instructor(tmp_path: Path) -> None:
    built = gs.build_autograder(tmp_path / "a.zip", rubric=str(hidden_rubric(tmp_path / "course")))
    (note,) = built.notes
    assert "backward.gradient" in note and "20 points" in note and "after_published" in note
    assert "training.converges" not in note  # after_due_date hides the total by itself


def test_cli_builds_the_zip_and_says_what_is_in_it(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / "autograder.zip"
    assert cli_main(["gradescope", "--out", str(out), "--rubric", "simple_nn", "--time-limit", "300"]) == 0
    err = capsys.readouterr().err
    assert str(out) in err and "rubric simple_nn" in err and "Configure Autograder" in err
    config = json.loads(zipfile.ZipFile(out).read(gs.CONFIG_NAME))
    assert config["rubric"] == "simple_nn" and config["time_limit_s"] == 300
    assert 'GRADER_AUTOGRADER_TIMEOUT:-300}' in zipfile.ZipFile(out).read(gs.RUN).decode()


@pytest.mark.parametrize("argv, words", [
    (["--out", "{tmp}"], "is a folder"),
    (["--out", "{tmp}/a.zip", "--rubric", "{tmp}/missing.toml"], "No rubric named"),
    (["--out", "{tmp}/a.zip", "--time-limit", "5"], "--time-limit"),
])
def test_cli_errors_are_one_sentence_and_exit_2(tmp_path: Path, capsys: pytest.CaptureFixture[str],
                                                argv: list[str], words: str) -> None:
    code = cli_main(["gradescope", *[a.format(tmp=tmp_path) for a in argv]])
    assert code == 2
    err = capsys.readouterr().err
    assert words in err
    assert not (tmp_path / "a.zip").exists()


# ----------------------------------------------------------------------------- run_autograder, no sandbox


def test_a_python_that_does_not_start_still_leaves_a_results_json(built: Path, tmp_path: Path) -> None:
    document, done, _ = run_autograder(built, tmp_path / "autograder", {"nn.ipynb": SEED},
                                       GRADER_AUTOGRADER_PYTHON=str(tmp_path / "no-such-python"))
    assert done.returncode == 0
    assert "score" not in document and document["extra_data"]["failure"] == "crash"
    assert "not of your notebook" in document["output"]
    assert "exit status 127" in done.stdout


def test_a_grader_that_ignores_the_time_limit_is_killed_and_reported(built: Path, tmp_path: Path) -> None:
    stubborn = fake_python(tmp_path, "trap '' TERM\nsleep 60")
    document, _, seconds = run_autograder(built, tmp_path / "autograder", {"nn.ipynb": SEED},
                                          GRADER_AUTOGRADER_PYTHON=str(stubborn), GRADER_AUTOGRADER_TIMEOUT="1",
                                          GRADER_AUTOGRADER_KILL_AFTER="1")
    assert seconds < 10
    assert "score" not in document and document["extra_data"]["failure"] == "timeout"
    assert "Grading stopped after" in document["output"]


def test_a_grader_that_writes_half_a_file_and_dies_is_replaced(built: Path, tmp_path: Path) -> None:
    dying = fake_python(tmp_path, ': > "$GRADER_AUTOGRADER_ROOT/results/results.json"\nkill -SEGV $$')
    document, _, _ = run_autograder(built, tmp_path / "autograder", {"nn.ipynb": SEED},
                                    GRADER_AUTOGRADER_PYTHON=str(dying))
    assert document["extra_data"]["failure"] == "crash"


def test_a_grader_crash_in_python_is_a_failure_document(built: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                                        capsys: pytest.CaptureFixture[str]) -> None:
    root = tmp_path / "autograder"
    unpack(built, root)
    (root / "submission" / "nn.ipynb").write_bytes(SEED.read_bytes())

    def broken(*args: object, **kwargs: object) -> None:
        raise RuntimeError("the grader broke <b>here</b>")

    monkeypatch.setattr(gs, "grade_submission", broken)
    assert gs.run(root) == 2
    document = json.loads((root / "results" / "results.json").read_text())
    assert_valid(document)
    assert "score" not in document and document["extra_data"]["failure"] == "crash"
    grading, detail = document["tests"]
    assert grading["max_score"] == 100.0 and grading["score"] == 0.0 and grading["status"] == "failed"
    assert "RuntimeError: the grader broke" in detail["output"] and detail["visibility"] == "hidden"
    assert "RuntimeError" not in document["output"]  # the student's text names no internals
    assert "Traceback (most recent call last)" in capsys.readouterr().out  # the instructor's stdout


def test_an_unreadable_config_is_a_failure_document(tmp_path: Path) -> None:
    root = tmp_path / "autograder"
    (root / "source").mkdir(parents=True)
    (root / "source" / gs.CONFIG_NAME).write_text("{not json")
    assert gs.run(root) == 2
    document = json.loads((root / "results" / "results.json").read_text())
    assert_valid(document)
    assert "cannot be read" in by_name(document)[gs.FAILURE_DETAIL_TEST]["output"]


# ----------------------------------------------------------------------------- run_autograder, grading


@pytest.mark.slow
def test_the_seed_notebook_scores_50_and_names_the_backward_bug(built: Path, tmp_path: Path) -> None:
    document, done, _ = run_autograder(built, tmp_path / "autograder", {"simple_nn_seed.ipynb": SEED})
    assert done.returncode == 0, done.stdout + done.stderr
    assert document["score"] == 50.0
    assert document["output"].startswith("**Score: 50 / 100 (50%)**")
    tests = by_name(document)
    assert [t["status"] for t in document["tests"]].count("failed") == 3
    assert tests["backward.values"]["status"] == "failed" and SEED_BUG in tests["backward.values"]["output"]
    assert tests["forward.values"]["status"] == "passed"
    assert {t["visibility"] for t in document["tests"]} == {"visible"}
    assert document["extra_data"]["submission"] == "simple_nn_seed.ipynb"
    assert "simple_nn_seed.ipynb: graded, 50/100" in done.stdout


@pytest.mark.slow
def test_a_correct_solution_scores_full_marks(built: Path, tmp_path: Path) -> None:
    document, _, _ = run_autograder(built, tmp_path / "autograder", {"homework/nn.ipynb": CORRECT})
    assert document["score"] == 100.0
    assert all(t["status"] == "passed" for t in document["tests"])
    assert document["extra_data"]["submission"] == "homework/nn.ipynb"


@pytest.mark.slow
def test_a_helper_module_beside_the_notebook_is_importable(built: Path, tmp_path: Path) -> None:
    files: dict[str, bytes | Path] = {p.name: p for p in WITH_HELPER.iterdir()}
    document, _, _ = run_autograder(built, tmp_path / "autograder", files)
    assert document["score"] == 100.0


@pytest.mark.slow
def test_of_several_notebooks_the_one_defining_the_functions_is_graded(built: Path, tmp_path: Path) -> None:
    scratch = notebook_json(["import numpy as np", "print(np.ones(3))"]).encode()
    document, _, _ = run_autograder(built, tmp_path / "autograder", {"scratch.ipynb": scratch, "final.ipynb": CORRECT})
    assert document["score"] == 100.0
    assert "final.ipynb was graded" in document["output"] and "scratch.ipynb" in document["output"]


@pytest.mark.parametrize("files, words", [
    ({"solution.py": b"def forward(x, w1, w2): ...\n"}, "(it holds solution.py)"),
    ({}, "(it is empty)"),
])
@pytest.mark.slow
def test_no_notebook_is_an_error_page_telling_the_student_what_to_upload(built: Path, tmp_path: Path,
                                                                           files: dict[str, bytes], words: str) -> None:
    document, done, _ = run_autograder(built, tmp_path / "autograder", files)
    assert done.returncode == 0
    assert document["score"] == 0.0 and document["extra_data"]["status"] == "error"
    (grading,) = document["tests"]
    assert grading["name"] == "grading" and grading["status"] == "failed" and grading["max_score"] == 100.0
    assert "No notebook (.ipynb) was found in your submission" in document["output"] and words in document["output"]
    assert "simple_nn_seed.ipynb" in document["output"]


@pytest.mark.slow
def test_two_equally_good_notebooks_ask_the_student_for_one(built: Path, tmp_path: Path) -> None:
    document, _, _ = run_autograder(built, tmp_path / "autograder", {"a.ipynb": SEED, "b.ipynb": CORRECT})
    assert document["extra_data"]["status"] == "error"
    assert document["output"].startswith("**Not graded:** Your submission holds 2 notebooks (a.ipynb, b.ipynb)")
    assert "please submit only the notebook to grade" in document["output"]
    assert str(tmp_path) not in json.dumps(document)


@pytest.mark.slow
def test_a_notebook_that_kills_its_python_is_still_graded(built: Path, tmp_path: Path) -> None:
    crashing = notebook_json([*CORRECT_CELLS, "import os\nos._exit(3)"]).encode()
    document, _, _ = run_autograder(built, tmp_path / "autograder", {"nn.ipynb": crashing})
    assert document["score"] == 100.0
    assert "crashed" in document["output"]


@pytest.mark.slow
def test_a_notebook_that_runs_past_the_time_limit_gets_a_timeout_page(built: Path, tmp_path: Path) -> None:
    endless = notebook_json(["import time\nwhile True:\n    time.sleep(0.05)", *CORRECT_CELLS]).encode()
    document, done, seconds = run_autograder(built, tmp_path / "autograder", {"nn.ipynb": endless},
                                             GRADER_AUTOGRADER_TIMEOUT="3")
    assert seconds < 9, "the grader itself should stop at the limit, not be killed 10 s later"
    assert "score" not in document and document["extra_data"]["failure"] == "timeout"
    assert "Grading stopped after 3 seconds" in document["output"]
    assert "Stopped by the time limit (3 s)" in by_name(document)[gs.FAILURE_DETAIL_TEST]["output"]
    assert "stopped by the time limit" in done.stdout


@pytest.mark.slow
def test_visibility_is_carried_and_the_page_shows_only_the_visible_score(built_hidden: Path, tmp_path: Path) -> None:
    document, _, _ = run_autograder(built_hidden, tmp_path / "autograder", {"nn.ipynb": SEED})
    tests = by_name(document)
    assert tests["backward.gradient"]["visibility"] == "hidden"
    assert tests["training.converges"]["visibility"] == "after_due_date"
    assert {tests[name]["visibility"] for name in tests if name not in ("backward.gradient", "training.converges")
            } == {"visible"}
    assert document["score"] == 50.0  # hidden checks score; Gradescope hides them itself
    assert tests["backward.gradient"]["score"] == 0.0 and tests["backward.gradient"]["max_score"] == 20.0
    output = document["output"]
    assert output.startswith("**Score on the checks shown here: 50 / 70 (71%)**")
    assert "30 more points come from further checks that your instructor grades" in output
    assert "backward.gradient" not in output and "training" not in output
    assert SEED_BUG in tests["backward.values"]["output"]  # a visible check failed: its hint is shown


@pytest.mark.slow
def test_the_bundled_wheel_installs_offline_and_grades(built: Path, tmp_path: Path) -> None:
    """What setup.sh does, without network: pip installs the wheel from the zip, and run_autograder grades
    with that copy of the grader, not the checkout's."""
    root = tmp_path / "autograder"
    unpack(built, root)
    target = tmp_path / "site"
    (wheel,) = (root / "source" / gs.WHEELS).glob("*.whl")
    subprocess.run([sys.executable, "-m", "pip", "install", "--quiet", "--no-deps", "--no-index",
                    "--target", str(target), str(wheel)], check=True, timeout=120)
    env = {**os.environ, "PYTHONPATH": str(target)}
    where = subprocess.run([sys.executable, "-c", "import grader.cli; print(grader.cli.__file__)"], env=env,
                           cwd=tmp_path, capture_output=True, text=True, check=True).stdout.strip()
    assert Path(where).is_relative_to(target)
    shutil.rmtree(root)
    document, _, _ = run_autograder(built, root, {"nn.ipynb": SEED}, PYTHONPATH=str(target))
    assert document["score"] == 50.0
    # That installed copy builds the same wheel again, from its RECORD this time.
    again = tmp_path / "again.zip"
    subprocess.run([sys.executable, "-m", "grader", "gradescope", "--out", str(again)], env=env, cwd=tmp_path,
                   check=True, capture_output=True, timeout=120)
    assert _wheel_members(again) == _wheel_members(built)


def _wheel_members(archive: Path) -> dict[str, bytes]:
    import io

    with zipfile.ZipFile(archive) as zipped:
        (name,) = [n for n in zipped.namelist() if n.startswith(gs.WHEELS + "/")]
        with zipfile.ZipFile(io.BytesIO(zipped.read(name))) as wheel:
            return {n: wheel.read(n) for n in wheel.namelist()}


def test_a_grader_that_is_not_installed_cannot_build_a_wheel(monkeypatch: pytest.MonkeyPatch) -> None:
    import importlib.metadata

    monkeypatch.setattr(importlib.metadata, "distributions", lambda **kwargs: iter(()))
    with pytest.raises(gs.GraderError) as info:
        gs.build_wheel()
    assert "is not an installed numpy-nn-grader" in info.value.message and "pip install" in info.value.message
