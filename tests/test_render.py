"""Tests of the report renderers (JSON contract, terminal, Markdown, registry).

Reports are built by hand so these tests pin the presentation layer alone: a
change to grading cannot make them pass or fail, and the contract keys are
spelled out here rather than imported, so a renamed key in the renderer fails.
"""
from __future__ import annotations

import json
import math
import re

import pytest

from grader.model import (
    CellRun,
    CheckResult,
    Diagnosis,
    FunctionInfo,
    GradedWith,
    Report,
    Training,
)
from grader.render import RENDERERS, file_name, json_report, markdown, render, renderer, text

#: The simple_nn assignment's functions, in its order (what grading puts in ``Report.functions``).
SIMPLE_NN = ("activation", "d_activation", "forward", "backward")
RELU = GradedWith("relu", "activation", ("forward", "backward"))

CONTRACT_KEYS = {"schema", "submission", "rubric", "status", "score", "max_score",
                 "functions", "checks", "diagnoses", "warnings"}
CHECK_KEYS = {"id", "function", "passed", "score", "max_score", "message"}
DIAGNOSIS_KEYS = {"id", "function", "message"}
ANSI = re.compile(r"\x1b\[[0-9;]*m")

HINT = ("The slope of the activation belongs at the hidden pre-activation, the quantity the "
        "chain rule differentiates through, not at what flows back from w2.")
LONG_FAILURE = "the w1 gradient differs from finite differences on mixed-sign inputs " * 4
ERROR_SENTENCE = "notes.txt is not a Jupyter notebook: not JSON; export it again from Jupyter and resubmit."


def graded_report(**overrides) -> Report:
    """A realistic graded report: passes, partial credit, failures, a bug, warnings, training."""
    report = Report(
        submission="class/alice/simple_nn.ipynb",
        rubric="simple_nn",
        status="graded",
        score=75.0,
        max_score=100.0,
        functions={
            "activation": FunctionInfo("activation", True, "function", "relu"),
            "d_activation": FunctionInfo("d_activation", True, "lambda"),
            "forward": FunctionInfo("forward", True, "function"),
            "backward": FunctionInfo("backward", True, "function"),
        },
        checks=[
            CheckResult("activation.values", "activation", True, "PASSMESSAGE", 1.0, 15.0, 15.0),
            CheckResult("d_activation.values", "d_activation", False,
                        "slope is wrong on 2 of 8 probes", 0.75, 7.5, 10.0,
                        {"inputs": {"z": [-1.5, 2.0]}, "expected": [0.0, 1.0], "got": [1.0, 1.0]}),
            CheckResult("forward.values", "forward", True, "matches", 1.0, 20.0, 20.0),
            CheckResult("backward.gradient", "backward", False, LONG_FAILURE, 0.0, 0.0, 20.0,
                        {"inputs": {"x": [1.0, -2.0], "w1": [[0.5, -0.25], [0.125, 1.0]]},
                         "expected": [[0.1, 0.2], [0.3, 0.4]], "got": [[0.1, 0.0], [0.3, 0.0]]}),
            CheckResult("training.converges", "training", True, "loss fell", 1.0, 10.0, 10.0),
        ],
        diagnoses=[Diagnosis("d_activation_on_w2_partials", "backward", HINT)],
        warnings=["cell 3 printed 2 MB of output; kept the first 10 kB"],
        cells=[CellRun(0, "ok"), CellRun(1, "error", "NameError: name 'y' is not defined")],
        training=Training(iterations=50, final_prediction=0.97, target=1.0,
                          loss=[0.5, 0.25, 0.125], reference_loss=[0.5, 0.2, 0.1]),
        graded_with=RELU,
        seed=7,
        backend="subprocess",
        duration_s=1.5,
        output_excerpt="épreuve ✓",
        assignment="simple_nn",
    )
    for key, value in overrides.items():
        setattr(report, key, value)
    return report


def error_report(**overrides) -> Report:
    report = Report(submission="notes.txt", rubric="simple_nn", status="error", error=ERROR_SENTENCE)
    for key, value in overrides.items():
        setattr(report, key, value)
    return report


# ----------------------------------------------------------------------------- JSON

