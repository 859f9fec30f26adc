"""Tests of the class view: gradebook CSV, summary numbers and summary.html.

The gradebook is read back with ``csv.DictReader`` (what an instructor's
script would do), numbers are checked on a small class whose statistics are
known by hand, and the page is parsed rather than searched as a string.
"""
from __future__ import annotations

import csv
import json
import os
import shutil
import subprocess
from pathlib import Path

import pytest

from grader.model import CheckResult, Diagnosis, Report
from grader.batch.summary import (
    GRADEBOOK_COLUMNS_FIXED,
    GRADEBOOK_COLUMNS_LMS,
    SORT_SCRIPT,
    GradebookRow,
    NotGraded,
    feedback_name,
    render_summary_html,
    summarize,
    write_gradebook,
)
from grader.integrations.lms import Identity, Person

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
    # Union of check ids, in order of first appearance; the LMS columns after them (no old column moves).
    checks = header[5:-len(GRADEBOOK_COLUMNS_LMS)]
    assert checks == ["activation.values", "forward.values", "backward.gradient", "training.converges"]
    assert tuple(header[-len(GRADEBOOK_COLUMNS_LMS):]) == GRADEBOOK_COLUMNS_LMS
    assert GRADEBOOK_COLUMNS_LMS == ("late", "lms", "lms_user_id", "lms_submission_id", "email", "sid")
    assert [r["submission"] for r in rows] == ["ann.ipynb", "<b>cat</b>.ipynb", "dan.ipynb", "bob.ipynb"]
    ann, cat, dan, bob = rows
    assert (ann["score"], ann["max_score"], ann["status"]) == ("100", "100", "graded")
    assert ann["backward.gradient"] == "40" and ann["training.converges"] == ""
    assert cat["backward.gradient"] == "0"
    assert dan["forward.values"] == "12.5" and dan["backward.gradient"] == ""
    assert dan["training.converges"] == "0"
    # An ungradeable submission is a blank score, not a 0 an LMS or a spreadsheet would average in.
    assert bob["status"] == "error" and bob["score"] == "" and bob["max_score"] == "0"
    assert all(bob[cid] == "" for cid in checks)
    assert all(row[column] == "" for row in rows for column in GRADEBOOK_COLUMNS_LMS)  # plain files: no LMS


def test_gradebook_carries_the_lms_identity(tmp_path: Path) -> None:
    full = class_rows()[0].report
    canvas = Identity(user_id="12345", submission_id="67890", people=(Person("doejane"),), late=True)
    group = Identity(submission_id="988", people=(Person("Pat O'Brien", "pat@example.edu", "100"),
                                                  Person("Zoë Day", "=zoe@example.edu", "-200")))
    rows = [GradebookRow("c.zip!doejane_LATE_12345_67890_nn.ipynb", "doejane", full, "canvas-12345", "canvas", canvas),
            GradebookRow("gs.zip!submission_988/nn.ipynb", "Pat O'Brien, Zoë Day", full, "gs-988", "gradescope",
                         group),
            GradebookRow("m.zip!Ann Lee_123456_assignsubmission_file_/nn.ipynb", "Ann Lee", full, "moodle-123456",
                         "moodle", Identity(user_id="123456", people=(Person("Ann Lee"),)))]
    path = tmp_path / "gradebook.csv"
    write_gradebook(rows, path)
    _, (doe, pat, ann) = read_back(path)
    assert [doe[c] for c in GRADEBOOK_COLUMNS_LMS] == ["yes", "canvas", "12345", "67890", "", ""]
    # A group's emails and SIDs, "; " apart, each neutralised as a whole cell.
    assert [pat[c] for c in GRADEBOOK_COLUMNS_LMS] == ["", "gradescope", "", "988",
                                                       "pat@example.edu; =zoe@example.edu", "100; -200"]
    assert [ann[c] for c in GRADEBOOK_COLUMNS_LMS] == ["", "moodle", "123456", "", "", ""]
    rows[1].identity = Identity(people=(Person("x", "=cmd|' /C calc'!A0", "+1"),))
    write_gradebook(rows, path)
    assert read_back(path)[1][1]["email"] == "'=cmd|' /C calc'!A0" and read_back(path)[1][1]["sid"] == "'+1"


