"""pytest plugin: grade notebooks as part of a pytest run, one test per rubric check.

    pytest --grader-notebook submission.ipynb [--grader-rubric NAME|PATH] [--grader-seed N]
           [--grader-cell-timeout S ...]

or, in the project's ini file (paths relative to the rootdir)::

    [pytest]
    grader_notebooks = submission.ipynb
    grader_cell_timeout_s = 20

Every resource limit of ``grader.sandbox.limits`` is an option (``--grader-`` and
its ``grader`` flag: ``--grader-cell-timeout``) and an ini key (``grader_`` and its
rubric name: ``grader_cell_timeout_s``); the option wins over the ini key, and
both over the rubric's ``[limits]``. A bad value is a usage error naming the
setting, the value, where it came from and what was expected.

Each notebook becomes a collector node (``NotebookFile``) with one item
``<notebook>::grading`` and one item per check of the rubric
(``<notebook>::backward.gradient``, in rubric order). The items are known from
the rubric alone, so collecting (``--collect-only``, ``-k``) never runs student
code; the notebook is graded once, by the first of its items that runs, and the
report is kept on the collector for the others.

* ``::grading`` fails when the notebook could not be graded (status "error"),
  with the report's one sentence; otherwise it passes.
* a check item passes iff the check passed; a failure shows the check's
  message, its points and the named bugs of that check's function, never a
  traceback. A check that is in the rubric but not in a graded report fails
  (fail closed), and so does every check of a notebook that was not graded.
* points are recorded as ``user_properties`` (``score``, ``max_score``), which
  ``--junitxml`` writes as ``<property>`` elements of each ``<testcase>``.

Without a notebook on the command line or in the ini file the plugin registers
nothing beyond its options, so an ordinary pytest run is untouched. The module
imports nothing of the grader (or numpy) until a notebook is actually given,
because the entry point loads it into every pytest run of the environment; the
one exception is the limits' definitions its options are made from
(``grader.sandbox.limits``, which needs only the standard library).
"""
from __future__ import annotations

import os
import traceback
from collections.abc import Generator, Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pytest

if TYPE_CHECKING:
    from grader.model import CheckResult, Report
    from grader.rubric import Rubric
    from grader.sandbox.limits import Limits, Setting

#: Name under which the active plugin object is registered (``-p no:grader`` disables the whole plugin).
_ACTIVE = "grader-notebooks"
GRADING_ITEM = "grading"


def pytest_addoption(parser: pytest.Parser) -> None:
    group = parser.getgroup("grader", "grading student notebooks (grader)")
    group.addoption("--grader-notebook", action="append", default=[], metavar="PATH", dest="grader_notebook",
                    help="grade this notebook: one test per rubric check (repeatable; "
                         "overrides the grader_notebooks ini option)")
    group.addoption("--grader-assignment", default=None, metavar="NAME|PATH", dest="grader_assignment",
                    help="bundled assignment name or path to an assignment's folder (default: the rubric's own, "
                         "else simple_nn)")
    group.addoption("--grader-rubric", default=None, metavar="NAME|PATH", dest="grader_rubric",
                    help="bundled rubric name or path to a rubric .toml (default: the assignment's own)")
    group.addoption("--grader-seed", type=int, default=0, metavar="N", dest="grader_seed",
                    help="seed for the grader's random probes (default: 0)")
    parser.addini("grader_notebooks", type="linelist", default=[],
                  help="notebooks to grade when no --grader-notebook is given (relative to the rootdir)")
    _add_limit_options(group, parser)


#: How the pytest names of a limit are made from its own (``--cell-timeout``, ``cell_timeout_s``).
_FLAG_PREFIX = "--grader-"
_INI_PREFIX = "grader_"


def _limit_flag(setting: Setting) -> str:
    return _FLAG_PREFIX + setting.flag.removeprefix("--")


def _add_limit_options(group: pytest.OptionGroup, parser: pytest.Parser) -> None:
    """An option and an ini key per limit, from its one definition in ``grader.sandbox.limits``."""
    import argparse

    from grader.errors import SettingError
    from grader.sandbox.limits import settings

    for setting in settings():
        flag = _limit_flag(setting)

        def parse(text: str, setting: Setting = setting, flag: str = flag) -> float:
            try:
                return setting.parse(text, f"the pytest command line ({flag})")
            except SettingError as exc:
                raise argparse.ArgumentTypeError(exc.message) from None

        group.addoption(flag, type=parse, default=None, metavar=setting.metavar, dest=_INI_PREFIX + setting.name,
                        help=setting.help_text())
        parser.addini(_INI_PREFIX + setting.name, default="",
                      help=f"{setting.help} ({setting.unit}); {flag} overrides it")