def test_graded_json_has_contract_keys_with_their_types() -> None:
    doc = json.loads(json_report.render(graded_report()))
    assert CONTRACT_KEYS <= doc.keys()
    assert "error" not in doc
    assert doc["schema"] == "grader.report/1"
    assert doc["status"] == "graded"
    assert isinstance(doc["submission"], str) and isinstance(doc["rubric"], str)
    assert isinstance(doc["score"], float) and isinstance(doc["max_score"], float)
    assert doc["score"] == 75.0 and doc["max_score"] == 100.0
    assert isinstance(doc["functions"], dict)
    assert all(isinstance(w, str) for w in doc["warnings"])
    for check in doc["checks"]:
        assert CHECK_KEYS <= check.keys()
        assert isinstance(check["passed"], bool)
        assert isinstance(check["score"], float) and isinstance(check["max_score"], float)
    for diagnosis in doc["diagnoses"]:
        assert set(diagnosis) == DIAGNOSIS_KEYS
    assert doc["diagnoses"][0]["id"] == "d_activation_on_w2_partials"


def test_error_key_present_only_for_error_reports() -> None:
    doc = json.loads(json_report.render(error_report()))
    assert CONTRACT_KEYS <= doc.keys()
    assert doc["status"] == "error"
    assert doc["error"] == ERROR_SENTENCE
    # A stray error message on a graded report must not leak into the contract.
    assert "error" not in json_report.to_dict(graded_report(error="left over"))


def test_error_report_without_message_still_has_an_error_sentence() -> None:
    doc = json_report.to_dict(error_report(error=None))
    assert isinstance(doc["error"], str) and doc["error"].strip()


def test_functions_listed_in_the_reports_order() -> None:
    functions = {name: FunctionInfo(name, name == "forward", "function" if name == "forward" else None)
                 for name in ("backward", "forward", "activation")}
    listed = json_report.to_dict(graded_report(functions=functions))["functions"]
    assert list(listed) == ["backward", "forward", "activation"]
    assert listed["forward"] == {"found": True, "kind": "function"}
    assert listed["backward"] == listed["activation"] == {"found": False}


def test_function_parameters_and_variadic_round_trip() -> None:
    report = graded_report()
    report.functions["backward"] = FunctionInfo("backward", True, "function", parameters=("x", "\x1b[2J"),
                                                variadic=True)
    entry = json_report.to_dict(report)["functions"]["backward"]
    assert entry == {"found": True, "kind": "function", "parameters": ["x", "\\x1b[2J"], "variadic": True}
    assert json_report.from_dict(json_report.to_dict(report)).functions["backward"] == \
        FunctionInfo("backward", True, "function", parameters=("x", "\\x1b[2J"), variadic=True)


def test_function_entries_omit_none_fields() -> None:
    functions = json_report.to_dict(graded_report())["functions"]
    assert functions["activation"] == {"found": True, "kind": "function", "recognised_as": "relu"}
    assert functions["d_activation"] == {"found": True, "kind": "lambda"}


def test_check_details_only_when_non_empty() -> None:
    checks = {c["id"]: c for c in json_report.to_dict(graded_report())["checks"]}
    assert "details" not in checks["activation.values"]
    assert checks["d_activation.values"]["details"]["got"] == [1.0, 1.0]
    assert checks["d_activation.values"]["fraction"] == 0.75


def _reject_constant(token: str) -> None:
    raise AssertionError(f"invalid JSON token {token}")


def test_non_finite_floats_become_null_and_output_is_strict_json() -> None:
    report = graded_report(score=math.nan, duration_s=math.inf)
    report.training.loss = [0.5, math.nan, -math.inf]
    report.checks[1].details = {"got": [math.nan, 1.0], "rel_error": math.inf}
    rendered = json_report.render(report)
    doc = json.loads(rendered, parse_constant=_reject_constant)
    assert doc["score"] is None
    assert doc["duration_s"] is None
    assert doc["training"]["loss"] == [0.5, None, None]
    assert doc["checks"][1]["details"] == {"got": [None, 1.0], "rel_error": None}


def test_json_keeps_non_ascii_text_readable() -> None:
    rendered = json_report.render(graded_report())
    assert "épreuve ✓" in rendered
    assert rendered.startswith('{\n  "schema"')  # indent 2


def test_from_dict_round_trips_a_graded_report() -> None:
    original = graded_report()
    assert json_report.from_dict(json_report.to_dict(original)) == original
    assert json_report.from_dict(json.loads(json_report.render(original))) == original


