"""Student packs (issue 14): a self-check that grades like the grader, without the answer key.

Unit tests of the pieces (answer tables, the codec, the pack's rubric) run fast. The end-to-end tests
build a pack with ``grader pack``, install it the way a student does (``tests/student_pack.py``: an
environment with nothing else of the grader in it), and prove three things: nothing of the reference
or the bug catalogue is in any installed file; the seed notebook is graded as the grader grades it;
and on every fixture notebook the pack's self-check gives the grader's scores and named bugs on the
same (public) probes.
"""
from __future__ import annotations

import ast
import dataclasses
import json
import subprocess
import tomllib
import zipfile
from pathlib import Path

import numpy as np
import pytest

from grader.assignment import Pair, Probes
from grader.cli import main
from grader.errors import AssignmentError
from grader.pack import codec
from grader.pack.build import PackError, build_data, filtered, released_checks
from grader.pack.installed import from_files
from grader.pack.student_rubric import student_rubric
from grader.pack.tables import NEAR, NotTabulated, Recorder, Table
from grader.probe import probes_for_seed
from grader.rubric import load_rubric

REPO = Path(__file__).resolve().parents[1]
SEED_NOTEBOOK = REPO / "examples" / "simple_nn_seed.ipynb"
FIXTURES = REPO / "tests" / "fixtures" / "notebooks"
from tests.unprivileged import Account, pack_environment, private_install, unprivileged_account  # noqa: F401

# ----------------------------------------------------------------------------- answer tables

def _recorded(function, *calls):
    recorder = Recorder("f", function)
    for args in calls:
        try:
            recorder(*args)
        except Exception:  # noqa: BLE001 - a recorded raise is part of what is tested
            pass
    return Table("f", recorder.entries)


def test_a_table_answers_recorded_calls_exactly_and_near_ones_by_the_nearest() -> None:
    x = np.array([0.5, -1.25, 2.0])
    table = _recorded(lambda a, b: a * b, (x, 2.0), (x + 1.0, 2.0))
    assert np.array_equal(table(x.copy(), 2.0), x * 2.0)
    near = x * (1 + 1e-10)  # a student's value that passed a values check: within NEAR of the recorded one
    assert np.array_equal(table(near, 2.0), x * 2.0)
    with pytest.raises(NotTabulated):  # far from every recorded call: no answer, never a guess
        table(x + 10 * NEAR * 4, 2.0)
    with pytest.raises(NotTabulated):  # another shape
        table(np.ones(4), 2.0)
    answer = table(x, 2.0)
    answer[0] = 99.0  # a caller's changes never reach the table
    assert table(x, 2.0)[0] == 1.0


def test_a_table_replays_raises_and_writes_into_arguments() -> None:
    def update(w: np.ndarray) -> None:
        w -= 1.0

    def refuse(z: float) -> float:
        raise NotImplementedError("TODO: write activation")

    w = np.array([3.0, 4.0])
    table = _recorded(update, (w.copy(),))
    given = w.copy()
    assert table(given) is None and np.array_equal(given, [2.0, 3.0])
    refusing = _recorded(refuse, (1.5,))
    with pytest.raises(NotImplementedError, match="TODO: write activation"):
        refusing(1.5)


def test_a_students_own_helper_pair_is_never_answered() -> None:
    pure = Pair("relu", abs, abs, pure=True)
    table = _recorded(lambda z, pair: z + 1, (np.ones(2), pure))
    assert np.array_equal(table(np.ones(2), pure), [2.0, 2.0])
    theirs = Pair("yours", abs, abs)  # tabulated from a sandbox: no pack can evaluate the reference with it
    with pytest.raises(NotTabulated):
        table(np.ones(2), theirs)