def test_a_check_named_like_an_lms_column_is_prefixed(tmp_path: Path) -> None:
    report = graded("x.ipynb", 1.0, [check("late", True, 1, 1)])
    path = tmp_path / "gradebook.csv"
    write_gradebook([GradebookRow("x.ipynb", "x", report)], path)
    header, (row,) = read_back(path)
    assert "check:late" in header and row["check:late"] == "1" and row["late"] == ""


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
    assert tuple(header) == GRADEBOOK_COLUMNS_FIXED + GRADEBOOK_COLUMNS_LMS and rows == []


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
    # Who made it: each student once, in gradebook order.
    assert [who["submission"] for who in diagnoses["d_activation_on_w2_partials"]["students"]] == [
        "<b>cat</b>.ipynb", "dan.ipynb"]
    assert diagnoses["outer_transposed"] == {"function": "backward", "count": 1, "example": HINT_B,
                                             "students": [{"id": "", "student": INJECTION,
                                                           "submission": "dan.ipynb"}]}
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
    # One script, the page's own sorter: a student's "<script>" name is text, never an element.
    assert page.named("script") == [{}] and document.count("<script>") == 1
    assert f"<script>\n{SORT_SCRIPT}\n</script>" in document
    assert "src" not in document.split("<script>", 1)[1]  # no script is loaded from anywhere
    images = embedded_pngs(page)
    assert len(images) == 2
    for data in images:
        width, height = png_size(data)
        assert width > 0 and height > 0
    assert not page.named("link"), "self-contained: no external stylesheet"
    links = [attrs["href"] for attrs in page.named("a")]
    cat, dan = feedback_name(rows[1].student), feedback_name(rows[2].student)
    # Who made each mistake (cat and dan; dan), then every student of the table.
    assert links == [cat, dan, dan, *(feedback_name(row.student) for row in rows)]
    text = "".join(page.text)
    assert "<script>cat</script>" in text and INJECTION in text
    assert HINT_A in text and HINT_B in text and ERROR_SENTENCE in text
    assert "d_activation_on_w2_partials" in text and "2 students" in text and "1 student" in text


def test_summary_html_students_table_sorts_and_shows_mistakes_and_lateness() -> None:
    rows = class_rows()
    rows[0].identity = Identity(user_id="1", late=False)
    rows[2].identity = Identity(user_id="3", late=True)
    document = render_summary_html(summarize(rows), rows)
    page = parse_html(document)
    table = next(attrs for attrs in page.named("table") if "sortable" in (attrs.get("class") or ""))
    assert table["class"] == "sortable students"
    headers = document.split('<table class="sortable students">', 1)[1].split("</thead>", 1)[0]
    assert [h.rsplit(">", 1)[1] for h in headers.split("</th>")[:-1]] == [
        "student", "submission", "score", "status", "mistakes", "late"]
    assert '<th data-type="number">score</th>' in headers  # sorted as numbers, not as text
    body = document.split('<table class="sortable students">', 1)[1].split("</tbody>", 1)[0]
    lines = body.split("<tr>")[2:]
    assert len(lines) == 4
    ann, cat, dan, bob = lines
    assert 'data-sort="100"' in ann and "<td>no</td>" in ann
    assert 'data-sort="42.5"' in dan and "<td>yes</td>" in dan
    assert "<code>d_activation_on_w2_partials</code> <code>outer_transposed</code>" in dan
    assert 'data-sort=""' in bob and "—" in bob and "<td>error</td>" in bob  # sorts below every score
    assert "&lt;script&gt;cat&lt;/script&gt;" in cat
    assert "1 late" in "".join(page.text)


