"""Tests of the HTML, JUnit, Gradescope and GitHub Classroom renderers and the PNG plots.

Reports are built by hand (no grading runs), and outputs are read back with
independent parsers (``html.parser``, ElementTree, ``json``, ``struct`` for the
PNG header), so a test fails when the structure is wrong, not only when a
string moved. Hostile text (markup, NUL, ESC) stands in for what a student's
code can put into check messages and cell errors.
"""
from __future__ import annotations

import base64
import json
import subprocess
import sys
import xml.etree.ElementTree as ET

import pytest

from grader.model import CellRun, CheckResult, Diagnosis, FunctionInfo, GradedWith, Report, Training
from grader.render import RENDERERS, classroom, gradescope, html, junit, loss_chart, plot, render
from grader.render.visibility import student_view, withheld_points

from conftest import embedded_pngs, parse_html, png_size

HINT = "The slope belongs at the hidden pre-activation, not at what flows back from w2."
ERROR_SENTENCE = "notes.txt is not a Jupyter notebook: not JSON; export it again and resubmit."
HOSTILE = "got <script>alert('x')</script> & \x00\x1b[31mred\x1b[0m"


def graded_report(**overrides) -> Report:
    report = Report(
        submission="class/alice/simple_nn.ipynb",
        rubric="simple_nn",
        status="graded",
        score=62.5,
        max_score=100.0,
        functions={name: FunctionInfo(name, True, "function")
                   for name in ("activation", "d_activation", "forward", "backward")},
        checks=[
            CheckResult("activation.values", "activation", True, "matches", 1.0, 20.0, 20.0),
            CheckResult("d_activation.values", "d_activation", True, "matches", 1.0, 20.0, 20.0),
            CheckResult("forward.values", "forward", False, "differs on 1 of 4 probes",
                        0.75, 12.5, 20.0, {"inputs": {"x": [1.0, -2.0]}, "expected": 0.5, "got": 0.25}),
            CheckResult("backward.gradient", "backward", False, "w1 gradient is wrong",
                        0.0, 0.0, 30.0),
            CheckResult("training.converges", "training", True, "loss fell", 1.0, 10.0, 10.0),
        ],
        diagnoses=[Diagnosis("d_activation_on_w2_partials", "backward", HINT)],
        warnings=["cell 3 printed too much output"],
        cells=[CellRun(0, "ok"), CellRun(1, "error", "NameError: name 'y' is not defined")],
        training=Training(iterations=4, final_prediction=0.9, target=1.0,
                          loss=[0.5, 0.3, 0.2, 0.15], reference_loss=[0.5, 0.2, 0.08, 0.03]),
        graded_with=GradedWith("relu", "activation", ("forward", "backward")),
        duration_s=2.25,
        output_excerpt="epoch 1 loss 0.5",
    )
    for key, value in overrides.items():
        setattr(report, key, value)
    return report


def error_report(**overrides) -> Report:
    report = Report(submission="notes.txt", rubric="simple_nn", status="error",
                    error=ERROR_SENTENCE, duration_s=0.1)
    for key, value in overrides.items():
        setattr(report, key, value)
    return report


def hostile_report() -> Report:
    report = graded_report(submission="evil/<img src=x onerror=alert(1)>.ipynb",
                           output_excerpt=HOSTILE)
    report.checks[2].message = HOSTILE
    report.cells[1].error = HOSTILE
    report.diagnoses[0].message = HOSTILE
    report.warnings = [HOSTILE]
    return report


def all_passed_report() -> Report:
    report = graded_report(score=100.0, diagnoses=[])
    for check in report.checks:
        check.passed, check.score, check.fraction = True, check.max_score, 1.0
    return report


# ----------------------------------------------------------------------------- HTML

