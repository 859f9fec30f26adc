"""The CLI contract: formats, exit codes 0/1/2, one-sentence errors, a report even when grading is impossible."""
import json
import subprocess
import sys
from pathlib import Path

import pytest

from grader.cli import main
from tests.conftest import CORRECT_CELLS, SEED


def run_cli(capsys, *argv):
    code = main(list(argv))
    captured = capsys.readouterr()
    return code, captured.out, captured.err


@pytest.mark.slow
def test_seed_notebook_json_names_the_template_bug(capsys):
    code, out, _ = run_cli(capsys, "check", str(SEED), "--format", "json")
    report = json.loads(out)
    assert code == 0
    assert report["schema"] == "grader.report/1" and report["status"] == "graded" and "error" not in report
    assert report["score"] < report["max_score"] == 100
    assert [d["id"] for d in report["diagnoses"]] == ["d_activation_on_w2_partials"]
    assert all(report["functions"][f]["found"] for f in ("activation", "d_activation", "forward", "backward"))
    failing = {c["id"] for c in report["checks"] if not c["passed"]}
    assert failing == {"backward.values", "backward.gradient", "training.converges"}
    assert report["training"]["final_prediction"] == pytest.approx(0.96689, abs=1e-5)


@pytest.mark.slow
def test_fail_under_turns_a_low_score_into_exit_1(capsys):
    assert run_cli(capsys, "check", str(SEED), "--fail-under", "90", "--format", "json")[0] == 1
    assert run_cli(capsys, "check", str(SEED), "--fail-under", "40", "--format", "json")[0] == 0


@pytest.mark.slow
def test_correct_notebook_scores_100_in_text_and_markdown(capsys, write_notebook):
    path = write_notebook(CORRECT_CELLS)
    code, out, _ = run_cli(capsys, "check", str(path))
    assert code == 0 and "100/100" in out and "\x1b[" not in out and "bug:" not in out
    code, out, _ = run_cli(capsys, "check", str(path), "--format", "md", "--seed", "7")
    assert code == 0 and "| `backward.gradient` |" in out


@pytest.mark.parametrize("content", [b"", b"{\"cells\": [", b"\x89PNG\r\n\x1a\n\0\0", b"[1, 2, 3]", b"print('hi')\n"])
def test_not_a_notebook_is_an_error_report_with_exit_2(capsys, tmp_path, content):
    path = tmp_path / "homework.ipynb"
    path.write_bytes(content)
    code, out, err = run_cli(capsys, "check", str(path), "--format", "json")
    report = json.loads(out)
    assert code == 2 and report["status"] == "error" and report["score"] == 0
    assert "homework.ipynb" in report["error"] and "\n" not in report["error"]
    assert "Traceback" not in out + err


def test_missing_file_and_bad_rubric_are_one_line_errors(capsys, tmp_path):
    code, out, _ = run_cli(capsys, "check", str(tmp_path / "nope.ipynb"), "--format", "json")
    assert code == 2 and json.loads(out)["status"] == "error"
    bad = tmp_path / "bad.toml"
    bad.write_text('schema = "grader.rubric/1"\nname = "x"\nmax_score = [\n')
    code, out, err = run_cli(capsys, "check", str(SEED), "--rubric", str(bad))
    assert code == 2 and out == "" and err.count("\n") == 1 and "bad.toml" in err and "line" in err
    code, _, err = run_cli(capsys, "check", str(SEED), "--rubric", "no_such_rubric")
    assert code == 2 and "simple_nn" in err


def test_bad_arguments_exit_2(capsys):
    assert run_cli(capsys, "check", str(SEED), "--fail-under", "150")[0] == 2
    assert run_cli(capsys, "check", str(SEED), "--format", "xml")[0] == 2
    assert run_cli(capsys, "check", str(SEED), "--cell-timeout", "-1")[0] == 2
    code, out, err = run_cli(capsys, "check", str(SEED), "--max-processes", "2.5")
    assert code == 2 and out == "" and "max_processes = 2.5 from the command line" in err and "whole number" in err