def test_from_dict_round_trips_an_error_report() -> None:
    original = error_report(functions={n: FunctionInfo(n, False) for n in SIMPLE_NN},
                            warnings=["file is 0 bytes"])
    assert json_report.from_dict(json.loads(json_report.render(original))) == original


def test_to_dict_of_from_dict_is_stable() -> None:
    """Re-rendering a stored report must reproduce it, even one lacking function entries."""
    document = json_report.to_dict(graded_report(functions={}))
    assert json_report.to_dict(json_report.from_dict(document)) == document


def test_from_dict_reads_null_back_as_nan() -> None:
    report = json_report.from_dict(json_report.to_dict(graded_report(score=math.nan)))
    assert math.isnan(report.score)


@pytest.mark.parametrize("key, value, needle", [
    ("schema", "grader.report/2", "grader.report/1"),
    ("warnings", None, "warnings"),  # None: remove the key
    ("status", "pending", "status"),
])
def test_from_dict_rejects_documents_it_cannot_read(key: str, value: object, needle: str) -> None:
    document = json_report.to_dict(graded_report())
    if value is None:
        del document[key]
    else:
        document[key] = value
    with pytest.raises(ValueError, match=needle):
        json_report.from_dict(document)


# ----------------------------------------------------------------------------- text

def test_text_without_colour_has_no_escape_codes() -> None:
    for report in (graded_report(), error_report()):
        assert "\x1b" not in text.render(report, colour=False)


def test_text_with_colour_uses_ansi_and_same_layout() -> None:
    coloured = text.render(graded_report(), colour=True)
    assert "\x1b[" in coloured
    assert ANSI.sub("", coloured) == text.render(graded_report(), colour=False)


def test_text_header_shows_submission_score_and_percentage() -> None:
    header = text.render(graded_report(), colour=False).splitlines()[0]
    assert "class/alice/simple_nn.ipynb" in header
    assert "75/100" in header and "75%" in header


def test_text_lists_checks_with_marks_and_failure_reasons() -> None:
    out = text.render(graded_report(), colour=False)
    assert re.search(r"✓ activation\.values\s+15/15$", out, re.M)
    assert re.search(r"✗ d_activation\.values\s+7\.5/10\s+slope is wrong on 2 of 8 probes$", out, re.M)
    assert "PASSMESSAGE" not in out  # passing checks stay one quiet line


def test_text_wraps_long_failure_messages_within_the_width() -> None:
    """A failed check's reason is wrapped under itself, never cut mid-way on one line (issue 13:
    "the TypeError is cut off in the text report"); only past MAX_MESSAGE_LINES lines is it cut."""
    report = graded_report(submission="x/" * 80 + "alice.ipynb")
    out = text.render(report, colour=False)
    assert all(len(line) <= text.WIDTH for line in out.splitlines())
    lines = out.splitlines()
    first = next(i for i, l in enumerate(lines) if "backward.gradient" in l)
    column = lines[first].index("implied") if "implied" in lines[first] else None
    message = next(c.message for c in report.checks if c.id == "backward.gradient")
    shown = " ".join(l.strip() for l in lines[first:first + text.MAX_MESSAGE_LINES])
    assert message.split()[-1] in shown or shown.endswith("…")
    assert column is None or all(l.startswith(" " * column) for l in lines[first + 1:first + 2] if l.strip())
    long = graded_report()
    long.checks[0].passed, long.checks[0].message = False, "TypeError: " + "word " * 200
    cut = [l for l in text.render(long, colour=False).splitlines() if l.strip()]
    start = next(i for i, l in enumerate(cut) if "TypeError" in l)
    assert cut[start + text.MAX_MESSAGE_LINES - 1].endswith("…")


def test_text_puts_diagnoses_under_their_function() -> None:
    lines = text.render(graded_report(), colour=False).splitlines()
    bug = next(i for i, l in enumerate(lines) if l.strip().startswith("bug: d_activation_on_w2_partials — "))
    backward = next(i for i, l in enumerate(lines) if l.startswith("backward"))
    training = next(i for i, l in enumerate(lines) if l.startswith("training"))
    assert backward < bug < training
    assert "chain rule" in " ".join(lines[bug:training])