def test_html_page_structure_and_loss_curve() -> None:
    document = html.render(graded_report())
    assert document.startswith("<!DOCTYPE html>")
    page = parse_html(document)
    assert len(page.named("html")) == 1 and len(page.named("head")) == 1
    assert len(page.named("body")) == 1 and len(page.named("style")) == 1
    text = "".join(page.text)
    assert "62.5 / 100" in text
    for check_id in ("activation.values", "forward.values", "backward.gradient", "training.converges"):
        assert check_id in text
    assert page.classes("passed") == 3 and page.classes("failed") == 2
    assert HINT in text and "d_activation_on_w2_partials" in text
    assert "NameError: name 'y' is not defined" in text
    assert "cell 3 printed too much output" in text
    pngs = embedded_pngs(page)
    assert len(pngs) == 1
    width, height = png_size(pngs[0])
    assert width > 0 and height > 0
    assert len(pngs[0]) < 100_000


def test_html_is_self_contained() -> None:
    document = html.render(graded_report())
    assert "http://" not in document and "https://" not in document
    page = parse_html(document)
    assert not page.named("script") and not page.named("link")
    for attrs in page.named("img"):
        assert (attrs["src"] or "").startswith("data:")


def test_html_escapes_student_text() -> None:
    document = html.render(hostile_report())
    page = parse_html(document)
    assert not page.named("script"), "a <script> in a message must come out escaped"
    assert len(page.named("img")) == 1, "only the loss curve; no img from the submission path"
    assert "&lt;script&gt;" in document
    text = "".join(page.text)
    assert "<script>alert('x')</script>" in text  # shown to the reader as text
    assert "<img src=x onerror=alert(1)>" in text
    assert "\x00" not in document and "\x1b" not in document
    assert "\\x00\\x1b[31mred\\x1b[0m" in text  # escapes shown as text: never obeyed, never silently dropped


def test_html_error_report() -> None:
    document = html.render(error_report())
    page = parse_html(document)
    text = "".join(page.text)
    assert "Not graded" in text and ERROR_SENTENCE in text
    assert not page.named("img") and not page.named("table")


def test_html_without_training_has_no_image() -> None:
    page = parse_html(html.render(graded_report(training=None)))
    assert not page.named("img")
    empty = Training(iterations=0, final_prediction=None, target=1.0)
    assert not parse_html(html.render(graded_report(training=empty))).named("img")


def test_html_fragment_is_body_only() -> None:
    fragment = html.fragment(graded_report())
    page = parse_html(fragment)
    assert not page.named("html") and not page.named("head") and not page.named("body")
    assert page.tags[0] == ("div", {"class": "grader-report"})
    assert page.named("style"), "the fragment carries its own scoped CSS by default"
    assert not parse_html(html.fragment(graded_report(), style=False)).named("style")
    assert len(embedded_pngs(page)) == 1


def test_html_names_the_helper_pair_the_report_was_graded_with() -> None:
    score_line = next(line for line in html.render(graded_report()).splitlines() if 'class="score"' in line)
    assert score_line.endswith(" · graded with your <code>relu</code> activation</p>")
    link = GradedWith("tanh", "link", ("encode", "decode", "loss"))
    assert " · graded with your <code>tanh</code> link</p>" in html.render(graded_report(graded_with=link))
    assert "graded with your" not in html.render(graded_report(graded_with=None))


# ----------------------------------------------------------------------------- plots

def test_loss_curve_png_and_none_cases() -> None:
    data = loss_chart.loss_curve_png(graded_report().training)
    assert data is not None
    width, height = png_size(data)
    assert (width, height) == (480, 280)
    assert loss_chart.loss_curve_png(None) is None
    assert loss_chart.loss_curve_png(Training(3, None, 1.0, [], [])) is None
    assert loss_chart.loss_curve_png(Training(3, None, 1.0, [float("nan")], [float("inf")])) is None
    # Non-positive or diverged values are drawn on a linear axis instead of crashing.
    assert png_size(loss_chart.loss_curve_png(Training(3, None, 1.0, [0.5, 0.0, float("inf")], [])))[0] > 0