@pytest.mark.slow
def test_every_limit_can_be_set_on_the_command_line(capsys):
    code, out, _ = run_cli(capsys, "check", str(SEED), "--format", "json", "--output-kb", "1", "--cpu-time", "60",
                           "--max-processes", "16", "--file-size-mb", "8", "--memory-mb", "1500")
    assert code == 0 and json.loads(out)["score"] == 50


@pytest.mark.slow
def test_console_entry_point_and_python_dash_m(tmp_path):
    result = subprocess.run([sys.executable, "-m", "grader", "check", str(SEED), "--format", "json"],
                            capture_output=True, text=True, cwd=tmp_path, timeout=120)
    assert result.returncode == 0 and json.loads(result.stdout)["diagnoses"][0]["id"] == "d_activation_on_w2_partials"


@pytest.mark.slow
def test_the_exit_code_and_the_whole_report_survive_the_quick_exit(tmp_path):
    """``grader`` ends with os._exit once its streams are flushed: the code is main's, the report whole."""
    result = subprocess.run([sys.executable, "-m", "grader", "check", str(SEED), "--format", "json", "--fail-under", "90"],
                            capture_output=True, text=True, cwd=tmp_path, timeout=120)
    assert result.returncode == 1 and json.loads(result.stdout)["score"] == 50


WRITES_3_MB = "with open('big.bin', 'wb') as handle:\n    handle.write(bytes(3 << 20))\nprint('wrote it')"


@pytest.mark.slow
@pytest.mark.parametrize("given", ["rubric", "flag", "neither"])
def test_a_limit_of_the_rubric_or_a_flag_holds_in_the_sandbox_check_starts_early(capsys, tmp_path, given,
                                                                                 write_notebook):
    """``grader check`` starts its sandbox before the rubric loads, with the default limits and the flags; a
    rubric that sets limits of its own gets a sandbox with those. The file size limit is one the sandbox
    gets when it starts (its rlimit, and the size of its working directory)."""
    notebook = write_notebook(CORRECT_CELLS + [WRITES_3_MB])
    options: list[str] = []
    if given == "rubric":
        bundled = (Path(__file__).parents[1] / "rubrics" / "simple_nn.toml").read_text()
        assert "[limits]\n" in bundled
        rubric = tmp_path / "strict.toml"
        rubric.write_text(bundled.replace("[limits]\n", "[limits]\nfile_size_mb = 1\n").replace(
            'template = "simple_nn_seed.ipynb"\n', ""))
        options = ["--rubric", str(rubric)]
    elif given == "flag":
        options = ["--file-size-mb", "1"]
    code, out, _ = run_cli(capsys, "check", str(notebook), "--format", "json", *options)
    report = json.loads(out)
    assert code == 0 and report["score"] == report["max_score"]
    last = report["cells"][-1]
    if given == "neither":
        assert last["status"] == "ok" and "wrote it" in report["output_excerpt"]
    else:
        assert last["status"] == "error" and "wrote it" not in report["output_excerpt"], last


# --- edges: one sentence and exit 2, never a traceback (issue 14) ---------------------------------------


def test_version_is_printed(capsys) -> None:
    from grader import __version__

    assert main(["--version"]) == 0
    assert capsys.readouterr().out.strip() == f"grader {__version__}"


def test_a_negative_seed_is_a_usage_error(capsys) -> None:
    assert main(["check", "x.ipynb", "--seed", "-1"]) == 2
    assert "--seed: expected a whole number >= 0, got '-1'" in capsys.readouterr().err


def test_check_on_a_folder_or_zip_points_at_grade(tmp_path, capsys) -> None:
    assert main(["check", str(tmp_path)]) == 2
    err = capsys.readouterr().err.strip()
    assert err.count("\n") == 0 and "is a folder" in err and f"grader grade {tmp_path} --out DIR" in err
    archive = tmp_path / "class.zip"
    archive.write_bytes(b"PK\x05\x06" + b"\0" * 18)
    assert main(["check", str(archive)]) == 2
    assert "is a zip archive" in capsys.readouterr().err


