"""The rubric must catch and name every catalogued bug; a gap fails this test (and CI)."""
from pathlib import Path

from grader.calibrate import calibrate, render_matrix
from grader.cli import main
from grader.assignment import load_assignment

CATALOG = load_assignment("simple_nn").mutants
from grader.rubric import load_rubric


def test_bundled_rubric_has_no_gap():
    rubric = load_rubric("simple_nn")
    rows = calibrate(rubric)
    assert rows[0].name == "reference" and rows[0].score == rubric.max_score and rows[0].diagnoses == []
    assert len(rows) == 1 + sum(len(m.variants) for m in CATALOG)
    for row in rows[1:]:
        assert row.score < row.max_score, row.name
        assert row.expected_id in row.diagnoses, (row.name, row.diagnoses)
    assert "0 gap(s)" in render_matrix(rows, rubric)


def test_a_rubric_that_stops_catching_bugs_is_reported_as_a_gap(tmp_path, capsys):
    text = load_rubric("simple_nn").path
    lenient = open(text).read()
    # Give every point to activation: backward bugs no longer cost anything.
    for check, points in [("d_activation.values", 10), ("d_activation.gradient", 5), ("forward.values", 20),
                          ("backward.values", 20), ("backward.gradient", 20), ("training.converges", 10)]:
        lenient = lenient.replace(f'[checks."{check}"]\npoints = {points}', f'[checks."{check}"]\npoints = 0')
    lenient = lenient.replace('[checks."activation.values"]\npoints = 15', '[checks."activation.values"]\npoints = 100')
    path = tmp_path / "lenient.toml"
    path.write_text(lenient)
    (tmp_path / "simple_nn_seed.ipynb").write_bytes(Path(text).with_name("simple_nn_seed.ipynb").read_bytes())
    assert main(["calibrate", "--rubric", str(path)]) == 1
    out = capsys.readouterr().out
    assert "backward:stale_w2" in out and "GAP: no check catches this bug" in out