def test_text_sections_in_notebook_order_with_training_last() -> None:
    lines = text.render(graded_report(), colour=False).splitlines()
    # A section heading is the first line after a blank one.
    headings = [lines[i + 1].split()[0] for i, line in enumerate(lines[:-1]) if not line]
    assert headings == [*SIMPLE_NN, "training", "warnings"]


def test_training_follows_the_four_functions_before_other_sections() -> None:
    report = graded_report()
    report.checks.insert(0, CheckResult("integrity.no_mutation", "integrity", True, "", 1, 5, 5))
    lines = text.render(report, colour=False).splitlines()
    headings = [lines[i + 1].split()[0] for i, line in enumerate(lines[:-1]) if not line]
    assert headings == [*SIMPLE_NN, "training", "integrity", "warnings"]


def test_text_never_drops_checks_of_unexpected_functions() -> None:
    report = graded_report()
    report.checks.append(CheckResult("integrity.no_mutation", "integrity", False, "mutated x", 0, 0, 5))
    out = text.render(report, colour=False)
    assert "integrity.no_mutation" in out and "mutated x" in out


def test_text_flags_missing_functions() -> None:
    report = graded_report()
    report.functions["forward"] = FunctionInfo("forward", False)
    section = text.render(report, colour=False).split("\n\nforward")[1].splitlines()[0]
    assert "not found" in section


def test_text_shows_at_most_ten_warnings() -> None:
    report = graded_report(warnings=[f"warn-{i:02d}" for i in range(13)])
    out = text.render(report, colour=False)
    assert "warn-09" in out and "warn-10" not in out
    assert "and 3 more" in out
    assert re.search(r"^\s+1\. warn-00$", out, re.M)


def test_text_error_report_is_the_sentence_and_no_score_table() -> None:
    out = text.render(error_report(), colour=False)
    assert ERROR_SENTENCE in " ".join(line.strip() for line in out.splitlines())
    assert "✓" not in out and "✗" not in out
    assert not re.search(r"\d+/\d+", out)
    assert not any(line.startswith(SIMPLE_NN) for line in out.splitlines())


# ----------------------------------------------------------------------------- Markdown

def _table_rows(md: str) -> list[str]:
    return [line for line in md.splitlines() if line.startswith("|")]


def test_markdown_has_title_score_and_check_table() -> None:
    md = markdown.render(graded_report())
    assert md.startswith("# ")
    assert "75 / 100 (75%)" in md
    rows = _table_rows(md)
    assert rows[0] == "| check | result | points |"
    assert len(rows) == 2 + len(graded_report().checks)
    assert any("`d_activation.values`" in r and "failed" in r and "7.5 / 10" in r for r in rows)


def test_markdown_escapes_pipes_in_table_cells() -> None:
    report = graded_report()
    report.checks.append(CheckResult("custom|probe", "forward", False, "a | b", 0, 0, 1))
    rows = _table_rows(markdown.render(report))
    row = next(r for r in rows if "custom" in r)
    assert r"custom\|probe" in row
    # Exactly the four column separators remain unescaped in every row.
    assert all(len(re.findall(r"(?<!\\)\|", r)) == 4 for r in rows)


def test_markdown_what_to_look_at_has_hint_and_failure_messages() -> None:
    md = markdown.render(graded_report())
    advice = md.split("## What to look at", 1)[1]
    assert HINT in advice
    assert "d_activation_on_w2_partials" in advice
    assert "slope is wrong on 2 of 8 probes" in advice
    assert "PASSMESSAGE" not in md


def test_markdown_shows_a_failing_probe_as_a_code_block() -> None:
    md = markdown.render(graded_report())
    blocks = re.findall(r"```text\n(.*?)\n\s*```", md, re.S)
    probe = next(b for b in blocks if "z = " in b)
    assert "inputs:" in probe
    assert "z = [-1.5, 2.0]" in probe
    assert "expected: [0.0, 1.0]" in probe
    assert "got: [1.0, 1.0]" in probe


def test_markdown_probe_fence_survives_backticks_in_values() -> None:
    report = graded_report()
    report.checks[1].details = {"got": "```raise``` from the student"}
    md = markdown.render(report)
    assert "````text" in md and "\n  ````" in md