def test_out_naming_a_file_is_one_sentence(tmp_path, capsys) -> None:
    target = tmp_path / "afile"
    target.write_text("")
    assert main(["grade", str(tmp_path), "--out", str(target)]) == 2
    err = capsys.readouterr().err.strip()
    assert err == f"grader: --out {target} is a file, not a folder: give a folder (it is created when missing)."


# --- help: what each command writes and what its exit codes mean (issue 14) -----------------------------

def _help(capsys, *command: str) -> str:
    assert main([*command, "--help"]) == 0
    return capsys.readouterr().out


def _listed(name, text):
    """Whether ``name`` starts a row of one of the help's tables."""
    import re

    return re.search(rf"^  {re.escape(name)}(  |\n|$)", text, re.M) is not None


def _subcommands():
    import argparse

    from grader.cli import build_parser

    parser = build_parser()
    (commands,) = [a for a in parser._actions if isinstance(a, argparse._SubParsersAction)]
    return parser, commands.choices


def test_every_command_has_its_exit_codes_in_help():
    from grader.cli import COMMANDS, EXIT_CODES, EXIT_INTERRUPTED
    from grader.errors import EXIT_CANNOT_GRADE, EXIT_GRADED, EXIT_UNDER_THRESHOLD

    _, choices = _subcommands()
    assert set(choices) == set(COMMANDS) == set(EXIT_CODES) - {"grader"}
    # The codes a command can return, from the constants its code returns.
    assert [code for code, _ in EXIT_CODES["check"]] == [EXIT_GRADED, EXIT_UNDER_THRESHOLD, EXIT_CANNOT_GRADE,
                                                          EXIT_INTERRUPTED]
    assert [code for code, _ in EXIT_CODES["grade"]] == [EXIT_GRADED, EXIT_CANNOT_GRADE, EXIT_INTERRUPTED]
    for name in EXIT_CODES["pack"], EXIT_CODES["gradescope"]:
        assert EXIT_UNDER_THRESHOLD not in [code for code, _ in name]


@pytest.mark.parametrize("command", ["grader", "check", "grade", "calibrate", "pack", "doctor", "gradescope"])
def test_help_ends_with_the_exit_codes_of_that_command(capsys, command):
    from grader.cli import EXIT_CODES

    out = _help(capsys, *([] if command == "grader" else [command]))
    tail = out.split("\nexit codes:\n")[-1]
    assert out.count("\nexit codes:\n") == 1
    listed = [(int(line.split()[0]), " ".join(line.split()[1:])) for line in tail.splitlines()
              if line[:2] == "  " and line.split() and line.split()[0].isdigit()]
    assert [code for code, _ in listed] == [code for code, _ in EXIT_CODES[command]]
    for (_, shown), (_, meaning) in zip(listed, EXIT_CODES[command], strict=True):
        assert meaning.startswith(shown)  # the first line of each meaning, as the constant says it


def test_help_lists_the_files_each_command_writes(capsys):
    from pathlib import Path

    from grader.batch.run import CLASS_FILES, Output
    from grader.cli import FORMATS
    from grader.integrations.gradescope_autograder import CONFIG_NAME, RUN, SETUP
    from grader.integrations.lms import IMPORT_FILES
    from grader.pack.wheel import TAG, wheel_prefix
    from grader.render import file_name

    grade = _help(capsys, "grade")
    files = grade.split("files written into DIR (--out):")[1].split("exit codes:")[0]
    for name in (*CLASS_FILES, *IMPORT_FILES.values(), Output(Path()).report("<id>").as_posix(),
                 f"feedback/{file_name('<id>', 'md')}", f"feedback/{file_name('<id>', 'html')}",
                 f"results/<id>/{file_name('results', 'gradescope')}"):
        assert _listed(name, files), name
    check = _help(capsys, "check")
    for fmt in FORMATS:
        assert _listed(f"DIR/{file_name('<notebook stem>', fmt)}", check) and f"--format {fmt}" in check
    assert _listed(f"DIR/{wheel_prefix()}-<version>-{TAG}.whl", _help(capsys, "pack"))
    gradescope = _help(capsys, "gradescope")
    assert "file written: ZIP (--out)" in gradescope
    assert all(_listed(entry, gradescope) for entry in (SETUP, RUN, CONFIG_NAME))
    for quiet in ("calibrate", "doctor"):  # they write no file, and say none
        assert "written" not in _help(capsys, quiet).split("exit codes:")[0].split("options:")[-1]