def test_histogram_and_bar_chart_png() -> None:
    assert png_size(plot.histogram_png([10.0, 55.5, 100.0, 120.0], 100.0))[0] > 0
    assert png_size(plot.histogram_png([], 0.0))[0] > 0
    assert png_size(plot.bar_chart_png({"outer_transposed": 3, "stale_w2": 1}, "bugs"))[0] > 0
    assert png_size(plot.bar_chart_png({}, "bugs"))[0] > 0


def test_importing_the_renderers_does_not_import_matplotlib() -> None:
    code = "import sys, grader.render; print('matplotlib' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"


# ----------------------------------------------------------------------------- JUnit

def test_junit_counts_and_failures() -> None:
    root = ET.fromstring(junit.render(graded_report()))
    assert root.tag == "testsuites"
    assert (root.get("tests"), root.get("failures"), root.get("errors")) == ("5", "2", "0")
    suites = root.findall("testsuite")
    assert len(suites) == 1
    suite = suites[0]
    assert suite.get("name") == "class/alice/simple_nn.ipynb"
    assert float(suite.get("time")) == pytest.approx(2.25)
    cases = suite.findall("testcase")
    assert [c.get("name") for c in cases] == [
        "activation.values", "d_activation.values", "forward.values", "backward.gradient",
        "training.converges"]
    assert all(c.get("classname") == "class/alice/simple_nn.ipynb" for c in cases)
    failed = {c.get("name"): c.find("failure") for c in cases if c.find("failure") is not None}
    assert set(failed) == {"forward.values", "backward.gradient"}
    assert failed["backward.gradient"].get("message") == "w1 gradient is wrong"
    assert HINT in failed["backward.gradient"].text  # the bug's hint lands on its function's failure
    assert HINT not in failed["forward.values"].text
    assert all(c.find("error") is None for c in cases)


def test_junit_error_report_is_one_error_case() -> None:
    root = ET.fromstring(junit.render(error_report()))
    assert (root.get("tests"), root.get("failures"), root.get("errors")) == ("1", "0", "1")
    (case,) = root.iter("testcase")
    assert case.get("name") == "grading"
    error = case.find("error")
    assert error is not None and error.get("message") == ERROR_SENTENCE


def test_junit_render_many_sums_suites() -> None:
    root = ET.fromstring(junit.render_many([graded_report(), error_report(), all_passed_report()]))
    assert len(root.findall("testsuite")) == 3
    assert (root.get("tests"), root.get("failures"), root.get("errors")) == ("11", "2", "1")
    assert float(root.get("time")) == pytest.approx(2.25 + 0.1 + 2.25)


def test_junit_strips_characters_illegal_in_xml() -> None:
    document = junit.render(hostile_report())
    assert "\x00" not in document and "\x1b" not in document
    root = ET.fromstring(document)  # would raise ParseError on a NUL
    failure = next(c.find("failure") for c in root.iter("testcase") if c.get("name") == "forward.values")
    assert "<script>alert('x')</script>" in failure.get("message")
    assert root.find("testsuite").get("name") == "evil/<img src=x onerror=alert(1)>.ipynb"


# ----------------------------------------------------------------------------- Gradescope

GRADESCOPE_TOP = {"score", "execution_time", "output", "output_format", "visibility",
                  "stdout_visibility", "tests", "extra_data"}
GRADESCOPE_TEST = {"name", "number", "score", "max_score", "status", "output", "output_format",
                   "tags", "visibility"}


def _strict_json(text: str):
    def reject(token):
        raise ValueError(f"non-standard JSON token {token}")
    return json.loads(text, parse_constant=reject)


