"""Text from the sandbox is data: ``grader/untrusted_text.py`` and every output that shows such text.

A submission controls exception messages, printed output and its own file
name. Unit tests pin what ``safe_text`` makes of each dangerous character and,
as hypothesis properties, that nothing it returns can be unencodable, a
control, an escape or a bidi override. Renderer tests feed hand-built hostile
reports to every format. End-to-end tests grade notebooks written the way a
student writes them (built with nbformat) through the real command line, with
stdout a pipe or a terminal, and a class whose file names carry a bidi
override and an undecodable byte, and assert the exact outcome: the normal
exit code, the report printed, no escape byte, no raw markup outside Markdown
code, every class file written and parseable.
"""
from __future__ import annotations

import csv
import dataclasses
import json
import os
import pty
import re
import subprocess
import sys
import xml.etree.ElementTree as ET
from pathlib import Path
from typing import Any

import nbformat
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from nbformat.v4 import new_code_cell, new_markdown_cell, new_notebook

from grader.model import CellRun, CheckResult, Diagnosis, FunctionInfo, GradedWith, Report, Training
from grader.render import RENDERERS, classroom, html, junit, markdown, render, text
from grader.batch.summary import SORT_SCRIPT, GradebookRow, render_summary_html, summarize, write_gradebook
from grader.untrusted_text import BIDI_CONTROLS, safe_data, safe_lines, safe_report, safe_text

from conftest import CORRECT_CELLS, parse_html

# ----------------------------------------------------------------------------- what is forbidden

#: Every C0 control, DEL and every C1 control.
CONTROLS = [chr(c) for c in (*range(0x00, 0x20), 0x7F, *range(0x80, 0xA0))]
#: Characters that must never reach a reader, in any mode.
ALWAYS_FORBIDDEN = set(CONTROLS) - {"\n", "\t"} | set(BIDI_CONTROLS) | {"\u2028", "\u2029", "\ufffe", "\uffff"}
ONE_LINE_FORBIDDEN = ALWAYS_FORBIDDEN | {"\n", "\t"}
#: What students put in messages and names to attack a reader: the characters above, surrogates, markup.
HOSTILE_PIECES = [*CONTROLS, *BIDI_CONTROLS, "\u2028", "\u2029", "\ufffe", "\uffff", "\ud83d", "\ude00", "\udcff",
                  "\x1b[2J", "\x1b[H", "\x1b]8;;https://evil.example/\x1b\\", "\x9b31m", "\r\n",
                  "<script>", "</script>", "<svg onload=alert(1)>", "`", "```", "~~~", "|", "[", "](", "!",
                  "\\", "&", "&lt;", "\n\n", "    ", "=", "-", "#", "*", "_"]

ESC_MESSAGE = "\x1b[2J\x1b[H100/100 \x1b]8;;https://evil.example/\x1b\\click here\x1b]8;;\x1b\\"
HTML_MESSAGE = "<script>alert(1)</script> <svg onload=alert(1)>"


def assert_safe(output: str, multiline: bool = True) -> None:
    """``output`` is valid UTF-8 text without one forbidden character."""
    output.encode("utf-8")  # raises on a lone surrogate
    forbidden = ALWAYS_FORBIDDEN if multiline else ONE_LINE_FORBIDDEN
    found = sorted({f"U+{ord(c):04X}" for c in output if c in forbidden or "\ud800" <= c <= "\udfff"})
    assert not found, f"forbidden characters in the output: {found}"


# ----------------------------------------------------------------------------- safe_text: examples