def test_every_option_says_its_default_or_that_it_is_required():
    import argparse

    _, choices = _subcommands()
    for name, sub in choices.items():
        for action in sub._actions:
            if not action.option_strings or isinstance(action, argparse._HelpAction):
                continue
            assert action.help, (name, action.option_strings)
            said = action.help % {"default": action.default}
            assert "required" in said if action.required else "default" in said, (name, action.option_strings, said)


# --- several formats in one run ------------------------------------------------------------------------


def test_several_formats_are_written_into_out_from_one_grading(capsys, tmp_path):
    import xml.etree.ElementTree as ET

    notebook = tmp_path / "homework.ipynb"
    notebook.write_bytes(b"")  # not a notebook: an error report, graded without a sandbox
    out = tmp_path / "reports" / "new"
    code, stdout, err = run_cli(capsys, "check", str(notebook), "--format", "json,html", "--format", "junit,json",
                                "--out", str(out))
    assert code == 2  # exit codes unchanged: the notebook could not be graded
    assert sorted(p.name for p in out.iterdir()) == ["homework.html", "homework.json", "homework.xml"]
    document = json.loads((out / "homework.json").read_text())
    assert document["status"] == "error" and "homework.ipynb" in document["error"]
    assert ET.parse(out / "homework.xml").getroot().find(".//error") is not None
    assert (out / "homework.html").read_text().lstrip().lower().startswith("<!doctype html")
    assert "not graded" in stdout and not stdout.lstrip().startswith("{")  # the text report on stdout
    assert err.strip().splitlines()[-1] == "grader: wrote " + ", ".join(
        str(out / name) for name in ("homework.json", "homework.html", "homework.xml"))


def test_one_format_with_out_prints_it_and_writes_it(capsys, tmp_path):
    notebook = tmp_path / "hw.ipynb"
    notebook.write_bytes(b"[1, 2]")
    code, stdout, _ = run_cli(capsys, "check", str(notebook), "--format", "md", "--out", str(tmp_path))
    assert code == 2 and stdout.startswith("# ") and (tmp_path / "hw.md").read_text() == stdout
    code, stdout, _ = run_cli(capsys, "check", str(notebook), "--format", "text", "--out", str(tmp_path))
    assert (tmp_path / "hw.txt").read_text() == stdout and "\x1b[" not in stdout


def test_several_formats_without_out_is_one_sentence_naming_out(capsys, tmp_path):
    from grader.cli import SEVERAL_FORMATS_NEED_OUT

    code, out, err = run_cli(capsys, "check", str(SEED), "--format", "json,html")
    assert code == 2 and out == ""
    assert err == "grader: " + SEVERAL_FORMATS_NEED_OUT.format(formats="json,html", count=2) + "\n"
    assert "--out DIR" in err
    code, _, err = run_cli(capsys, "check", str(SEED), "--format", "json", "--format", "md")
    assert code == 2 and "--out" in err and err.count("\n") == 1


def test_an_unknown_format_in_the_list_names_the_valid_ones(capsys, tmp_path):
    from grader.cli import FORMATS

    code, out, err = run_cli(capsys, "check", str(SEED), "--format", "json,pdf", "--out", str(tmp_path))
    assert code == 2 and out == "" and "unknown format 'pdf'" in err
    assert all(fmt in err.splitlines()[-1] for fmt in FORMATS)
    assert list(tmp_path.iterdir()) == []


