"""Tests of the class view: gradebook CSV, summary numbers and summary.html.

The gradebook is read back with ``csv.DictReader`` (what an instructor's
script would do), numbers are checked on a small class whose statistics are
known by hand, and the page is parsed rather than searched as a string.
"""
from __future__ import annotations

import csv
import json
import os
from pathlib import Path

import pytest

from grader.model import CheckResult, Diagnosis, Report
from grader.batch.summary import (
    GRADEBOOK_COLUMNS_FIXED,
    GradebookRow,
    feedback_name,
    render_summary_html,
    summarize,
    write_gradebook,
)

from conftest import embedded_pngs, parse_html, png_size

INJECTION = "=HYPERLINK(\"http://evil\",\"x\")"
ERROR_SENTENCE = "bob.ipynb is not a Jupyter notebook: not JSON."
HINT_A = "The slope belongs at the hidden pre-activation."
HINT_B = "np.outer(x, delta), not np.outer(delta, x)."


def check(cid: str, passed: bool, score: float, max_score: float) -> CheckResult:
    return CheckResult(cid, cid.split(".")[0], passed, "ok" if passed else "wrong", 1.0 if passed else 0.0,
                       score, max_score)


def graded(submission: str, score: float, checks: list[CheckResult],
           diagnoses: list[Diagnosis] | None = None) -> Report:
    return Report(submission=submission, rubric="simple_nn", status="graded", score=score,
                  max_score=100.0, checks=checks, diagnoses=diagnoses or [])


def class_rows() -> list[GradebookRow]:
    """Four students: full marks, a named bug, a formula-looking name missing a check, an error."""
    full = graded("ann.ipynb", 100.0, [check("activation.values", True, 30, 30),
                                       check("forward.values", True, 30, 30),
                                       check("backward.gradient", True, 40, 40)])
    buggy = graded("<b>cat</b>.ipynb", 60.0,
                   [check("activation.values", True, 30, 30), check("forward.values", True, 30, 30),
                    check("backward.gradient", False, 0, 40)],
                   [Diagnosis("d_activation_on_w2_partials", "backward", HINT_A)])
    partial = graded("dan.ipynb", 42.5,
                     [check("activation.values", True, 30, 30), check("forward.values", False, 12.5, 30),
                      check("training.converges", False, 0, 0)],
                     [Diagnosis("d_activation_on_w2_partials", "backward", "another wording"),
                      Diagnosis("d_activation_on_w2_partials", "backward", "counted once per student"),
                      Diagnosis("outer_transposed", "backward", HINT_B)])
    error = Report(submission="bob.ipynb", rubric="simple_nn", status="error", error=ERROR_SENTENCE)
    return [GradebookRow("ann.ipynb", "ann", full),
            GradebookRow("<b>cat</b>.ipynb", "<script>cat</script>", buggy),
            GradebookRow("dan.ipynb", INJECTION, partial),
            GradebookRow("bob.ipynb", "-bob", error)]


def read_back(path: Path) -> tuple[list[str], list[dict[str, str]]]:
    with path.open(newline="", encoding="utf-8") as handle:
        reader = csv.DictReader(handle)
        return list(reader.fieldnames or []), list(reader)


# ----------------------------------------------------------------------------- gradebook

def test_gradebook_columns_and_rows(tmp_path: Path) -> None:
    path = tmp_path / "gradebook.csv"
    write_gradebook(class_rows(), path)
    header, rows = read_back(path)
    assert tuple(header[:5]) == GRADEBOOK_COLUMNS_FIXED
    # Union of check ids, in order of first appearance.
    assert header[5:] == ["activation.values", "forward.values", "backward.gradient",
                          "training.converges"]
    assert [r["submission"] for r in rows] == ["ann.ipynb", "<b>cat</b>.ipynb", "dan.ipynb", "bob.ipynb"]
    ann, cat, dan, bob = rows
    assert (ann["score"], ann["max_score"], ann["status"]) == ("100", "100", "graded")
    assert ann["backward.gradient"] == "40" and ann["training.converges"] == ""
    assert cat["backward.gradient"] == "0"
    assert dan["forward.values"] == "12.5" and dan["backward.gradient"] == ""
    assert dan["training.converges"] == "0"
    assert bob["status"] == "error" and bob["score"] == "0"
    assert all(bob[cid] == "" for cid in header[5:])


def test_gradebook_guards_against_formula_injection(tmp_path: Path) -> None:
    path = tmp_path / "gradebook.csv"
    write_gradebook(class_rows(), path)
    _, rows = read_back(path)
    assert rows[2]["student"] == "'" + INJECTION
    assert rows[3]["student"] == "'-bob"
    assert rows[0]["student"] == "ann"  # harmless names untouched
    for row in rows:
        for column in ("submission", "student"):
            assert not row[column].startswith(("=", "+", "-", "@"))