@pytest.mark.parametrize(("raw", "one_line", "multi_line"), [
    ("\ud83d", "\\ud83d", "\\ud83d"),
    ("a\ud83d\ude00b", "a\U0001F600b", "a\U0001F600b"),  # a split pair is the character it encodes
    ("\ude00\ud83d", "\\ude00\\ud83d", "\\ude00\\ud83d"),  # the wrong order is two lone halves
    ("\x1b[2J\x1b[H100/100", "\\x1b[2J\\x1b[H100/100", "\\x1b[2J\\x1b[H100/100"),
    ("\x1b]8;;https://e.x/\x1b\\go\x1b]8;;\x07", "\\x1b]8;;https://e.x/\\x1b\\go\\x1b]8;;\\x07",
     "\\x1b]8;;https://e.x/\\x1b\\go\\x1b]8;;\\x07"),
    ("\x9b2J", "\\x9b2J", "\\x9b2J"),
    ("nul\x00del\x7f", "nul\\x00del\\x7f", "nul\\x00del\\x7f"),
    ("doe\u202ejane", "doe\\u202ejane", "doe\\u202ejane"),
    ("\u2066x\u2069\u200e\u200f\u061c", "\\u2066x\\u2069\\u200e\\u200f\\u061c", "\\u2066x\\u2069\\u200e\\u200f\\u061c"),
    ("a\r\nb\rc\td\n", "a\\r\\nb\\rc\\td\\n", "a\nb\\rc\td\n"),
    ("line\u2028sep", "line\\u2028sep", "line\\u2028sep"),
    ("plain text, ünïcödé, 日本, 😀", "plain text, ünïcödé, 日本, 😀", "plain text, ünïcödé, 日本, 😀"),
    ("C:\\path\\x1b", "C:\\path\\x1b", "C:\\path\\x1b"),  # a backslash the student typed stays as it is
])
def test_safe_text_shows_every_dangerous_character_as_an_escape(raw: str, one_line: str, multi_line: str) -> None:
    assert safe_text(raw) == one_line
    assert safe_lines(raw) == multi_line
    assert safe_text(raw, multiline=True) == multi_line


def test_safe_text_reads_bytes_and_other_values() -> None:
    assert safe_text(b"ok \xff\x1b[31m") == "ok \ufffd\\x1b[31m"
    assert safe_text(bytearray(b"\xe2\x80\xae")) == "\\u202e"  # UTF-8 of U+202E
    assert safe_text(42) == "42"
    assert safe_text(["\x1b"]) == "['\\x1b']"

    class Broken:
        def __str__(self) -> str:
            raise RuntimeError("no")

    assert safe_text(Broken()) == "<unprintable Broken>"


def test_safe_text_limit_counts_the_escaped_text() -> None:
    assert safe_text("a" * 500, limit=10) == "a" * 9 + "…"
    assert safe_text("abc", limit=3) == "abc"
    assert len(safe_text("\x1b" * 1000, limit=300)) == 300
    assert safe_text("\x1b" * 1000, limit=300).startswith("\\x1b\\x1b")
    assert safe_text("abc", limit=0) == ""


def test_safe_data_cleans_keys_and_nested_values() -> None:
    data = {"got\x1b": {"status": "raised", "error": "ValueError: \ud83d"}, "n": [1.5, ("\u202e",)], "k": 3}
    assert safe_data(data) == {"got\\x1b": {"status": "raised", "error": "ValueError: \\ud83d"},
                               "n": [1.5, ("\\u202e",)], "k": 3}


# ----------------------------------------------------------------------------- safe_text: properties

hostile_text = st.lists(st.one_of(st.characters(exclude_categories=()), st.sampled_from(HOSTILE_PIECES)),
                        max_size=40).map("".join)


@settings(max_examples=400, deadline=None)
@given(raw=st.one_of(hostile_text, st.binary(max_size=80)), multiline=st.booleans(),
       limit=st.one_of(st.none(), st.integers(min_value=0, max_value=60)))
def test_safe_text_output_is_always_safe_and_stable(raw: str | bytes, multiline: bool, limit: int | None) -> None:
    cleaned = safe_text(raw, multiline=multiline, limit=limit)
    assert_safe(cleaned, multiline=multiline)
    assert "\x1b" not in cleaned and "\x9b" not in cleaned
    assert not set(BIDI_CONTROLS) & set(cleaned)
    if limit is not None:
        assert len(cleaned) <= limit
    else:
        # Idempotent: the renderers apply it again to what the boundary already cleaned.
        assert safe_text(cleaned, multiline=multiline) == cleaned


@settings(max_examples=200, deadline=None)
@given(raw=hostile_text)
def test_safe_text_changes_nothing_harmless(raw: str) -> None:
    harmless = "".join(c for c in raw if c not in ONE_LINE_FORBIDDEN and not "\ud800" <= c <= "\udfff")
    assert safe_text(harmless) == harmless


# ----------------------------------------------------------------------------- reports and renderers

