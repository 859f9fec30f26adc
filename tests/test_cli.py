"""The CLI contract: formats, exit codes 0/1/2, one-sentence errors, a report even when grading is impossible."""
import json
import subprocess
import sys

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