def test_formats_that_share_a_file_name_are_refused_before_grading(capsys, tmp_path):
    code, out, err = run_cli(capsys, "check", str(SEED), "--format", "json,classroom", "--out", str(tmp_path))
    assert code == 2 and out == ""
    assert err == ("grader: --format json and classroom would both write simple_nn_seed.json: ask for them in "
                   "separate runs, each with its own --out folder.\n")


def test_check_out_naming_a_file_is_one_sentence(capsys, tmp_path):
    target = tmp_path / "afile"
    target.write_text("")
    code, out, err = run_cli(capsys, "check", str(SEED), "--format", "json,md", "--out", str(target))
    assert code == 2 and out == ""
    assert err == f"grader: --out {target} is a file, not a folder: give a folder (it is created when missing).\n"


@pytest.mark.slow
def test_several_formats_of_a_graded_notebook_agree_and_keep_fail_under(capsys, tmp_path):
    code, stdout, _ = run_cli(capsys, "check", str(SEED), "--format", "json,md", "--format", "text",
                              "--out", str(tmp_path), "--fail-under", "90")
    assert code == 1  # --fail-under still applies
    report = json.loads((tmp_path / "simple_nn_seed.json").read_text())
    assert report["status"] == "graded" and report["score"] < 90
    assert (tmp_path / "simple_nn_seed.txt").read_text() == stdout  # the text report, not coloured
    assert f"{report['score']:g}/{report['max_score']:g}" in stdout
    assert "| `backward.gradient` |" in (tmp_path / "simple_nn_seed.md").read_text()


# --- --lms-assignment "Name (id)" ----------------------------------------------------------------------


@pytest.mark.parametrize(("value", "expected"), [
    ("Lab 4 (12345)", ("Lab 4", "12345")),
    ("  Lab 4(7) ", ("Lab 4", "7")),
    ("Lab 4 (draft) (12345)", ("Lab 4 (draft)", "12345")),
    ("Lab 4", ("Lab 4", "")),
    ("Lab (4) notes", ("Lab (4) notes", "")),
])
def test_lms_assignment_is_a_name_and_an_id(value, expected):
    from grader.cli import parse_lms_assignment

    assert parse_lms_assignment(value) == expected


@pytest.mark.parametrize(("value", "reason"), [
    ("", "it is empty"),
    ("   ", "it is empty"),
    ("(12345)", "there is no title before the id"),
    ("Lab 4 (draft)", "the id in parentheses, 'draft', is not a number"),
    ("Lab 4 ()", "the id in parentheses, '', is not a number"),
    ("Lab 4 (12345", "its parentheses do not pair up"),
    ("Lab 4\n(12345)", "it holds a line break or another control character"),
])
def test_a_malformed_lms_assignment_is_one_sentence_and_exit_2(capsys, tmp_path, value, reason):
    from grader.cli import LMS_ASSIGNMENT_BAD

    code, out, err = run_cli(capsys, "grade", str(tmp_path), "--out", str(tmp_path / "out"), "--lms", "canvas",
                             "--lms-assignment", value)
    assert code == 2 and out == ""
    assert err == "grader: " + LMS_ASSIGNMENT_BAD.format(value=value, reason=reason) + "\n"
    assert not (tmp_path / "out").exists()


def test_lms_assignment_without_lms_is_a_usage_error(capsys, tmp_path):
    code, _, err = run_cli(capsys, "grade", str(tmp_path), "--out", str(tmp_path / "out"),
                           "--lms-assignment", "Lab 4 (12345)")
    assert code == 2 and err.count("\n") == 1
    assert "no --lms was given: add --lms canvas (or moodle, blackboard, gradescope)" in err


