"""Which directories the sandbox's mount namespace covers, for the ways the grader is installed."""
from pathlib import Path

import pytest

from grader import confine


@pytest.fixture
def checkout(tmp_path, monkeypatch):
    """A source checkout laid out like this repository, with the grader package inside it."""
    for name in ("grader", "reference", "rubrics", "tests", ".git", ".venv/bin"):
        (tmp_path / name).mkdir(parents=True)
    (tmp_path / "pyproject.toml").write_text("[project]\nname = 'grader'\n")
    monkeypatch.setattr(confine, "_PACKAGE_DIR", tmp_path / "grader")
    return tmp_path


def test_an_interpreter_outside_the_checkout_gets_the_whole_checkout_covered(checkout, tmp_path_factory):
    elsewhere = tmp_path_factory.mktemp("venv")
    assert confine._grader_directories(str(elsewhere)) == (str(checkout),)


def test_a_venv_inside_the_checkout_stays_visible_and_every_other_folder_is_covered(checkout):
    hidden = confine._grader_directories(str(checkout / ".venv"))
    assert str(checkout / ".venv") not in hidden
    assert {Path(p).name for p in hidden} == {"grader", "reference", "rubrics", "tests", ".git"}


def test_an_installed_package_covers_only_itself(tmp_path, monkeypatch):
    package = tmp_path / "site-packages" / "grader"
    package.mkdir(parents=True)
    monkeypatch.setattr(confine, "_PACKAGE_DIR", package)
    assert confine._grader_directories(str(tmp_path)) == (str(package),)
