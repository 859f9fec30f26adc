"""Tests of rubric loading: the bundled rubric's exact values, lookup, and every validation error.

Each error test writes a small rubric and checks that the message names the file,
the line of the offending key, the key and its value, because a course editing a
rubric has nothing else to go on.
"""
from __future__ import annotations

import os
from pathlib import Path

import pytest

from grader.errors import RubricError
from grader.sandbox.limits import Limits
from grader.assignment import load_assignment
from grader.rubric import (
    CheckWeight,
    Rubric,
    builtin_rubrics,
    load_rubric,
)

REPO = Path(__file__).resolve().parent.parent
SIMPLE_NN = load_assignment("simple_nn")
#: The check ids and helper families simple_nn declares (the rubric validator learns them from the assignment).
KNOWN_CHECKS = SIMPLE_NN.check_ids
KNOWN_ACTIVATIONS = SIMPLE_NN.helpers.names if SIMPLE_NN.helpers else ()

# Line numbers matter: tests below refer to them.
VALID = """\
schema = "grader.rubric/1"
name = "mini"
title = "A mini rubric"
max_score = 10
accepted_activations = ["relu", "sigmoid"]

[limits]
cell_timeout_s = 3
memory_mb = 512

[checks."forward.values"]
points = 6
partial_credit = true

[checks."backward.gradient"]
points = 4
partial_credit = false
"""


def write(tmp_path: Path, text: str, name: str = "rubric.toml") -> Path:
    path = tmp_path / name
    path.write_text(text, encoding="utf-8")
    return path


def error_of(tmp_path: Path, text: str) -> str:
    path = write(tmp_path, text)
    with pytest.raises(RubricError) as info:
        load_rubric(str(path))
    message = info.value.message
    assert str(path) in message
    assert ". " not in message and message.endswith("."), f"not one sentence: {message}"
    return message


# --------------------------------------------------------------------------- bundled rubric


def test_bundled_rubric_has_the_exact_values_of_the_file() -> None:
    rubric = load_rubric()
    assert rubric.name == "simple_nn"
    assert rubric.title == "A simple neural network - from scratch"
    assert rubric.max_score == 100.0
    assert rubric.accepted_families == ("relu",)
    assert list(rubric.checks.items()) == [
        ("activation.values", CheckWeight(15.0, True)),
        ("d_activation.values", CheckWeight(10.0, True)),
        ("d_activation.gradient", CheckWeight(5.0, False)),
        ("forward.values", CheckWeight(20.0, True)),
        ("backward.values", CheckWeight(20.0, True)),
        ("backward.gradient", CheckWeight(20.0, True)),
        ("training.converges", CheckWeight(10.0, False)),
    ]
    assert rubric.limits == Limits(cell_timeout_s=10, call_timeout_s=5, total_timeout_s=120, memory_mb=2048)
    assert Path(rubric.path).resolve() == (REPO / "rubrics" / "simple_nn.toml").resolve()


def test_bundled_rubric_covers_every_known_check() -> None:
    assert set(load_rubric("simple_nn").checks) == set(KNOWN_CHECKS)


def test_builtin_rubrics_lists_the_bundled_file() -> None:
    assert builtin_rubrics() == ["simple_nn", "simple_nn_batch"]


def test_load_by_name_and_by_path_agree() -> None:
    by_name = load_rubric("simple_nn")
    by_path = load_rubric(str(REPO / "rubrics" / "simple_nn.toml"))
    assert by_name == by_path
    assert load_rubric(REPO / "rubrics" / "simple_nn.toml") == by_name


