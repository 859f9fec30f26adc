"""Check visibility in a class's files: a hidden check scores and reaches the instructor, never the student's
page until it is released (issue 14)."""
from __future__ import annotations

import csv
import json
import shutil
from pathlib import Path

import pytest

from grader.batch.run import BatchOptions, run_batch
from tests.conftest import REPO, SEED

HIDDEN = "backward.gradient"


def _rubric_with_hidden_check(folder: Path) -> Path:
    text = (REPO / "rubrics" / "simple_nn.toml").read_text()
    text = text.replace(f'[checks."{HIDDEN}"]\n', f'[checks."{HIDDEN}"]\nvisibility = "hidden"\n')
    text = text.replace('[checks."training.converges"]\n', '[checks."training.converges"]\nvisibility = "after_due_date"\n')
    shutil.copy(REPO / "rubrics" / "simple_nn_seed.ipynb", folder / "simple_nn_seed.ipynb")
    rubric = folder / "course.toml"
    rubric.write_text(text)
    return rubric


@pytest.mark.slow
def test_feedback_pages_show_released_checks_only_and_the_gradebook_all(tmp_path: Path) -> None:
    rubric = _rubric_with_hidden_check(tmp_path)
    class_folder = tmp_path / "class"
    class_folder.mkdir()
    shutil.copy(SEED, class_folder / "doe_jane.ipynb")
    out = tmp_path / "out"
    run_batch([str(class_folder)], BatchOptions(out=out, rubric=str(rubric)))
    (sid,) = [p.stem for p in (out / "reports").glob("*.json")]
    page = (out / "feedback" / f"{sid}.html").read_text()
    markdown = (out / "feedback" / f"{sid}.md").read_text()
    for shown in (page, markdown):
        assert HIDDEN not in shown and "training.converges" not in shown and "backward.values" in shown
        assert "30 more points come from further checks" in shown  # 20 hidden + 10 after the due date
    with (out / "gradebook.csv").open(newline="") as handle:
        (row,) = list(csv.DictReader(handle))
    assert row[HIDDEN] == "0" and row["score"] == "50"  # the instructor's files hold every check, and it scores
    results = json.loads((out / "results" / sid / "results.json").read_text())
    visibility = {test["name"]: test["visibility"] for test in results["tests"]}
    assert visibility[HIDDEN] == "hidden" and visibility["training.converges"] == "after_due_date"

    # After the due date the instructor releases those checks: the pages are made again.
    again = run_batch([str(class_folder)], BatchOptions(out=out, rubric=str(rubric),
                                                        release=frozenset({"visible", "after_due_date"})))
    page = (out / "feedback" / f"{sid}.html").read_text()
    assert "training.converges" in page and HIDDEN not in page and "20 more points" in page
    assert again.graded == 1  # a changed release is a changed setup: its pages are made again