def test_an_elementwise_table_answers_single_numbers_from_recorded_points() -> None:
    recorder = Recorder("relu", lambda z: np.maximum(z, 0.0), elementwise=True)
    recorder(np.array([-1.5, 0.25, 2.0]))
    table = Table("relu", recorder.entries, elementwise=True)
    assert table(0.25) == 0.25 and table(-1.5) == 0.0  # a notebook's loop asks element by element
    assert np.array_equal(table(np.array([2.0, -1.5])), [2.0, 0.0])
    with pytest.raises(NotTabulated):
        table(0.3)
    with pytest.raises(NotTabulated):  # only helpers answer by element
        Table("forward", recorder.entries)(0.25)


# ----------------------------------------------------------------------------- the codec

def test_the_codec_keeps_types_shapes_and_shared_objects() -> None:
    pair = Pair("relu", Recorder("f", abs), Recorder("df", abs), pure=True)
    recorders: list[Recorder] = []

    def table_of(function: object) -> int:
        assert isinstance(function, Recorder)
        if function not in recorders:
            recorders.append(function)
        return recorders.index(function)

    values = (np.array(2.5), np.arange(6, dtype=np.int32).reshape(2, 3), np.float64(1.5), 1.5, float("nan"),
              np.float64("inf"), True, np.bool_(False), {"a": [1, "b"]}, pair, pair, None)
    encoder = codec.Encoder(table_of)
    document = json.loads(json.dumps(encoder.value(values)))
    tables = [Table(r.name) for r in recorders]
    decoded = codec.Decoder(bytes(encoder.buffer), tables).value(document)
    assert decoded[0].shape == () and decoded[0] == 2.5  # a 0-d array stays 0-d
    assert decoded[1].dtype == np.int32 and decoded[1].tolist() == [[0, 1, 2], [3, 4, 5]]
    assert type(decoded[2]) is np.float64 and type(decoded[3]) is float and np.isnan(decoded[4])
    assert type(decoded[5]) is np.float64 and decoded[5] == np.inf
    assert decoded[6] is True and type(decoded[7]) is np.bool_ and decoded[8] == {"a": [1, "b"]}
    assert decoded[9] is decoded[10] and isinstance(decoded[9].f, Table) and decoded[11] is None


@pytest.mark.parametrize("field", [{"$type": "Popen", "$id": 0}, {"$a": ["|O", [1], 0]}])
def test_the_codec_builds_nothing_but_the_declarations_types(field: dict[str, object]) -> None:
    document = json.dumps({"format": codec.FORMAT, "fields": {}, "assignment": field, "tables": []}).encode() + b"\n"
    with pytest.raises(AssignmentError, match="damaged"):
        codec.read(document, b"\0" * 64)


# ----------------------------------------------------------------------------- the pack's rubric

def test_the_packs_rubric_keeps_released_checks_and_their_points_only() -> None:
    text = (REPO / "rubrics" / "simple_nn.toml").read_text()
    text = text.replace('[checks."training.converges"]\n', '[checks."training.converges"]\nvisibility = "hidden"\n')
    kept = ["activation.values", "forward.values", "backward.values", "backward.gradient"]
    written = student_rubric(text, kept, "a note\non two lines")
    assert written.startswith("# a note\n# on two lines\n")
    data = tomllib.loads(written)
    assert list(data["checks"]) == kept and data["max_score"] == 75
    assert all("visibility" not in table for table in data["checks"].values())
    assert data["limits"]["cell_timeout_s"] == 10 and data["accepted_activations"] == ["relu"]


def test_a_converges_check_requires_only_checks_the_pack_keeps() -> None:
    assignment = load_rubric(None, None).assignment
    kept = filtered(assignment, ["forward.values", "training.converges"])
    assert [c.id for c in kept.checks] == ["forward.values", "training.converges"]
    assert kept.checks[1].requires == ()  # type: ignore[union-attr]
    assert {m.function for m in kept.mutants} == {"forward"}


def test_visibility_decides_what_a_pack_releases() -> None:
    rubric = load_rubric(None, None)
    assert released_checks(rubric, frozenset({"visible"})) == list(rubric.checks)
    weights = {cid: (dataclasses.replace(w, visibility="hidden") if cid == "backward.gradient" else w)  # type: ignore[call-arg]
               for cid, w in rubric.checks.items()}
    hidden = dataclasses.replace(rubric, checks=weights)
    assert "backward.gradient" not in released_checks(hidden, frozenset({"visible"}))