def test_gradescope_graded() -> None:
    doc = _strict_json(gradescope.render(graded_report()))
    assert set(doc) == GRADESCOPE_TOP
    assert doc["score"] == 62.5 and doc["execution_time"] == 2.25
    assert doc["output_format"] == "md" and doc["visibility"] == "visible"
    assert doc["stdout_visibility"] == "hidden"
    tests = doc["tests"]
    assert len(tests) == 5
    for test in tests:
        assert set(test) == GRADESCOPE_TEST
        assert test["status"] in ("passed", "failed")
        assert test["visibility"] == "visible" and test["output_format"] == "md"
        assert len(test["tags"]) == 1
    assert sum(t["score"] for t in tests) == doc["score"]
    assert sum(t["max_score"] for t in tests) == 100.0
    assert len({t["number"] for t in tests}) == 5
    by_name = {t["name"]: t for t in tests}
    assert by_name["backward.gradient"]["status"] == "failed"
    assert by_name["backward.gradient"]["tags"] == ["backward"]
    assert HINT in by_name["backward.gradient"]["output"]
    assert HINT not in by_name["forward.values"]["output"]
    assert by_name["activation.values"]["status"] == "passed"
    assert doc["extra_data"]["schema"] == "grader.report/1"
    assert doc["extra_data"]["rubric"] == "simple_nn"
    assert doc["extra_data"]["diagnoses"] == ["d_activation_on_w2_partials"]


def test_gradescope_extra_data_names_the_helper_pair_and_the_assignment() -> None:
    extra = gradescope.to_dict(graded_report(assignment="simple_nn"))["extra_data"]
    assert extra["graded_with_activation"] == "relu"
    assert extra["graded_with"] == {"family": "relu", "helper": "activation", "dependents": ["forward", "backward"]}
    assert extra["assignment"] == "simple_nn"
    none = gradescope.to_dict(graded_report(graded_with=None))["extra_data"]
    assert none["graded_with"] is None and "graded_with_activation" not in none


def test_gradescope_error_report() -> None:
    doc = _strict_json(gradescope.render(error_report(score=float("nan"), max_score=100.0)))
    assert set(doc) == GRADESCOPE_TOP
    assert doc["score"] == 0.0
    assert ERROR_SENTENCE in doc["output"]
    assert doc["extra_data"]["status"] == "error"
    (grading,) = doc["tests"]  # never an empty list of tests: one failed "grading" test, as JUnit and Classroom
    assert set(grading) == GRADESCOPE_TEST
    assert grading["name"] == "grading" and grading["status"] == "failed"
    assert grading["score"] == 0.0 and grading["max_score"] == 100.0 and grading["visibility"] == "visible"
    assert ERROR_SENTENCE in grading["output"]


def test_gradescope_escapes_markup_and_controls() -> None:
    doc = gradescope.to_dict(hostile_report())
    forward = next(t for t in doc["tests"] if t["name"] == "forward.values")
    assert "<script>" not in forward["output"] and "&lt;script&gt;" in forward["output"]
    assert "\x00" not in json.dumps(doc, ensure_ascii=False) and "\x1b" not in doc["output"]


def test_gradescope_non_finite_scores_become_zero() -> None:
    report = graded_report(score=float("nan"))
    report.checks[0].score = float("inf")
    doc = _strict_json(gradescope.render(report))
    assert doc["score"] == 0.0 and doc["tests"][0]["score"] == 0.0


# ----------------------------------------------------------------------------- visibility

REQUIRES_HIDDEN = "loss fell; it earns no points until backward.gradient passes"


def visibility_report(**overrides) -> Report:
    """graded_report with backward.gradient hidden (failed, 30 points) and training after the due date, which
    earns nothing until backward.gradient passes; the backward hint explains only the hidden failure."""
    report = graded_report(**overrides)
    by_id = {c.id: c for c in report.checks}
    by_id["backward.gradient"].visibility = "hidden"
    training = by_id["training.converges"]
    training.visibility, training.passed, training.score, training.message = "after_due_date", False, 0.0, REQUIRES_HIDDEN
    report.score = 52.5
    report.diagnoses = [Diagnosis("d_activation_on_w2_partials", "backward", HINT),
                        Diagnosis("integrity_grader_import", "notebook", "Cell 2 imports the grader.")]
    return report