def test_summary_lists_files_not_graded_and_submissions_still_ungraded() -> None:
    rows = class_rows()
    waiting = [GradebookRow("eve.ipynb", "<i>eve</i>", Report("eve.ipynb", "simple_nn", "error"), "eve")]
    skipped = [NotGraded("class.zip!doejane_12345_67890_report.pdf", "not a notebook (.pdf): only .ipynb files "
                                                                     "are graded")]
    summary = summarize(rows, not_graded=skipped, ungraded=waiting)
    json.dumps(summary, allow_nan=False)
    assert summary["not_graded"] == [{"path": "class.zip!doejane_12345_67890_report.pdf",
                                      "reason": "not a notebook (.pdf): only .ipynb files are graded"}]
    assert summary["ungraded"] == [{"id": "eve", "student": "<i>eve</i>", "submission": "eve.ipynb"}]
    assert summary["count"] == 4  # the ungraded are not rows of this gradebook
    page = parse_html(render_summary_html(summary, rows))
    text = "".join(page.text)
    assert "Still ungraded: 1 submission" in text and "<i>eve</i>" in text and "run the same grader grade" in text
    assert "Files not graded" in text and "doejane_12345_67890_report.pdf" in text
    assert not page.named("i"), "an ungraded student's name is text"
    complete = "".join(parse_html(render_summary_html(summarize(rows), rows)).text)
    assert "Still ungraded" not in complete and "Files not graded" not in complete


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


NODE_DOM = r"""
// A minimal DOM: just what SORT_SCRIPT touches, built from the page's parsed students table.
const data = JSON.parse(require("fs").readFileSync(0, "utf8"));
function element(attrs, text) {
  const listeners = {};
  return {attrs: Object.assign({}, attrs), textContent: text, style: {}, listeners,
    getAttribute(name) { return name in this.attrs ? this.attrs[name] : null; },
    setAttribute(name, value) { this.attrs[name] = String(value); },
    removeAttribute(name) { delete this.attrs[name]; },
    addEventListener(kind, fn) { listeners[kind] = fn; }};
}
const heads = data.heads.map(h => element(h.attrs, h.text));
const rows = data.rows.map(cells => ({cells: cells.map(c => element(c.attrs, c.text)), name: cells[0].text}));
const body = {rows: rows.slice(), appendChild(row) { this.rows.splice(this.rows.indexOf(row), 1); this.rows.push(row); }};
const table = {tHead: {rows: [{cells: heads}]}, tBodies: [body]};
global.document = {querySelectorAll: () => [table]};
eval(data.script);
const out = [];
for (const [column, times] of data.clicks) {
  for (let i = 0; i < times; i++) { heads[column].listeners.click(); }
  out.push(body.rows.map(r => r.name));
}
process.stdout.write(JSON.stringify(out));
"""


@pytest.mark.skipif(shutil.which("node") is None, reason="needs node to run the page's script")
def test_the_sort_script_sorts_scores_as_numbers_and_names_as_text() -> None:
    rows = [GradebookRow(f"{name}.ipynb", name, graded(f"{name}.ipynb", score, [])) for name, score in
            (("bea", 9.0), ("Al", 100.0), ("cy", 42.5))]
    rows.append(GradebookRow("dee.ipynb", "dee", Report("dee.ipynb", "simple_nn", "error", error=ERROR_SENTENCE)))
    document = render_summary_html(summarize(rows), rows)
    table = document.split('<table class="sortable students">', 1)[1].split("</table>", 1)[0]
    heads_html, body_html = table.split("</thead>", 1)
    heads = [{"attrs": {"data-type": "number"} if 'data-type="number"' in h else {}, "text": h.rsplit(">", 1)[1]}
             for h in heads_html.split("</th>")[:-1]]
    cells = []  # per row, per cell: its data-sort attribute (when it has one) and its text, as a browser has them
    for line in body_html.split("<tr>")[1:]:
        row_cells = []
        for chunk in line.split("</td>")[:-1]:
            page = parse_html(chunk + "</td>")
            attrs = page.named("td")[0]
            row_cells.append({"attrs": {"data-sort": attrs["data-sort"]} if "data-sort" in attrs else {},
                              "text": "".join(page.text).strip()})
        cells.append(row_cells)
    script = document.split("<script>\n", 1)[1].split("\n</script>", 1)[0]
    payload = json.dumps({"heads": heads, "rows": cells, "script": script,
                          "clicks": [[2, 1], [2, 1], [0, 1]]})
    result = subprocess.run(["node", "-e", NODE_DOM], input=payload, capture_output=True, text=True, timeout=30,
                            check=True)
    by_score_up, by_score_down, by_name = json.loads(result.stdout)
    assert by_score_up == ["dee", "bea", "cy", "Al"]  # 9 < 42.5 < 100 as numbers; not graded first
    assert by_score_down == ["Al", "cy", "bea", "dee"]
    assert by_name == ["Al", "bea", "cy", "dee"]  # case-insensitive