def test_markdown_all_passed_says_so() -> None:
    report = graded_report(diagnoses=[], checks=[c for c in graded_report().checks if c.passed])
    advice = markdown.render(report).split("## What to look at", 1)[1]
    assert "passed" in advice and "###" not in advice.split("## Warnings")[0]


def test_markdown_warnings_come_last() -> None:
    md = markdown.render(graded_report())
    assert md.index("## Warnings") > md.index("## What to look at")
    assert "- cell 3 printed 2 MB of output" in md


def test_markdown_error_report_is_a_short_section() -> None:
    md = markdown.render(error_report())
    assert "## Not graded" in md and ERROR_SENTENCE in md
    assert not _table_rows(md) and "Score" not in md


# ----------------------------------------------------------------------------- registry

def test_registry_formats() -> None:
    assert set(RENDERERS) == {"json", "text", "md", "html", "junit", "gradescope", "classroom"}
    report = graded_report()
    assert render(report, "text") == text.render(report, colour=False)
    assert "\x1b" not in render(report, "text")
    assert json.loads(render(report, "json"))["schema"] == "grader.report/1"
    assert render(report, "md") == markdown.render(report)


def test_unknown_format_lists_valid_ones() -> None:
    with pytest.raises(ValueError) as excinfo:
        render(graded_report(), "pdf")
    message = str(excinfo.value)
    assert "pdf" in message and all(fmt in message for fmt in ("json", "md", "text", "html"))


def test_each_format_carries_its_file_extension() -> None:
    expected = {"json": ".json", "text": ".txt", "md": ".md", "html": ".html", "junit": ".xml",
                "gradescope": ".json", "classroom": ".json"}
    assert {fmt: entry.extension for fmt, entry in RENDERERS.items()} == expected
    assert file_name("alice", "html") == "alice.html" and file_name("results", "gradescope") == "results.json"
    report = graded_report()
    assert RENDERERS["md"](report) == renderer("md").render(report) == markdown.render(report)
    with pytest.raises(ValueError, match="pdf"):
        file_name("alice", "pdf")


# ----------------------------------------------------------------------------- the helper pair

def test_text_names_the_helper_pair_in_the_words_of_the_report() -> None:
    lines = text.render(graded_report(), colour=False).splitlines()
    assert lines[1] == "activation pair used to check forward and backward: relu"
    three = GradedWith("tanh", "link", ("encode", "decode", "loss"))
    lines = text.render(graded_report(graded_with=three), colour=False).splitlines()
    assert lines[1] == "link pair used to check encode, decode and loss: tanh"
    out = text.render(graded_report(graded_with=None), colour=False)
    assert "pair used" not in out


def test_json_graded_with_keys() -> None:
    doc = json_report.to_dict(graded_report())
    assert doc["graded_with_activation"] == "relu"  # the key readers of earlier reports know
    assert doc["graded_with"] == {"family": "relu", "helper": "activation", "dependents": ["forward", "backward"]}
    assert doc["assignment"] == "simple_nn"
    keys = list(doc)
    assert keys.index("duration_s") + 1 == keys.index("graded_with_activation") < keys.index("cells")
    none = json_report.to_dict(graded_report(graded_with=None))
    assert none["graded_with"] is None and not any(key.startswith("graded_with_") for key in none)


def test_json_round_trips_graded_with() -> None:
    for graded_with in (RELU, GradedWith("tanh", "link", ("encode", "decode", "loss")), None):
        original = graded_report(graded_with=graded_with, assignment="made_up")
        back = json_report.from_dict(json.loads(json_report.render(original)))
        assert back == original
        assert back.graded_with == graded_with
        if graded_with is not None:
            assert isinstance(back.graded_with.dependents, tuple)


def test_legacy_json_with_graded_with_activation_still_loads() -> None:
    """A report stored before ``graded_with`` and ``assignment`` existed (simple_nn's)."""
    document = json_report.to_dict(graded_report())
    del document["graded_with"], document["assignment"]
    document["graded_with_activation"] = "sigmoid"
    report = json_report.from_dict(document)
    assert report.graded_with == GradedWith("sigmoid", "activation", ())  # the key names the helper, not its users
    assert report.assignment == ""
    assert text.render(report).splitlines()[1] == "activation pair used: sigmoid"
    document["graded_with_activation"] = None
    assert json_report.from_dict(document).graded_with is None