def _limits(config: pytest.Config, rubric: Rubric) -> Limits:
    """The rubric's limits with the ini keys, then the options, applied (SettingError for a bad ini value)."""
    from grader.sandbox.limits import settings

    ini_file = f"the ini file {config.inipath}" if config.inipath else "the ini file"
    given: dict[str, float] = {}
    for setting in settings():
        key = _INI_PREFIX + setting.name
        value = config.getoption(key)
        text = str(config.getini(key) or "").strip()
        if value is None and text:
            value = setting.parse(text, f"{ini_file} ({key})")
        if value is not None:
            given[setting.name] = value
    return rubric.limits.merged(given, "the pytest options")


def _notebook_paths(config: pytest.Config) -> list[Path]:
    """Command-line notebooks (relative to the invocation directory), else the ini's (relative to the rootdir)."""
    given = config.getoption("grader_notebook") or []
    if given:
        base, names = config.invocation_params.dir, given
    else:
        base, names = config.rootpath, config.getini("grader_notebooks") or []
    paths: dict[Path, None] = {}
    for name in names:
        path = Path(os.path.expanduser(str(name)))
        paths.setdefault(Path(os.path.abspath(base / path)), None)
    return list(paths)


def pytest_configure(config: pytest.Config) -> None:
    notebooks = _notebook_paths(config)
    if not notebooks:
        return
    from grader.errors import GraderError
    from grader.rubric import load_rubric
    from grader.sandbox.confine import confinement

    try:
        rubric = load_rubric(config.getoption("grader_rubric"), config.getoption("grader_assignment"))
        limits = _limits(config, rubric)
        confinement().require()  # a machine that may not run student code is a usage error, not 8 failures
    except GraderError as exc:
        raise pytest.UsageError(f"grader: {exc.message}") from None
    config.pluginmanager.register(_GraderSession(notebooks, rubric, config.getoption("grader_seed"), limits), _ACTIVE)


class _GraderSession:
    """The active part of the plugin, registered only when there are notebooks to grade."""

    def __init__(self, notebooks: list[Path], rubric: Rubric, seed: int, limits: Limits | None = None) -> None:
        self.notebooks = notebooks
        self.rubric = rubric
        self.seed = seed
        self.limits = limits

    def pytest_report_header(self) -> str:
        count = len(self.notebooks)
        return (f"grader: {count} notebook{'s' if count != 1 else ''}, rubric {self.rubric.name} "
                f"({self.rubric.path}), seed {self.seed}")

    def pytest_terminal_summary(self, terminalreporter: Any) -> None:
        """What this machine did not enforce while grading, for whoever runs the build (never in a test's report)."""
        from grader.sandbox import environment

        notices = environment.notices()
        if notices:
            terminalreporter.section("grader: notes for the operator")
            for notice in notices:
                terminalreporter.write_line(notice)

    @pytest.hookimpl(hookwrapper=True)  # old-style wrapper: works with every pluggy pytest>=7.4 accepts
    def pytest_make_collect_report(self, collector: pytest.Collector) -> Generator[None, Any, None]:
        # The notebooks hang off the session next to whatever pytest collected from its
        # arguments, so they go through the normal item generation: counted, shown by
        # --collect-only, selectable with -k/--deselect/--lf, and reported to --junitxml.
        outcome = yield
        report = outcome.get_result()
        if isinstance(collector, pytest.Session) and report.passed and isinstance(report.result, list):
            report.result.extend(
                NotebookFile.from_parent(collector, path=path, nodeid=self._outside_id(path, collector), grading=self)
                for path in self.notebooks)

    def _outside_id(self, path: Path, session: pytest.Session) -> str | None:
        """The node id of a notebook outside the rootdir: its file name, or its absolute path if that is ambiguous.

        (pytest names a file inside the rootdir by its relative path itself; outside, it would
        make an id with no path part, ``::name``.)
        """
        try:
            path.relative_to(session.config.rootpath)
            return None
        except ValueError:
            pass
        if sum(other.name == path.name for other in self.notebooks) == 1:
            return path.name
        return path.as_posix()