def test_gradescope_tests_carry_their_visibility_and_the_score_stays_full() -> None:
    doc = _strict_json(gradescope.render(visibility_report()))
    tests = {t["name"]: t for t in doc["tests"]}
    assert tests["backward.gradient"]["visibility"] == "hidden"
    assert tests["training.converges"]["visibility"] == "after_due_date"
    assert {t["visibility"] for n, t in tests.items() if n not in ("backward.gradient", "training.converges")
            } == {"visible"}
    assert doc["score"] == 52.5 and doc["visibility"] == "visible"
    assert HINT in tests["backward.gradient"]["output"]  # instructors see everything


def test_gradescope_page_text_is_the_students_view() -> None:
    output = gradescope.to_dict(visibility_report())["output"]
    assert output.startswith("**Score on the checks shown here: 52.5 / 60 (88%)**")
    assert "40 more points come from further checks that your instructor grades" in output
    assert "backward.gradient" not in output and "training" not in output
    assert HINT not in output  # backward fails only a hidden check: its hint would tell
    assert "Warning: 40 more" not in output  # the line is said once, not as a warning
    assert "- Warning: cell 3 printed too much output" in output


def test_gradescope_page_with_every_check_held_back_shows_no_score_line() -> None:
    report = visibility_report()
    for check in report.checks:
        check.visibility = "after_published"
    output = gradescope.to_dict(report)["output"]
    assert output.startswith("100 more points come from further checks that your instructor grades")
    assert "Score" not in output and HINT not in output


def test_gradescope_visibility_survives_hostile_text() -> None:
    report = visibility_report()
    report.checks[3].message = HOSTILE  # backward.gradient, hidden
    doc = gradescope.to_dict(report)
    hidden = next(t for t in doc["tests"] if t["name"] == "backward.gradient")
    assert hidden["visibility"] == "hidden" and "<script>" not in hidden["output"]


def test_student_view_removes_what_is_not_released() -> None:
    report = visibility_report()
    before = json.dumps(gradescope.to_dict(report))
    view = student_view(report)
    assert [c.id for c in view.checks] == ["activation.values", "d_activation.values", "forward.values"]
    assert (view.score, view.max_score) == (52.5, 60.0)
    assert view.warnings[0] == ("40 more points come from further checks that your instructor grades; "
                                "they are not shown here.")
    assert view.warnings[1:] == report.warnings
    assert [d.id for d in view.diagnoses] == ["integrity_grader_import"]
    assert view.training is None  # the curve shows whether training converged
    assert withheld_points(report) == 40.0
    # Pure: the report given is untouched.
    assert len(report.checks) == 5 and report.score == 52.5 and report.training is not None
    assert json.dumps(gradescope.to_dict(report)) == before


def test_student_view_after_the_due_date_shows_those_checks_without_naming_hidden_ones() -> None:
    view = student_view(visibility_report(), frozenset({"after_due_date"}))
    assert [c.id for c in view.checks][-1] == "training.converges"
    training = view.checks[-1]
    assert training.message == "loss fell; it earns no points until further checks that your instructor grades pass"
    assert (view.score, view.max_score) == (52.5, 70.0)
    assert view.training is not None
    assert view.warnings[0].startswith("30 more points")


def test_student_view_keeps_a_hint_its_shown_checks_explain() -> None:
    report = visibility_report()
    report.checks.append(CheckResult("backward.values", "backward", False, "differs", 0.0, 0.0, 0.0))
    assert [d.id for d in student_view(report).diagnoses] == ["d_activation_on_w2_partials",
                                                              "integrity_grader_import"]


def test_student_view_of_everything_released_or_nothing_held_is_the_report() -> None:
    report = visibility_report()
    assert student_view(report, {"hidden", "after_due_date", "after_published"}) is report
    plain = graded_report()
    assert student_view(plain) is plain and withheld_points(plain) == 0.0
    error = error_report()
    assert student_view(error) is error