def hostile_report(message: str = ESC_MESSAGE + " " + HTML_MESSAGE, name: str = "evil\u202e\x1b[2J.ipynb",
                   status: str = "graded") -> Report:
    """A report carrying ``message`` wherever sandbox text can end up, and ``name`` wherever a name can."""
    return Report(
        submission=name, rubric="simple_nn", status=status,  # type: ignore[arg-type]
        score=70.0, max_score=100.0, error=message if status == "error" else None,
        functions={n: FunctionInfo(n, True, "function") for n in ("activation", "d_activation", "forward", "backward")},
        checks=[CheckResult("activation.values", "activation", True, "matches", 1.0, 15.0, 15.0),
                CheckResult("forward.values", "forward", False, f"6 of 6 probes differ (the call raised: {message})",
                            0.0, 0.0, 20.0, {"inputs": {"x": [1.0, 2.0]}, "expected": [0.5],
                                             "got": {"status": "raised", "error": message}, message: message})],
        diagnoses=[Diagnosis("integrity_file_access", "notebook", f"The notebook opened `{message}`; review it.")],
        warnings=[f"Cell 2 raised ValueError: {message}; the cells after it still ran."],
        cells=[CellRun(0, "ok"), CellRun(1, "error", f"ValueError: {message}")],
        training=Training(3, 0.9, 1.0, [0.5, 0.3, 0.2], [0.5, 0.2, 0.1]),
        graded_with=GradedWith("relu", "activation", ("forward", "backward")), output_excerpt=f"epoch 1\n{message}\n\x1b[31mred\x1b[0m\x07\n",
    )


def _strings(value: Any) -> list[str]:
    """Every string inside a report (dataclasses, dicts, lists), keys included."""
    if isinstance(value, str):
        return [value]
    if isinstance(value, dict):
        return [s for k, v in value.items() for s in (*_strings(k), *_strings(v))]
    if isinstance(value, (list, tuple)):
        return [s for item in value for s in _strings(item)]
    if hasattr(value, "__dataclass_fields__"):
        return [s for name in value.__dataclass_fields__ for s in _strings(getattr(value, name))]
    return []


def test_safe_report_cleans_every_string_and_leaves_the_original_alone() -> None:
    report = hostile_report()
    cleaned = safe_report(report)
    for string in _strings(cleaned):
        assert_safe(string)
    assert_safe(cleaned.submission, multiline=False)
    assert cleaned.submission == "evil\\u202e\\x1b[2J.ipynb"
    assert report.submission == "evil\u202e\x1b[2J.ipynb"  # the caller's report is not changed
    assert cleaned.output_excerpt.startswith("epoch 1\n\\x1b[2J")  # newlines of an excerpt are kept
    assert (cleaned.score, cleaned.checks[1].passed, cleaned.training) == (70.0, False, report.training)
    assert safe_report(cleaned) == cleaned


def test_safe_report_keeps_and_cleans_function_parameters_helper_words_and_assignment() -> None:
    """The parameters the sandbox reported are kept (the JSON lists them) but shown, not obeyed; the helper
    pair's words and the assignment's name are cleaned like every other string."""
    report = hostile_report()
    report.functions["backward"] = FunctionInfo("backward", True, "function", parameters=("x", "w\x1b[2J"),
                                                variadic=True)
    report.graded_with = GradedWith("re\u202elu", "activation\x07", ("forward", "back\x1bward"))
    report.assignment = "simple\x1b]8;;nn"
    cleaned = safe_report(report)
    assert cleaned.functions["backward"] == FunctionInfo("backward", True, "function",
                                                         parameters=("x", "w\\x1b[2J"), variadic=True)
    assert cleaned.graded_with == GradedWith("re\\u202elu", "activation\\x07", ("forward", "back\\x1bward"))
    assert cleaned.assignment == "simple\\x1b]8;;nn"
    for string in [*cleaned.graded_with.dependents, cleaned.graded_with.family, cleaned.assignment,
                   *cleaned.functions["backward"].parameters]:
        assert_safe(string, multiline=False)
    assert safe_report(cleaned) == cleaned
    assert safe_report(dataclasses.replace(report, graded_with=None)).graded_with is None