def test_gradebook_is_replaced_atomically(tmp_path: Path) -> None:
    path = tmp_path / "gradebook.csv"
    path.write_text("old gradebook\n", encoding="utf-8")
    write_gradebook(class_rows()[:1], path)
    assert read_back(path)[1][0]["student"] == "ann"
    assert os.listdir(tmp_path) == ["gradebook.csv"]  # no temp file left behind
    before = path.read_text(encoding="utf-8")

    class Exploding(CheckResult):
        @property
        def score(self) -> float:  # type: ignore[override]
            raise RuntimeError("boom mid-write")

        @score.setter
        def score(self, value: float) -> None:
            pass

    bad = graded("x.ipynb", 1.0, [Exploding("activation.values", "activation", True, "", 1.0)])
    with pytest.raises(RuntimeError, match="boom"):
        write_gradebook([*class_rows(), GradebookRow("x.ipynb", "x", bad)], path)
    assert path.read_text(encoding="utf-8") == before
    assert os.listdir(tmp_path) == ["gradebook.csv"]


def test_empty_gradebook_has_fixed_header(tmp_path: Path) -> None:
    path = tmp_path / "gradebook.csv"
    write_gradebook([], path)
    header, rows = read_back(path)
    assert tuple(header) == GRADEBOOK_COLUMNS_FIXED and rows == []


# ----------------------------------------------------------------------------- summarize

def test_summarize_numbers() -> None:
    summary = summarize(class_rows())
    json.dumps(summary, allow_nan=False)  # JSON-safe
    assert (summary["count"], summary["graded"], summary["errors"]) == (4, 3, 1)
    assert summary["max_score"] == 100.0
    assert summary["mean"] == pytest.approx((100 + 60 + 42.5) / 3, abs=1e-4)
    assert summary["median"] == 60.0
    assert (summary["min"], summary["max"]) == (42.5, 100.0)
    histogram = summary["histogram"]
    assert len(histogram) == 10 and sum(b["count"] for b in histogram) == 3
    assert [b["count"] for b in histogram] == [0, 0, 0, 0, 1, 0, 1, 0, 0, 1]
    assert histogram[0]["low"] == 0 and histogram[-1]["high"] == 100


def test_summarize_check_pass_rates() -> None:
    checks = summarize(class_rows())["checks"]
    assert list(checks) == ["activation.values", "forward.values", "backward.gradient",
                            "training.converges"]
    assert checks["activation.values"] == {"function": "activation", "passed": 3, "total": 3,
                                           "pass_rate": 1.0}
    assert checks["forward.values"]["passed"] == 2 and checks["forward.values"]["total"] == 3
    assert checks["forward.values"]["pass_rate"] == pytest.approx(2 / 3, abs=1e-4)
    assert checks["backward.gradient"]["pass_rate"] == 0.5
    assert checks["training.converges"]["total"] == 1


def test_summarize_diagnoses_and_errors() -> None:
    summary = summarize(class_rows())
    diagnoses = summary["diagnoses"]
    assert list(diagnoses) == ["d_activation_on_w2_partials", "outer_transposed"]  # most common first
    assert diagnoses["d_activation_on_w2_partials"]["count"] == 2  # students, not occurrences
    assert diagnoses["d_activation_on_w2_partials"]["example"] == HINT_A
    assert diagnoses["outer_transposed"] == {"function": "backward", "count": 1, "example": HINT_B}
    assert summary["error_submissions"] == [
        {"submission": "bob.ipynb", "student": "-bob", "error": ERROR_SENTENCE}]


def test_summarize_empty_batch() -> None:
    summary = summarize([])
    json.dumps(summary, allow_nan=False)
    assert summary["count"] == 0 and summary["mean"] is None and summary["histogram"] == []


# ----------------------------------------------------------------------------- summary.html

def test_summary_html_embeds_two_pngs_and_links_students() -> None:
    rows = class_rows()
    document = render_summary_html(summarize(rows), rows)
    page = parse_html(document)
    assert not page.named("script"), "student names must be escaped"
    images = embedded_pngs(page)
    assert len(images) == 2
    for data in images:
        width, height = png_size(data)
        assert width > 0 and height > 0
    assert not page.named("link"), "self-contained: no external stylesheet"
    links = [attrs["href"] for attrs in page.named("a")]
    assert links == [feedback_name(row.student) for row in rows]
    text = "".join(page.text)
    assert "<script>cat</script>" in text and INJECTION in text
    assert HINT_A in text and HINT_B in text and ERROR_SENTENCE in text
    assert "d_activation_on_w2_partials" in text


def test_summary_html_without_diagnoses_has_one_png_and_custom_links() -> None:
    rows = class_rows()[:1]
    document = render_summary_html(summarize(rows), rows, link=lambda row: f"reports/{row.student}.html")
    page = parse_html(document)
    assert len(page.named("img")) == 1
    assert [a["href"] for a in page.named("a")] == ["reports/ann.html"]


def test_feedback_name_is_a_safe_file_name() -> None:
    assert feedback_name("ann") == "ann.html"
    for hostile in ("../../etc/passwd", "<script>", "a b/c", "", "...", "javascript:alert(1)", "-rf"):
        name = feedback_name(hostile)
        assert name.endswith(".html") and "/" not in name and ":" not in name
        assert not name.startswith((".", "-")) and len(name) > len(".html")