def test_training_with_several_outputs() -> None:
    """A prediction and a target may be lists (one number per output)."""
    training = Training(iterations=3, final_prediction=[0.97, float("nan")], target=[1.0, 0.0],  # type: ignore[arg-type]
                        loss=[0.5, 0.25, 0.125], reference_loss=[0.5, 0.2, 0.1])
    report = graded_report(training=training)
    assert "no final prediction (target [1, 0])" in text.render(report)
    training.final_prediction = [0.97, 0.01]  # type: ignore[assignment]
    assert "final prediction [0.97, 0.01] (target [1, 0])" in text.render(report)
    assert "ended at a prediction of [0.97, 0.01] (target [1, 0])" in markdown.render(report)
    document = json_report.to_dict(report)
    assert document["training"]["final_prediction"] == [0.97, 0.01]
    assert json_report.from_dict(document) == report


# ----------------------------------------------------------------------------- an assignment the core does not know

def made_up_report(**overrides) -> Report:
    """A made-up assignment: functions ``predict`` and ``gradient``, no helper pair; its checks listed
    gradient first, so only ``report.functions`` can put predict's section first."""
    report = Report(
        submission="class/bob/regression.ipynb", rubric="regression", status="graded", score=5.0, max_score=30.0,
        functions={"predict": FunctionInfo("predict", True, "function"),
                   "gradient": FunctionInfo("gradient", True, "lambda")},
        checks=[CheckResult("gradient.matches_numeric", "gradient", False, "gradient is off by a factor 2",
                            0.0, 0.0, 20.0, {"inputs": {"w": [1.0, 2.0]}, "expected": [0.5], "got": [1.0]}),
                CheckResult("predict.values", "predict", False, "predict differs on 1 of 4 probes", 0.5, 5.0, 10.0),
                CheckResult("training.converges", "training", False, "loss still 0.5", 0.0, 0.0, 0.0)],
        diagnoses=[Diagnosis("missing_half", "gradient", "The gradient of 1/2 (y - t)^2 has no factor 2.")],
        training=Training(iterations=3, final_prediction=0.5, target=1.0, loss=[1.0, 0.7, 0.5],
                          reference_loss=[1.0, 0.5, 0.25]),
        assignment="regression",
    )
    for key, value in overrides.items():
        setattr(report, key, value)
    return report


SIMPLE_NN_WORDS = re.compile(r"activation|forward|backward", re.IGNORECASE)


@pytest.mark.parametrize("fmt", sorted(RENDERERS))
def test_a_made_up_assignment_renders_in_every_format(fmt: str) -> None:
    out = render(made_up_report(), fmt)
    assert not SIMPLE_NN_WORDS.search(out), SIMPLE_NN_WORDS.search(out)
    assert "predict" in out and "gradient" in out
    if fmt == "json":
        document = json.loads(out)
        assert list(document["functions"]) == ["predict", "gradient"]
        assert document["graded_with"] is None and document["assignment"] == "regression"
        assert json_report.from_dict(document) == made_up_report()


@pytest.mark.parametrize("fmt", ["text", "md", "html"])
def test_a_made_up_assignments_sections_follow_its_functions(fmt: str) -> None:
    out = render(made_up_report(), fmt)
    headings = {"text": ("\n\npredict", "\n\ngradient", "\n\ntraining"),
                "md": ("### `predict`", "### `gradient`", "### Training"),
                "html": ('id="fn-predict"', 'id="fn-gradient"', 'id="fn-training"')}[fmt]
    assert 0 <= out.index(headings[0]) < out.index(headings[1]) < out.index(headings[2])


def test_a_made_up_assignments_gradescope_tests_follow_its_functions() -> None:
    from grader.render import gradescope

    tests = gradescope.to_dict(made_up_report())["tests"]
    assert [(t["number"], t["tags"]) for t in tests] == [("1.1", ["predict"]), ("2.1", ["gradient"]),
                                                         ("3.1", ["training"])]


def test_a_function_of_the_report_without_checks_still_gets_a_section() -> None:
    report = made_up_report()
    report.functions["update"] = FunctionInfo("update", False)
    lines = text.render(report).splitlines()
    headings = [lines[i + 1].split()[0] for i, line in enumerate(lines[:-1]) if not line]
    assert headings == ["predict", "gradient", "update", "training"]  # "training" is no function of it
    assert "update  not found in the notebook" in lines