def test_student_view_rejects_an_unknown_visibility() -> None:
    with pytest.raises(ValueError, match="unknown visibility 'after_due'"):
        student_view(visibility_report(), {"after_due"})


def test_json_report_carries_visibility_and_reads_it_back() -> None:
    from grader.render import json_report

    document = json_report.to_dict(visibility_report())
    assert [c["visibility"] for c in document["checks"]] == ["visible", "visible", "visible", "hidden",
                                                             "after_due_date"]
    again = json_report.from_dict(document)
    assert [c.visibility for c in again.checks] == [c["visibility"] for c in document["checks"]]
    del document["checks"][0]["visibility"]  # written before visibility existed
    document["checks"][1]["visibility"] = "secret"  # damaged: fail closed
    assert [c.visibility for c in json_report.from_dict(document).checks][:2] == ["visible", "hidden"]


@pytest.mark.parametrize("fmt", ["text", "md", "html", "json", "junit", "classroom"])
def test_a_student_view_rendered_in_any_format_tells_nothing_held_back(fmt: str) -> None:
    rendered = render(student_view(visibility_report()), fmt)
    assert "backward.gradient" not in rendered and "training.converges" not in rendered
    assert "d_activation_on_w2_partials" not in rendered
    if fmt != "classroom":  # Classroom's JSON has no place for warnings: its max_score is the checks shown
        assert "40 more points" in rendered


# ----------------------------------------------------------------------------- GitHub Classroom

CLASSROOM_TEST = {"name", "status", "score", "message", "test_code", "filename", "line_no", "duration"}


def test_classroom_graded() -> None:
    doc = _strict_json(classroom.render(graded_report()))
    assert set(doc) == {"version", "status", "max_score", "tests"}
    assert doc["version"] == 1 and doc["status"] == "fail" and doc["max_score"] == 100.0
    for test in doc["tests"]:
        assert set(test) == CLASSROOM_TEST
        assert test["status"] in ("pass", "fail")
        assert (test["test_code"], test["filename"], test["line_no"], test["duration"]) == ("", "", 0, 0)
    assert sum(t["score"] for t in doc["tests"]) == 62.5
    assert [t["status"] for t in doc["tests"]] == ["pass", "pass", "fail", "fail", "pass"]
    assert HINT in doc["tests"][3]["message"]


def test_classroom_pass_only_when_everything_passed() -> None:
    assert classroom.to_dict(all_passed_report())["status"] == "pass"
    assert classroom.to_dict(graded_report(checks=[]))["status"] == "fail"


def test_classroom_error_report() -> None:
    doc = classroom.to_dict(error_report())
    assert doc["status"] == "error"
    assert doc["tests"] == [{"name": "grading", "status": "error", "score": 0.0,
                             "message": ERROR_SENTENCE, "test_code": "", "filename": "",
                             "line_no": 0, "duration": 0}]


@pytest.mark.parametrize("make", [graded_report, error_report, hostile_report])
def test_classroom_base64_round_trip(make) -> None:
    report = make()
    encoded = classroom.encoded(report)
    assert encoded.isascii() and "\n" not in encoded
    assert json.loads(base64.b64decode(encoded, validate=True)) == classroom.to_dict(report)


# ----------------------------------------------------------------------------- registry

NEW_FORMATS = ("html", "junit", "gradescope", "classroom")


@pytest.mark.parametrize("fmt", NEW_FORMATS)
def test_new_formats_are_registered(fmt: str) -> None:
    assert fmt in RENDERERS
    for report in (graded_report(), error_report()):
        out = render(report, fmt)
        assert isinstance(out, str) and out.strip()


def test_cli_offers_every_registered_format() -> None:
    from grader.cli import FORMATS

    assert set(NEW_FORMATS) <= set(FORMATS)
    assert set(FORMATS) <= set(RENDERERS)