def outside_markdown_code(document: str) -> str:
    """What a CommonMark reader parses as Markdown and HTML: ``document`` without fenced blocks and code spans.

    Fences (``` of 3 or more, indented under a list item or not) close on a line of at least as many
    backticks; a code span opens on a backtick run not escaped by a backslash and closes on the next
    run of the same length within its paragraph. Anything this keeps, a renderer would interpret.
    """
    kept: list[str] = []
    fence: str | None = None
    for line in document.split("\n"):
        stripped = line.lstrip(" ")
        if fence is None:
            opening = re.match(r"(`{3,}|~{3,})", stripped)
            if opening:
                fence = opening.group(1)
                continue
            kept.append(line)
        elif re.fullmatch(re.escape(fence[0]) + "{%d,}[ \t]*" % len(fence), stripped):
            fence = None
    body = "\n".join(kept)
    out: list[str] = []
    i = 0
    while i < len(body):
        if body[i] == "\\" and i + 1 < len(body):
            out.append(body[i:i + 2])
            i += 2
            continue
        if body[i] != "`":
            out.append(body[i])
            i += 1
            continue
        end = i
        while end < len(body) and body[end] == "`":
            end += 1
        run = end - i
        paragraph_end = body.find("\n\n", end)
        limit = len(body) if paragraph_end < 0 else paragraph_end
        closing = next((m for m in re.finditer("`+", body[end:limit]) if len(m.group()) == run), None)
        if closing is None:
            out.append(body[i:end])
            i = end
        else:
            i = end + closing.end()
    return "".join(out)


def assert_markdown_inert(document: str) -> None:
    """No raw HTML, no link or image, nothing of a student's outside code that a reader would interpret."""
    outside = outside_markdown_code(document)
    assert "<" not in outside, outside
    assert not re.search(r"(?<!\\)\]\(", outside), outside
    assert not re.search(r"(?<!\\)~~~", outside), outside


def test_outside_markdown_code_helper_sees_raw_markup() -> None:
    assert outside_markdown_code("a `<b>` c\n```text\n<script>\n```\nd") == "a  c\nd"
    assert "<script>" in outside_markdown_code("a ``x` <script>")  # an unclosed span is no span
    assert "<svg>" in outside_markdown_code("`a\n\n<svg>`")  # a span does not cross a paragraph


@pytest.mark.parametrize("fmt", sorted(RENDERERS))
@pytest.mark.parametrize("status", ["graded", "error"])
def test_every_format_shows_hostile_text_without_obeying_it(fmt: str, status: str) -> None:
    document = render(hostile_report(status=status), fmt)
    assert_safe(document)
    assert "\\x1b" in document  # shown, not dropped (JSON doubles the backslash, which still contains it)
    if fmt == "md":
        assert_markdown_inert(document)
    elif fmt == "html":
        page = parse_html(document)
        assert not page.named("script") and not page.named("svg") and not page.named("a")
        assert HTML_MESSAGE in "".join(page.text)
    elif fmt == "junit":
        ET.fromstring(document)
    else:  # json, gradescope, classroom, text
        if fmt != "text":
            json.loads(document)
        if fmt == "gradescope":
            assert "<script" not in document and "<svg" not in document


def test_text_report_with_colour_has_only_its_own_escape_codes() -> None:
    coloured = text.render(hostile_report(), colour=True)
    own = re.sub(r"\x1b\[(?:1|0|31|32|33)m", "", coloured)
    assert "\x1b" not in own and "\\x1b[2J" in own


def test_classroom_encoded_output_is_ascii_json() -> None:
    import base64

    decoded = json.loads(base64.b64decode(classroom.encoded(hostile_report())).decode("ascii"))
    assert_safe(json.dumps(decoded, ensure_ascii=False))


@pytest.mark.parametrize("name", ["`", "a``b", "x\n\n<svg onload=alert(1)>", "````", " ` ", ""])
def test_markdown_code_spans_hold_whatever_a_name_contains(name: str) -> None:
    document = markdown.render(hostile_report(name=name + "<img src=x onerror=alert(1)>"))
    assert_markdown_inert(document)


def test_markdown_fence_holds_a_probe_that_tries_to_close_it() -> None:
    report = hostile_report()
    report.checks[1].details = {"got": "```\n<script>alert(1)</script>\n````````\n<svg onload=alert(1)>",
                                "inputs": {"x": "~~~\n<b>"}}
    assert_markdown_inert(markdown.render(report))


@settings(max_examples=150, deadline=None)
@given(message=hostile_text, name=hostile_text, detail=hostile_text)
def test_markdown_and_junit_stay_inert_for_any_text(message: str, name: str, detail: str) -> None:
    report = hostile_report(message=message, name=name)
    report.checks[1].details = {"got": detail, detail: [detail]}
    document = markdown.render(report)
    assert_safe(document)
    assert_markdown_inert(document)
    ET.fromstring(junit.render(report))
    page = parse_html(html.render(report))
    assert not page.named("script") and not page.named("svg")