class NotebookFile(pytest.File):
    """One notebook: its items come from the rubric; the report is made once, on first use."""

    def __init__(self, *, grading: _GraderSession, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.grading = grading
        self._report: Report | None = None
        self._crash: str | None = None

    def collect(self) -> Iterator[pytest.Item]:
        yield GradingItem.from_parent(self, name=GRADING_ITEM)
        for check_id in self.grading.rubric.checks:
            yield CheckItem.from_parent(self, name=check_id)

    def report(self) -> Report | None:
        """The notebook's report, graded on the first call; None when the grader itself failed."""
        if self._report is None and self._crash is None:
            from grader.grade import Options, grade_notebook

            try:
                options = Options(seed=self.grading.seed, limits=self.grading.limits)
                self._report = grade_notebook(self.path, self.grading.rubric, options)
            except Exception:  # noqa: BLE001 - a grader bug, not a bad submission: said on every item, fail closed
                self._crash = traceback.format_exc()
        return self._report

    def not_graded(self) -> str | None:
        """Why the notebook has no verdicts, or None when it was graded."""
        report = self.report()
        if report is None:
            return f"the grader itself failed on {self.path}:\n{self._crash}"
        if report.status != "graded":
            from grader.render._common import error_sentence
            return error_sentence(report)
        return None


class NotebookCheckFailed(Exception):
    """A failed check or an ungraded notebook; its text is the whole failure report."""


class _Crash:
    """Stands in for pytest's crash location: its ``message`` is the summary line (``-ra``, JUnit ``message``)."""

    def __init__(self, path: Path, message: str) -> None:
        self.path, self.lineno, self.message = str(path), 0, message


class _FailureText:
    """A failure shown as plain text, no traceback; the first line also serves as the one-line summary."""

    def __init__(self, text: str, path: Path) -> None:
        self.text = text
        self.reprcrash = _Crash(path, text.splitlines()[0] if text else "failed")

    def toterminal(self, tw: Any) -> None:
        for line in self.text.splitlines():
            tw.line(line)

    def __str__(self) -> str:
        return self.text


class _NotebookItem(pytest.Item):
    parent: NotebookFile

    def repr_failure(self, excinfo: pytest.ExceptionInfo[BaseException], style: Any = None) -> Any:
        if isinstance(excinfo.value, NotebookCheckFailed):
            return _FailureText(str(excinfo.value), self.path)
        return super().repr_failure(excinfo, style=style)

    def reportinfo(self) -> tuple[Path, int | None, str]:
        return self.path, None, f"{self.path.name}::{self.name}"

    def _record(self, score: float, max_score: float) -> None:
        from grader.render._common import points
        self.user_properties.append(("score", points(score)))
        self.user_properties.append(("max_score", points(max_score)))


class GradingItem(_NotebookItem):
    """Passes when the notebook was graded; fails with the one-sentence reason otherwise."""

    def runtest(self) -> None:
        reason = self.parent.not_graded()
        report = self.parent.report()
        if report is not None:
            self._record(report.score, report.max_score)
            if report.warnings:
                self.add_report_section("call", "grader warnings", "\n".join(report.warnings))
        if reason is not None:
            raise NotebookCheckFailed(f"not graded: {reason}")


class CheckItem(_NotebookItem):
    """One rubric check: passes iff the check passed."""

    def runtest(self) -> None:
        weight = self.parent.grading.rubric.checks[self.name]
        reason = self.parent.not_graded()
        if reason is not None:
            self._record(0.0, weight.points)
            raise NotebookCheckFailed(f"not graded, so 0 of {weight.points:g} points: {reason}")
        report = self.parent.report()
        assert report is not None
        results = [check for check in report.checks if check.id == self.name]
        if not results:
            self._record(0.0, weight.points)
            raise NotebookCheckFailed(f"{self.name} did not run, so it scores 0 of {weight.points:g}.")
        first = results[0]  # scoring puts a check's points on its first result
        self._record(first.score, first.max_score)
        failed = [check for check in results if not _passed(check)]
        if failed:
            raise NotebookCheckFailed(_failure_text(failed[0], first, report))


def _passed(check: CheckResult) -> bool:
    """Only a real boolean True passes (as in scoring): a truthy string from a broken check does not."""
    import numpy as np
    return isinstance(check.passed, (bool, np.bool_)) and bool(check.passed)


def _failure_text(check: CheckResult, scored: CheckResult, report: Report) -> str:
    from grader.render._common import points
    lines = [check.message or "this check did not pass.",
             f"points: {points(scored.score)} / {points(scored.max_score)}"]
    for diagnosis in report.diagnoses:
        if diagnosis.function == check.function:
            lines.append(f"known mistake {diagnosis.id}: {diagnosis.message}")
    return "\n".join(lines)