def test_a_pack_is_never_built_from_the_grading_seed(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(PackError, match="grading seed"):
        build_data(load_rubric(None, None), tmp_path / "data", public_seed=0, grading_seed=0)
    assert main(["pack", "--out", str(tmp_path / "out"), "--public-seed", "7", "--seed", "7"]) == 2
    error = capsys.readouterr().err.strip()
    assert error.count("\n") == 0 and "choose another public seed" in error and not (tmp_path / "out").exists()


# ----------------------------------------------------------------------------- end to end

def _arithmetic(tree: ast.AST) -> set[str]:
    """Every assignment or return that computes something (the statements an answer is made of), as unparsed."""
    found = set()
    for node in ast.walk(tree):
        if isinstance(node, (ast.Assign, ast.AugAssign, ast.Return)) and node.value is not None and any(
                isinstance(inner, (ast.BinOp, ast.UnaryOp)) for inner in ast.walk(node.value)):
            text = ast.unparse(node)
            if len(text) >= 16:
                found.add(text)
    return found


def _answer_statements(folder: Path) -> set[str]:
    return {text for path in folder.glob("*.py") for text in _arithmetic(ast.parse(path.read_text()))}


@pytest.mark.slow
def test_nothing_of_the_reference_or_the_catalogue_is_in_what_a_student_installs(
        pack: Path, student_python: Path) -> None:
    site = Path(subprocess.run([str(student_python), "-c", "import grader, os; print(os.path.dirname(grader.__file__))"],
                               capture_output=True, text=True, check=True, cwd=student_python.parent).stdout.strip())
    assert site.parent.name == "site-packages" and not (site / "reference").exists()
    installed = [p for p in site.rglob("*") if p.is_file()]
    assert not [p for p in installed if p.name in ("mutants.py", "reference.py", "probes.py")]
    secrets = _answer_statements(REPO / "reference" / "simple_nn")
    assert len(secrets) > 30 and "w1_partials = np.outer(x, d_loss * w2 * pair.df(h))" in secrets  # the scan sees them
    code = set().union(*(_arithmetic(ast.parse(p.read_text())) for p in installed if p.suffix == ".py"))
    assert code & secrets == set()
    data = "".join(p.read_bytes().decode("utf-8", "replace") for p in installed if p.suffix != ".py")
    assert [line for line in secrets if line in data] == []
    with zipfile.ZipFile(pack) as archive:  # the wheel holds what was installed, and nothing more
        assert not [n for n in archive.namelist() if "/reference/" in n or n.endswith(("mutants.py", ".pyc"))]


@pytest.mark.slow
def test_the_pack_grades_the_seed_as_the_grader_does(student_python: Path, tmp_path: Path) -> None:
    result = subprocess.run([str(student_python), "-m", "grader", "check", str(SEED_NOTEBOOK), "--format", "json"],
                            capture_output=True, text=True, cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    report = json.loads(result.stdout)
    assert (report["score"], report["max_score"]) == (50, 100)
    assert "d_activation_on_w2_partials" in [d["id"] for d in report["diagnoses"]]
    version = subprocess.run([str(student_python), "-m", "grader", "--version"], capture_output=True, text=True,
                             cwd=tmp_path).stdout
    assert "student pack of simple_nn" in version


@pytest.mark.slow
def test_a_student_without_privileges_installs_the_pack_and_checks(pack: Path, unprivileged_account: Account) -> None:
    """What a student does on their own machine, as an ordinary user: pip install the wheel, grader check."""
    python = pack_environment(pack)
    workspace = unprivileged_account.workspace()
    notebook = workspace / "my_notebook.ipynb"
    notebook.write_bytes(SEED_NOTEBOOK.read_bytes())
    unprivileged_account.give(notebook)
    result = unprivileged_account.run([str(python), "-m", "grader", "check", str(notebook), "--format", "json"],
                                      cwd=workspace)
    assert result.returncode == 0, result.stderr[-2000:]
    report = json.loads(result.stdout)
    assert (report["score"], report["max_score"]) == (50, 100) and report["status"] == "graded"
    assert "d_activation_on_w2_partials" in [d["id"] for d in report["diagnoses"]]
    where = unprivileged_account.run([str(python), "-c", "import grader, os; print(os.path.dirname(grader.__file__))"],
                                     cwd=workspace).stdout.strip()
    assert where.startswith(str(python.parent.parent)) and not Path(where, "reference").exists()


@pytest.mark.slow
def test_a_notebook_cannot_reach_the_answer_key_through_the_pack(student_python: Path, tmp_path: Path,
                                                                 write_notebook: object) -> None:
    seed = json.loads(SEED_NOTEBOOK.read_text())
    seed["cells"].append({"cell_type": "code", "metadata": {}, "execution_count": None, "outputs": [], "source": (
        "from grader.reference.simple_nn.reference import backward as _b\n"
        "def backward(x, y, y_hat, w1, w2, eta):\n    return _b(x, y, y_hat, w1, w2, eta)\n")})
    notebook = tmp_path / "cheat.ipynb"
    notebook.write_text(json.dumps(seed))
    result = subprocess.run([str(student_python), "-m", "grader", "check", str(notebook), "--format", "json"],
                            capture_output=True, text=True, cwd=tmp_path)
    report = json.loads(result.stdout)
    assert report["score"] < report["max_score"]
    assert {c["id"]: c["passed"] for c in report["checks"]}["backward.values"] is False


@pytest.mark.slow
def test_on_every_fixture_the_pack_gives_the_graders_scores_and_bugs(student_python: Path, tmp_path: Path) -> None:
    """The same notebooks, the same (public) probes: the grader with --seed 1 and the pack must agree on every
    check's score and every named bug. Only wording may differ (a pack cannot evaluate the reference with a
    student's own helpers, so it says "once activation is fixed" where the grader says "with your own")."""
    full, packed = tmp_path / "full", tmp_path / "packed"
    assert main(["grade", str(FIXTURES), "--out", str(full), "--seed", "1"]) == 0
    result = subprocess.run([str(student_python), "-m", "grader", "grade", str(FIXTURES), "--out", str(packed)],
                            capture_output=True, text=True, cwd=tmp_path)
    assert result.returncode == 0, result.stderr[-2000:]
    reports = sorted((full / "reports").glob("*.json"))
    assert len(reports) >= 100
    differences = []
    for path in reports:
        want, have = json.loads(path.read_text()), json.loads((packed / "reports" / path.name).read_text())
        scores = ({c["id"]: c["score"] for c in want["checks"]}, {c["id"]: c["score"] for c in have["checks"]})
        bugs = ([d["id"] for d in want["diagnoses"]], [d["id"] for d in have["diagnoses"]])
        if scores[0] != scores[1] or bugs[0] != bugs[1] or want["status"] != have["status"]:
            differences.append((path.name, scores, bugs))
    assert differences == []


@pytest.mark.slow
def test_the_packs_probes_are_not_the_grading_probes(pack: Path) -> None:
    """The pack holds expected values on its public probes only: none of its drawn probes is one the grader
    grades with (seed 0); the notebook's own data is public anyway (it is in the template)."""
    with zipfile.ZipFile(pack) as archive:
        tabled = from_files(archive.read(f"grader/packed/simple_nn/{codec.DECLARATION}"),
                            archive.read(f"grader/packed/simple_nn/{codec.ARRAYS}"), "pack")
    graded = probes_for_seed(load_rubric(None, None).assignment, 0)

    def drawn(probes: Probes) -> set[bytes]:
        return {np.asarray(v).tobytes() for s in probes.sets.values() for p in s for v in p.values.values()
                if isinstance(v, np.ndarray) and "notebook" not in p.name}
    shown = drawn(tabled.probes(np.random.default_rng(0)))
    assert shown and drawn(graded) and not shown & drawn(graded)