def test_class_files_are_written_whatever_the_rows_hold(tmp_path: Path) -> None:
    rows = [GradebookRow("class/doe\u202ejane_12345_nn.ipynb", "doe\u202ejane", hostile_report(), "canvas-12345"),
            GradebookRow("class/bad\udcffname.ipynb", "=cmd\ud83d|' /C calc'!A0", hostile_report(status="error"),
                         "bad_name")]
    write_gradebook(rows, tmp_path / "gradebook.csv")
    with open(tmp_path / "gradebook.csv", newline="", encoding="utf-8") as handle:
        table = list(csv.DictReader(handle))
    assert [(r["submission"], r["student"], r["status"]) for r in table] == [
        ("class/doe\\u202ejane_12345_nn.ipynb", "doe\\u202ejane", "graded"),
        ("class/bad\\udcffname.ipynb", "'=cmd\\ud83d|' /C calc'!A0", "error")]
    summary = summarize(rows)
    encoded = json.dumps(summary, ensure_ascii=False)
    assert_safe(encoded)
    assert summary["error_submissions"][0]["student"] == "=cmd\\ud83d|' /C calc'!A0"
    page = render_summary_html(summary, rows, link=lambda row: f"feedback/{row.id}.html")
    assert_safe(page)
    parsed = parse_html(page)
    # One script only, the table sorter: a constant of the grader's, with no student text inside it.
    assert parsed.named("script") == [{}] and page.count("<script") == 1
    assert f"<script>\n{SORT_SCRIPT}\n</script>" in page
    assert [a["href"] for a in parsed.named("a")][-2:] == ["feedback/canvas-12345.html", "feedback/bad_name.html"]
    assert "doe\\u202ejane" in "".join(parsed.text)
    ET.fromstring(junit.render_many([row.report for row in rows]))


# ----------------------------------------------------------------------------- end to end

#: Small limits: nothing here hangs, and a failure should be quick.
LIMIT_FLAGS = ["--cell-timeout", "10", "--call-timeout", "5", "--total-timeout", "60"]


def write_student_notebook(path: Path, *extra: str, first: tuple[str, ...] = ()) -> Path:
    """A notebook as a student leaves it: a title, the correct cells, then ``extra`` (which redefine or raise)."""
    notebook = new_notebook()
    notebook.cells = [new_markdown_cell("# A simple neural network - from scratch"),
                      *(new_code_cell(source) for source in (*first, *CORRECT_CELLS, *extra))]
    notebook.metadata["kernelspec"] = {"name": "python3", "display_name": "Python 3", "language": "python"}
    with open(os.fsencode(path), "w", encoding="utf-8") as handle:
        nbformat.write(notebook, handle)
    return path


def raising_forward(message: str) -> str:
    """``forward`` redefined to raise ``message``, typed as a student types it (escapes in the literal)."""
    return f"def forward(x, w1, w2):\n    raise ValueError({message!r})"


def raising_cell(message: str) -> str:
    return f"raise ValueError({message!r})"


def grader(*args: str, cwd: Path, tty: bool = False) -> tuple[int, str, str]:
    """Run the installed command line as an operator does; stdout a pipe, or a terminal with ``tty``."""
    command = [sys.executable, "-m", "grader", *args]
    env = {k: v for k, v in os.environ.items() if k != "NO_COLOR"}
    if not tty:
        done = subprocess.run(command, cwd=cwd, env=env, capture_output=True, timeout=300)
        return done.returncode, done.stdout.decode("utf-8"), done.stderr.decode("utf-8", "replace")
    leader, follower = pty.openpty()
    with open(cwd / "stderr.txt", "wb") as stderr:
        process = subprocess.Popen(command, cwd=cwd, env=env, stdout=follower, stderr=stderr)
    os.close(follower)
    chunks = []
    while True:
        try:
            chunk = os.read(leader, 1 << 16)
        except OSError:  # EIO: the child closed the terminal
            break
        if not chunk:
            break
        chunks.append(chunk)
    os.close(leader)
    code = process.wait(timeout=300)
    return code, b"".join(chunks).decode("utf-8"), (cwd / "stderr.txt").read_text(errors="replace")