def test_lms_assignment_and_release_reach_the_batch(capsys, tmp_path, monkeypatch):
    import grader.batch.run as run

    seen = []

    def fake_run_batch(paths, options):
        seen.append(options)
        return run.BatchResult(rows=[], graded=0, reused=0, errors=0, seconds=0.0)

    monkeypatch.setattr(run, "run_batch", fake_run_batch)
    out = tmp_path / "out"
    assert main(["grade", str(tmp_path), "--out", str(out), "--lms", "blackboard", "--lms", "canvas",
                 "--lms-assignment", "Neural net, part 1 (120034)"]) == 0
    (options,) = seen
    assert (options.lms, options.lms_assignment, options.lms_assignment_id) == (
        ("blackboard", "canvas"), "Neural net, part 1", "120034")
    assert main(["grade", str(tmp_path), "--out", str(out), "--lms", "canvas"]) == 0
    assert (seen[-1].lms_assignment, seen[-1].lms_assignment_id) == ("", "")  # the export's name, else the title
    assert seen[-1].release == {"visible"}  # feedback pages: what students see while the assignment is open
    assert main(["grade", str(tmp_path), "--out", str(out), "--release", "after_due_date",
                 "--release", "after_published"]) == 0
    assert seen[-1].release == {"visible", "after_due_date", "after_published"}
    assert main(["grade", str(tmp_path), "--out", str(out), "--release", "hidden"]) == 2  # never for students


@pytest.mark.slow
def test_lms_assignment_names_the_column_of_the_import_files(capsys, tmp_path):
    import csv
    import shutil

    from grader.integrations.lms import IMPORT_FILES

    shutil.copy(SEED, tmp_path / "doejane_12345_67890_nn.ipynb")
    out = tmp_path / "out"
    assert main(["grade", str(tmp_path / "doejane_12345_67890_nn.ipynb"), "--out", str(out), "--jobs", "1",
                 "--lms", "canvas", "--lms", "blackboard", "--lms-assignment", "Lab 4 (55501)"]) == 0
    canvas = list(csv.reader((out / IMPORT_FILES["canvas"]).open(newline="")))
    assert canvas[0][-1] == "Lab 4 (55501)"
    blackboard = list(csv.reader((out / IMPORT_FILES["blackboard"]).open(newline="")))
    assert blackboard[0][-1] == "Lab 4 [Total Pts: 100 Score] |55501"


def test_docs_cli_md_names_exactly_the_options_of_the_parser():
    """docs/cli.md documents every option of every command, and no option the parser lacks (the pytest
    plugin's section, whose options are pytest's, aside)."""
    import re
    from pathlib import Path

    parser, choices = _subcommands()
    options = {o for sub in (parser, *choices.values()) for a in sub._actions for o in a.option_strings
               if o.startswith("--")}
    doc = (Path(__file__).resolve().parents[1] / "docs" / "cli.md").read_text(encoding="utf-8")
    before, plugin = doc.split("\n## pytest plugin\n")
    after = plugin.split("\n## ", 1)[1]
    named = set(re.findall(r"(?<![\w-])--[a-z][a-z-]*", before + after))
    assert named - options == set()
    assert options - named == set()


def test_jobs_and_a_scheduler_together_are_one_usage_error(tmp_path, capsys) -> None:
    code = main(["grade", str(tmp_path), "--out", str(tmp_path / "out"), "--jobs", "2",
                 "--scheduler", "tcp://127.0.0.1:1"])
    error = capsys.readouterr().err.strip()
    assert code == 2 and error.count("\n") == 0 and "drop --jobs" in error and not (tmp_path / "out").exists()


@pytest.mark.slow
def test_grade_lists_every_file_it_did_not_grade_on_stdout(tmp_path, capsys) -> None:
    folder = tmp_path / "class"
    folder.mkdir()
    (folder / "doejane_12345_67890_simple_nn.ipynb").write_bytes(SEED.read_bytes())
    (folder / "roerichard_34567_89012_report.pdf").write_bytes(b"%PDF-1.4")
    assert main(["grade", str(folder), "--out", str(tmp_path / "out"), "--jobs", "1"]) == 0
    captured = capsys.readouterr()
    assert captured.out.splitlines() == [
        f"not graded: {folder / 'roerichard_34567_89012_report.pdf'}: not a notebook (.pdf): only .ipynb files are graded"]
    assert "1 file found was not graded" in captured.err