def test_bundled_name_wins_over_a_file_of_that_name_in_cwd(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    write(tmp_path, "not toml at all [", name="simple_nn")
    monkeypatch.chdir(tmp_path)
    assert load_rubric("simple_nn").name == "simple_nn"


def test_relative_path_is_loaded(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    write(tmp_path, VALID, name="mine.toml")
    monkeypatch.chdir(tmp_path)
    assert load_rubric("mine.toml").name == "mini"


# --------------------------------------------------------------------------- a valid custom rubric


def test_custom_rubric_values(tmp_path: Path) -> None:
    path = write(tmp_path, VALID)
    rubric = load_rubric(str(path))
    assert rubric == Rubric(
        name="mini",
        title="A mini rubric",
        path=str(path),
        max_score=10.0,
        accepted_families=("relu", "sigmoid"),
        checks={"forward.values": CheckWeight(6.0, True), "backward.gradient": CheckWeight(4.0, False)},
        limits=Limits(cell_timeout_s=3.0, memory_mb=512),
    )
    assert isinstance(rubric.limits.memory_mb, int)


def test_optional_keys_have_strict_defaults(tmp_path: Path) -> None:
    text = 'schema = "grader.rubric/1"\nname = "x"\nmax_score = 1\n[checks."forward.values"]\npoints = 1\n'
    rubric = load_rubric(str(write(tmp_path, text)))
    assert rubric.title == "x"
    assert rubric.accepted_families == ("relu",)
    assert rubric.checks == {"forward.values": CheckWeight(1.0, False)}
    assert rubric.limits == Limits()


def test_absent_known_checks_are_allowed(tmp_path: Path) -> None:
    rubric = load_rubric(str(write(tmp_path, VALID)))
    assert "training.converges" not in rubric.checks


def test_inline_and_dotted_check_tables_are_accepted(tmp_path: Path) -> None:
    text = (
        'schema = "grader.rubric/1"\nname = "x"\nmax_score = 3\n'
        "[checks]\n"
        '"forward.values" = { points = 2, partial_credit = true }\n'
        "'backward.values'.points = 1\n"
    )
    rubric = load_rubric(str(write(tmp_path, text)))
    assert rubric.checks == {"forward.values": CheckWeight(2.0, True), "backward.values": CheckWeight(1.0, False)}


def test_float_points_summing_within_tolerance(tmp_path: Path) -> None:
    text = VALID.replace("max_score = 10", "max_score = 0.3").replace("points = 6", "points = 0.1").replace(
        "points = 4", "points = 0.2"
    )
    assert load_rubric(str(write(tmp_path, text))).max_score == 0.3


# --------------------------------------------------------------------------- lookup errors


def test_unknown_name_lists_the_bundled_rubrics() -> None:
    with pytest.raises(RubricError) as info:
        load_rubric("no_such_rubric")
    assert "'no_such_rubric'" in info.value.message
    assert "simple_nn" in info.value.message


def test_missing_path_is_not_found(tmp_path: Path) -> None:
    missing = tmp_path / "nope.toml"
    with pytest.raises(RubricError) as info:
        load_rubric(str(missing))
    assert str(missing) in info.value.message


def test_directory_is_a_clear_error(tmp_path: Path) -> None:
    folder = tmp_path / "dir.toml"
    folder.mkdir()
    with pytest.raises(RubricError) as info:
        load_rubric(str(folder))
    assert str(folder) in info.value.message
    assert "directory" in info.value.message


def test_unreadable_file_is_a_clear_error(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    # Simulated: chmod does not bind when the tests run as root.
    path = write(tmp_path, VALID)

    def refuse(self: Path) -> bytes:
        raise PermissionError(13, "Permission denied", str(self))

    monkeypatch.setattr(Path, "read_bytes", refuse)
    with pytest.raises(RubricError) as info:
        load_rubric(str(path))
    assert info.value.message == f"Rubric {path} cannot be read (Permission denied); check the path and its permissions."


def test_non_utf8_file_is_a_clear_error(tmp_path: Path) -> None:
    path = tmp_path / "latin.toml"
    path.write_bytes(VALID.replace("mini", "m\xefni").encode("latin-1"))
    with pytest.raises(RubricError) as info:
        load_rubric(str(path))
    assert str(path) in info.value.message
    assert "UTF-8" in info.value.message


# --------------------------------------------------------------------------- validation errors


def test_toml_syntax_error_names_its_line(tmp_path: Path) -> None:
    message = error_of(tmp_path, VALID.replace("points = 4", "points = "))
    assert "line 16" in message
    assert "not valid TOML" in message


def test_unknown_top_level_key(tmp_path: Path) -> None:
    message = error_of(tmp_path, VALID.replace('title = "A mini rubric"', 'titel = "A mini rubric"'))
    assert "line 3" in message
    assert "'titel'" in message
    assert "did you mean 'title'" in message


def test_unknown_top_level_table(tmp_path: Path) -> None:
    message = error_of(tmp_path, VALID.replace('[checks."backward.gradient"]', '[check."backward.gradient"]'))
    assert "line 15" in message
    assert "'check'" in message
    assert "did you mean 'checks'" in message


@pytest.mark.parametrize(
    ("replacement", "shown"),
    [('schema = "grader.rubric/2"', "'grader.rubric/2'"), ("schema = 1", "= 1")],
)
def test_wrong_schema(tmp_path: Path, replacement: str, shown: str) -> None:
    message = error_of(tmp_path, VALID.replace('schema = "grader.rubric/1"', replacement))
    assert "line 1" in message
    assert "schema" in message and shown in message
    assert '"grader.rubric/1"' in message


def test_missing_schema(tmp_path: Path) -> None:
    message = error_of(tmp_path, VALID.replace('schema = "grader.rubric/1"\n', ""))
    assert "line 1" in message and "schema is missing" in message


def test_missing_name(tmp_path: Path) -> None:
    message = error_of(tmp_path, VALID.replace('name = "mini"\n', ""))
    assert "line 1" in message and "name is missing" in message


@pytest.mark.parametrize("value", ['""', '"   "', "3"])
def test_empty_or_non_text_name(tmp_path: Path, value: str) -> None:
    message = error_of(tmp_path, VALID.replace('name = "mini"', f"name = {value}"))
    assert "line 2" in message
    assert "name =" in message
    assert "non-empty string" in message


@pytest.mark.parametrize("value", ["0", "-10", '"10"', "true", "nan", "inf"])
def test_max_score_not_a_positive_number(tmp_path: Path, value: str) -> None:
    message = error_of(tmp_path, VALID.replace("max_score = 10", f"max_score = {value}"))
    assert "line 4" in message
    assert "max_score =" in message
    assert "positive number" in message


def test_unknown_check_id_suggests_the_closest(tmp_path: Path) -> None:
    message = error_of(tmp_path, VALID.replace('[checks."backward.gradient"]', '[checks."backward.gradients"]'))
    assert "line 15" in message
    assert "'backward.gradients'" in message
    assert "did you mean 'backward.gradient'" in message


@pytest.mark.parametrize("value", ["-1", '"4"', "false", "[4]"])
def test_points_negative_or_not_a_number(tmp_path: Path, value: str) -> None:
    message = error_of(tmp_path, VALID.replace("points = 4", f"points = {value}"))
    assert "line 16" in message
    assert "backward.gradient" in message and "points" in message
    assert "number >= 0" in message


def test_missing_points_points_at_the_check_header(tmp_path: Path) -> None:
    message = error_of(tmp_path, VALID.replace("points = 4\n", ""))
    assert "line 15" in message
    assert "points is missing" in message


@pytest.mark.parametrize("value", ['"yes"', "1", "0"])
def test_partial_credit_not_a_bool(tmp_path: Path, value: str) -> None:
    message = error_of(tmp_path, VALID.replace("partial_credit = true", f"partial_credit = {value}"))
    assert "line 13" in message
    assert "forward.values" in message and f"partial_credit = {value.strip(chr(34))}" in message.replace("'", "")
    assert "true or false" in message


def test_unknown_key_in_a_check_table(tmp_path: Path) -> None:
    message = error_of(tmp_path, VALID.replace("partial_credit = false", "partial_credits = false"))
    assert "line 17" in message
    assert "'partial_credits'" in message
    assert "did you mean 'partial_credit'" in message


# --------------------------------------------------------------------------- visibility


@pytest.mark.parametrize("value", ["visible", "hidden", "after_due_date", "after_published"])
def test_each_gradescope_visibility_is_accepted(tmp_path: Path, value: str) -> None:
    text = VALID.replace("partial_credit = false", f'partial_credit = false\nvisibility = "{value}"')
    rubric = load_rubric(str(write(tmp_path, text)))
    assert rubric.checks["backward.gradient"] == CheckWeight(4.0, False, visibility=value)
    assert rubric.checks["forward.values"].visibility == "visible"  # absent: shown


def test_visibility_is_in_the_check_keys_suggested_for_a_typo(tmp_path: Path) -> None:
    message = error_of(tmp_path, VALID.replace("partial_credit = false", 'visibilty = "hidden"'))
    assert "line 17" in message and "'visibilty'" in message and "did you mean 'visibility'" in message


def test_unknown_visibility_names_the_key_the_value_and_the_closest(tmp_path: Path) -> None:
    message = error_of(tmp_path, VALID.replace("partial_credit = false", 'partial_credit = false\nvisibility = "hiden"'))
    assert "line 18" in message
    assert "[checks.\"backward.gradient\"] visibility = 'hiden' is not a visibility" in message
    assert "expected one of: visible, hidden, after_due_date, after_published (did you mean 'hidden'?)" in message


@pytest.mark.parametrize("value", ["true", "1", '["hidden"]'])
def test_visibility_that_is_not_a_string(tmp_path: Path, value: str) -> None:
    message = error_of(tmp_path, VALID.replace("partial_credit = true", f"partial_credit = true\nvisibility = {value}"))
    assert "line 14" in message and "forward.values" in message and "is not a visibility" in message
    assert "as a quoted string" in message


def test_scoring_carries_each_checks_visibility_and_still_scores_hidden_ones(tmp_path: Path) -> None:
    from grader.model import CheckResult
    from grader.score import apply_rubric

    text = VALID.replace("partial_credit = false", 'partial_credit = false\nvisibility = "hidden"')
    rubric = load_rubric(str(write(tmp_path, text)))
    results = [CheckResult("forward.values", "forward", True, "ok", 1.0),
               CheckResult("backward.gradient", "backward", True, "ok", 1.0),
               CheckResult("backward.gradient", "backward", True, "again", 1.0),
               CheckResult("activation.values", "activation", True, "not in the rubric", 1.0)]
    assert apply_rubric(results, rubric) == (10.0, 10.0)
    assert [r.visibility for r in results] == ["visible", "hidden", "hidden", "visible"]
    assert [r.score for r in results] == [6.0, 4.0, 0.0, 0.0]


def test_check_that_is_not_a_table(tmp_path: Path) -> None:
    text = 'schema = "grader.rubric/1"\nname = "x"\nmax_score = 2\n[checks]\n"forward.values" = 2\n'
    message = error_of(tmp_path, text)
    assert "line 5" in message
    assert "forward.values" in message and "not a table" in message


def test_points_not_summing_to_max_score(tmp_path: Path) -> None:
    message = error_of(tmp_path, VALID.replace("points = 4", "points = 3"))
    assert "line 4" in message
    assert "max_score = 10" in message
    assert "add up to 9" in message


def test_points_sum_tolerance_is_tight(tmp_path: Path) -> None:
    message = error_of(tmp_path, VALID.replace("points = 4", "points = 4.000001"))
    assert "line 4" in message and "max_score" in message


def test_no_checks_at_all_does_not_sum(tmp_path: Path) -> None:
    text = 'schema = "grader.rubric/1"\nname = "x"\nmax_score = 5\n'
    message = error_of(tmp_path, text)
    assert "add up to 0" in message


@pytest.mark.parametrize(
    ("value", "shown"),
    [('"relu"', "'relu'"), ("[]", "[]"), ('["relu", "rleu"]', "'rleu'"), ("[1]", "activation 1")],
)
def test_accepted_activations_not_a_list_of_known(tmp_path: Path, value: str, shown: str) -> None:
    message = error_of(tmp_path, VALID.replace('accepted_activations = ["relu", "sigmoid"]', f"accepted_activations = {value}"))
    assert "line 5" in message
    assert "accepted_activations" in message and shown in message
    assert ", ".join(KNOWN_ACTIVATIONS) in message


def test_unknown_activation_gets_a_suggestion(tmp_path: Path) -> None:
    message = error_of(tmp_path, VALID.replace('"sigmoid"', '"sigmod"'))
    assert "did you mean 'sigmoid'" in message


@pytest.mark.parametrize(
    ("line", "expected"),
    [("cell_timeout_s = -3", "positive number"), ('cell_timeout_s = "3"', "positive number")],
)
def test_bad_limit_value_names_the_line(tmp_path: Path, line: str, expected: str) -> None:
    message = error_of(tmp_path, VALID.replace("cell_timeout_s = 3", line))
    assert "line 8" in message
    assert "cell_timeout_s" in message
    assert expected in message


def test_fractional_whole_number_limit(tmp_path: Path) -> None:
    message = error_of(tmp_path, VALID.replace("memory_mb = 512", "memory_mb = 512.5"))
    assert "line 9" in message
    assert "memory_mb = 512.5" in message
    assert "positive whole number" in message


def test_unknown_limit_suggests_the_closest(tmp_path: Path) -> None:
    message = error_of(tmp_path, VALID.replace("memory_mb = 512", "memory_mib = 512"))
    assert "line 9" in message
    assert "'memory_mib'" in message
    assert "did you mean 'memory_mb'" in message


def test_limits_not_a_table(tmp_path: Path) -> None:
    text = VALID.replace("[limits]\ncell_timeout_s = 3\nmemory_mb = 512\n", "").replace(
        'accepted_activations = ["relu", "sigmoid"]', 'accepted_activations = ["relu"]\nlimits = 5'
    )
    message = error_of(tmp_path, text)
    assert "line 6" in message and "limits = 5" in message


def test_key_lines_ignore_lookalikes_inside_multiline_strings(tmp_path: Path) -> None:
    text = VALID.replace('title = "A mini rubric"', 'title = """A mini rubric\nmax_score = 7\n"""')
    message = error_of(tmp_path, text.replace("max_score = 10", "max_score = -1"))
    assert "line 6" in message


# --------------------------------------------------------------------------- installed layout


INSTALLED_PROBE = """\
from grader.rubric import builtin_rubrics, load_rubric
rubric = load_rubric()
print(builtin_rubrics(), rubric.name, rubric.max_score, rubric.path)
"""


def _installed_layout(site: Path) -> None:
    """Lay files out as a wheel installs them: ``rubrics/`` becomes ``grader/rubrics/``, ``reference/``
    becomes ``grader/reference/``."""
    import shutil

    ignore = shutil.ignore_patterns("__pycache__", "*.pyc")
    shutil.copytree(REPO / "grader", site / "grader", ignore=ignore)
    shutil.copytree(REPO / "rubrics", site / "grader" / "rubrics", ignore=ignore)
    shutil.copytree(REPO / "reference", site / "grader" / "reference", ignore=ignore)


@pytest.mark.parametrize("zipped", [False, True], ids=["site-packages", "zipimport"])
def test_bundled_rubrics_are_found_when_installed(tmp_path: Path, zipped: bool) -> None:
    import shutil
    import subprocess
    import sys

    site = tmp_path / "site"
    _installed_layout(site)
    where = site
    if zipped:
        where = Path(shutil.make_archive(str(tmp_path / "grader_pkg"), "zip", site))
        shutil.rmtree(site)
    env = {**os.environ, "PYTHONPATH": str(where), "PYTHONDONTWRITEBYTECODE": "1"}
    done = subprocess.run(
        [sys.executable, "-c", INSTALLED_PROBE], cwd=tmp_path, env=env, capture_output=True, text=True, timeout=60
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout.startswith("['simple_nn', 'simple_nn_batch'] simple_nn 100.0 ")
    loaded_from = done.stdout.rsplit(" ", 1)[1].strip()
    assert loaded_from.startswith(str(where)), loaded_from
    assert loaded_from.endswith("simple_nn.toml")