@pytest.mark.slow
def test_check_a_function_raising_a_lone_surrogate_is_graded_and_printed(tmp_path: Path) -> None:
    notebook = write_student_notebook(tmp_path / "surrogate.ipynb", raising_forward("\ud83d"),
                                      raising_cell("\ud83d"))
    code, out, err = grader("check", notebook.name, *LIMIT_FLAGS, cwd=tmp_path)
    assert code == 0, err
    assert out.startswith("surrogate.ipynb  70/100 (70%)\n")
    assert "Cell 8 raised ValueError: \\ud83d; the cells after it still ran." in out
    assert "Traceback" not in err
    code, out, _ = grader("check", str(notebook), "--format", "json", *LIMIT_FLAGS, cwd=tmp_path)
    report = json.loads(out)
    assert code == 0 and report["score"] == 70
    forward = next(c for c in report["checks"] if c["id"] == "forward.values")
    assert not forward["passed"] and "the call raised: ValueError: \\ud83d" in forward["message"]
    assert {"index": 7, "status": "error", "error": "ValueError: \\ud83d"} in report["cells"]


@pytest.mark.slow
@pytest.mark.parametrize("tty", [False, True], ids=["pipe", "terminal"])
def test_check_prints_no_escape_a_submission_raised(tmp_path: Path, tty: bool) -> None:
    notebook = write_student_notebook(tmp_path / "escapes.ipynb", raising_forward(ESC_MESSAGE),
                                      "print('\\x1b[31mred\\x1b[0m\\x07')", first=(raising_cell(ESC_MESSAGE),))
    code, out, err = grader("check", str(notebook), *LIMIT_FLAGS, cwd=tmp_path, tty=tty)
    assert code == 0, err
    own = re.sub(r"\x1b\[(?:1|0|31|32|33)m", "", out) if tty else out
    assert "\x1b" not in own and "\x07" not in own and "\x9b" not in own
    assert ("\x1b[" in out) == tty  # colour on a terminal only
    assert re.search(r"escapes\.ipynb(\x1b\[0m)?  (\x1b\[33m)?70/100 \(70%\)", out)
    assert "Cell 2 raised ValueError: \\x1b[2J\\x1b[H100/100" in own
    assert "\\x1b]8;;https://evil.example/\\x1b\\click" in own
    for fmt in ("json", "md", "html", "junit", "gradescope", "classroom"):
        code, out, _ = grader("check", str(notebook), "--format", fmt, *LIMIT_FLAGS, cwd=tmp_path)
        assert code == 0 and "\x1b" not in out and "\x07" not in out, fmt
        assert_safe(out)


@pytest.mark.slow
def test_check_markdown_and_html_show_markup_as_text(tmp_path: Path) -> None:
    notebook = write_student_notebook(tmp_path / "markup.ipynb", raising_forward(HTML_MESSAGE),
                                      f"print({HTML_MESSAGE!r})", first=(raising_cell(HTML_MESSAGE),))
    code, md, _ = grader("check", str(notebook), "--format", "md", *LIMIT_FLAGS, cwd=tmp_path)
    assert code == 0
    assert_markdown_inert(md)
    assert "Cell 2 raised ValueError: &lt;script&gt;alert(1)&lt;/script&gt; &lt;svg onload=alert(1)&gt;" in md
    code, page, _ = grader("check", str(notebook), "--format", "html", *LIMIT_FLAGS, cwd=tmp_path)
    parsed = parse_html(page)
    assert code == 0 and not parsed.named("script") and not parsed.named("svg")
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in page
    assert f"Cell 2 raised ValueError: {HTML_MESSAGE}" in "".join(parsed.text)


@pytest.fixture(scope="module")
def hostile_class(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path, tuple[int, str, str]]:
    """A class of hostile submissions graded by ``grader grade`` (run twice: the bug was "on every rerun")."""
    root = tmp_path_factory.mktemp("hostile_class")
    folder = root / "class"
    folder.mkdir()
    write_student_notebook(folder / "surrogate_function.ipynb", raising_forward("\ud83d"))
    write_student_notebook(folder / "surrogate_cell.ipynb", raising_cell("\ud83d"))
    write_student_notebook(folder / "escapes.ipynb", raising_forward(ESC_MESSAGE), first=(raising_cell(ESC_MESSAGE),))
    write_student_notebook(folder / "markup.ipynb", raising_forward(HTML_MESSAGE), first=(raising_cell(HTML_MESSAGE),))
    write_student_notebook(folder / "doe\u202ekcol_12345_67890_nn.ipynb")  # Canvas-style, shows "doeloc_k…" reversed
    write_student_notebook(folder / "doejane_12345_67890_nn\u202ebnypi.ipynb")  # Canvas: "nn.ipynb" disguised
    write_student_notebook(Path(os.fsdecode(os.fsencode(str(folder)) + b"/bad\xffname.ipynb")))
    out = root / "out"
    first = grader("grade", str(folder), "--out", str(out), "--jobs", "2", *LIMIT_FLAGS, cwd=root)
    again = grader("grade", str(folder), "--out", str(out), "--jobs", "2", *LIMIT_FLAGS, cwd=root)
    assert again[0] == 0, again[2]
    return root, out, first


@pytest.mark.slow
def test_grade_writes_every_class_file_with_every_row(hostile_class: tuple[Path, Path, tuple[int, str, str]]) -> None:
    root, out, (code, _, err) = hostile_class
    assert code == 0, err
    assert "7 submissions" in err and "7 graded now" in err and "0 with status error" in err
    for name in ("gradebook.csv", "summary.json", "summary.html", "junit.xml"):
        assert (out / name).is_file(), name
    with open(out / "gradebook.csv", newline="", encoding="utf-8") as handle:
        rows = {Path(row["submission"]).name: row for row in csv.DictReader(handle)}
    assert {name: (row["student"], row["score"], row["status"]) for name, row in rows.items()} == {
        "bad\\udcffname.ipynb": ("bad\\udcffname", "100", "graded"),
        "doe\\u202ekcol_12345_67890_nn.ipynb": ("doe\\u202ekcol_12345_67890_nn", "100", "graded"),
        "doejane_12345_67890_nn\\u202ebnypi.ipynb": ("doejane", "100", "graded"),
        "escapes.ipynb": ("escapes", "70", "graded"),
        "markup.ipynb": ("markup", "70", "graded"),
        "surrogate_cell.ipynb": ("surrogate_cell", "100", "graded"),
        "surrogate_function.ipynb": ("surrogate_function", "70", "graded"),
    }
    summary = json.loads((out / "summary.json").read_text(encoding="utf-8"))
    assert (summary["count"], summary["graded"], summary["errors"]) == (7, 7, 0)
    suites = ET.parse(out / "junit.xml").getroot()
    assert len(suites.findall("testsuite")) == 7 and suites.get("errors") == "0"
    assert any("\\u202e" in (suite.get("name") or "") for suite in suites.findall("testsuite"))


@pytest.mark.slow
def test_grade_output_holds_no_control_bidi_or_raw_markup(
        hostile_class: tuple[Path, Path, tuple[int, str, str]]) -> None:
    _, out, _ = hostile_class
    per_student = [*(out / "reports").glob("*.json"), *(out / "feedback").glob("*.md"),
                   *(out / "feedback").glob("*.html"), *(out / "results").glob("*/results.json")]
    assert len(per_student) == 7 * 4
    for path in [*per_student, *(out / name for name in ("gradebook.csv", "summary.json", "summary.html", "junit.xml"))]:
        content = path.read_bytes().decode("utf-8")
        assert_safe(content.replace("\r\n", "\n") if path.suffix == ".csv" else content)  # CSV rows end in CR LF
    for path in (out / "feedback").glob("*.md"):
        assert_markdown_inert(path.read_text(encoding="utf-8"))
    for path in [*(out / "feedback").glob("*.html"), out / "summary.html"]:
        text = path.read_text(encoding="utf-8")
        page = parse_html(text)
        assert len(page.named("script")) == (path.name == "summary.html") and not page.named("svg"), path
        assert path.name != "summary.html" or f"<script>\n{SORT_SCRIPT}\n</script>" in text
    markup = next((out / "feedback").glob("*markup*.html")).read_text(encoding="utf-8")
    assert f"Cell 2 raised ValueError: {HTML_MESSAGE}" in "".join(parse_html(markup).text)
    summary_text = "".join(parse_html((out / "summary.html").read_text(encoding="utf-8")).text)
    assert "doe\\u202ekcol_12345_67890_nn" in summary_text and "bad\\udcffname" in summary_text
