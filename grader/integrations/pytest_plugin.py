"""pytest plugin: grade notebooks as part of a pytest run, one test per rubric check.

    pytest --grader-notebook submission.ipynb [--grader-fail-under N] [--grader-rubric NAME|PATH]
           [--grader-seed N] [--grader-cell-timeout S ...]
    pytest --grader submission.ipynb 'other.ipynb::backward.gradient'

or, in the project's ini file (paths relative to the rootdir)::

    [pytest]
    grader_notebooks = submission.ipynb
    grader_fail_under = 60
    grader_cell_timeout_s = 20

**Which notebooks.** A notebook is graded when it is named by ``--grader-notebook`` (repeatable;
relative to the directory pytest runs in) or, without that option, by the ``grader_notebooks``
ini list (relative to the rootdir); and, once the plugin is on (either of those, or the
``--grader`` flag), when a notebook is given as a path argument, as any test file is
(``pytest --grader nb.ipynb``). A notebook pytest merely finds while walking a directory is
never graded unless it is one of the named ones, so an ordinary project's ``.ipynb`` files
(lecture notes, checkpoints) are left alone, with or without ``--grader``.

Notebooks are collected by ``pytest_collect_file``, like any other test file: the named ones
are added to the run's arguments (unless an argument already names or contains them), so
pytest itself builds their nodes and everything that works on a file works on them: node ids
as arguments (``pytest 'nb.ipynb::backward.gradient'``), ``-k``, ``--deselect``, ``--lf``,
``--collect-only``. The ini list follows pytest's ``testpaths`` convention: it is used when
the command line gives no path of its own, so ``pytest tests/test_x.py`` runs that file only
(the header names the notebooks so left out), and ``pytest nb.ipynb::backward.gradient`` that
one check. ``--grader-notebook`` is explicit and always added. A missing notebook (option or ini) is one ``pytest.UsageError`` (exit 4).

**Node ids.** ``<notebook>::grading``, one ``<notebook>::<check id>`` per rubric check, in
rubric order, and ``<notebook>::score`` when a pass mark is set. ``<notebook>`` is pytest's
own: the path relative to the rootdir (so ``-v`` prints it relative to where pytest runs and
it can be pasted back), the absolute path for a notebook outside the rootdir (pytest itself
would give it an empty path part). pytest's argument syntax cannot name a file whose path
holds ``::`` or ``[``; such a notebook (given by option or ini) is attached to the session
directly, and in its id ``%``, ``::``, ``[`` and ``]`` are written ``%25``, ``%3A%3A``, ``%5B``
and ``%5D``: ids stay distinct and parse back into path and check, and JUnit names stay
whole. (Spaces need nothing: quote the id.) The items come from the rubric alone, so
collecting never runs student code.

**Verdicts.**

* ``::grading`` fails when the notebook could not be graded (status "error"), with the
  report's one sentence; otherwise it passes.
* a check item passes iff the check passed; a failure shows the check's message with its
  points, then the named bugs of that check's function, never a traceback. A check that is
  in the rubric but not in a graded report fails (fail closed), and so does every check of
  a notebook that was not graded.
* **pass mark** (``--grader-fail-under N``, ini ``grader_fail_under``; percent of the maximum
  score, 0 to 100, as ``grader check --fail-under``): the build then passes or fails on the
  score, not on single checks. A failed check is reported as **xfail** (``x``, its message
  and points as the reason, JUnit ``<skipped type="pytest.xfail">``), and one more item,
  ``<notebook>::score``, fails when the score is under N% of the maximum (or the notebook
  was not graded). ``::grading`` still fails for a notebook that cannot be graded.
  ``--runxfail`` turns the xfails back into failures (with their whole text), as for any xfail.

**Points in JUnit.** pytest's default ``junit_family`` is xunit2, whose ``<testcase>`` may not
hold ``<properties>``. Points therefore go (1) into the failure or xfail message, (2) into
testsuite-level properties, one per item, named by its node id with the value
``score/max_score`` (``simple_nn_seed.ipynb::backward.gradient`` = ``0/20``; ``::grading``
carries the notebook's total), the place xunit2 allows (as ``record_testsuite_property``
does), and (3) into each item's ``user_properties`` (``score``, ``max_score``) unless
``--junitxml`` writes xunit2, so that xunit1 files and other reporting plugins still get
them per test case. The points travel on the test report, so they arrive under xdist too.

**pytest-xdist.** A notebook is graded at most once per process: the first of its items that
runs in a process grades it and the report is kept for that process's other items. With
``-n N`` (``--dist load``) the items of one notebook may be spread over the workers and
each of those workers grades it once; ``--dist loadfile`` (or ``loadscope``) sends all the
items of a notebook to one worker, so it is graded exactly once in the run.

Every resource limit of ``grader.sandbox.limits`` is an option (``--grader-`` and its
``grader`` flag: ``--grader-cell-timeout``) and an ini key (``grader_`` and its rubric name:
``grader_cell_timeout_s``); the option wins over the ini key, and both over the rubric's
``[limits]``. A bad value, of a limit or of the pass mark, is a usage error naming the
setting, the value, where it came from and what was expected.

Without a notebook or ``--grader`` the plugin registers nothing beyond its options, so an
ordinary pytest run is untouched. The module imports nothing of the grader (or numpy) until
a notebook is actually given, because the entry point loads it into every pytest run of the
environment; the exceptions are the limits' definitions its options are made from
(``grader.sandbox.limits``) and ``grader.errors``, which need only the standard library.
"""
from __future__ import annotations

import math
import os
import traceback
from collections.abc import Generator, Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any, NoReturn

import pytest

if TYPE_CHECKING:
    from grader.model import CheckResult, Report
    from grader.rubric import Rubric
    from grader.sandbox.limits import Limits, Setting

#: Name under which the active plugin object is registered (``-p no:grader`` disables the whole plugin).
_ACTIVE = "grader-notebooks"
GRADING_ITEM = "grading"
SCORE_ITEM = "score"

#: The pass mark's name in messages (as a limit's is its rubric key), its ini key and what it must be.
FAIL_UNDER = "fail_under"
FAIL_UNDER_FLAG = "--grader-fail-under"
FAIL_UNDER_INI = "grader_fail_under"
FAIL_UNDER_EXPECTED = "a number from 0 to 100 (percent of the maximum score)"


def pytest_addoption(parser: pytest.Parser) -> None:
    group = parser.getgroup("grader", "grading student notebooks (grader)")
    group.addoption("--grader", action="store_true", default=False, dest="grader_enable",
                    help="grade the notebooks given as path arguments (pytest --grader nb.ipynb); "
                         "--grader-notebook and the grader_notebooks ini option turn this on too")
    group.addoption("--grader-notebook", action="append", default=[], metavar="PATH", dest="grader_notebook",
                    help="grade this notebook: one test per rubric check (repeatable; "
                         "overrides the grader_notebooks ini option)")
    group.addoption(FAIL_UNDER_FLAG, type=_fail_under_option, default=None, metavar="N", dest="grader_fail_under",
                    help="pass mark: fail when a notebook scores under N percent of the maximum "
                         "(the <notebook>::score item); failed checks then report as xfail")
    group.addoption("--grader-assignment", default=None, metavar="NAME|PATH", dest="grader_assignment",
                    help="bundled assignment name or path to an assignment's folder (default: the rubric's own, "
                         "else simple_nn)")
    group.addoption("--grader-rubric", default=None, metavar="NAME|PATH", dest="grader_rubric",
                    help="bundled rubric name or path to a rubric .toml (default: the assignment's own)")
    group.addoption("--grader-seed", type=int, default=0, metavar="N", dest="grader_seed",
                    help="seed for the grader's random probes (default: 0)")
    parser.addini("grader_notebooks", type="linelist", default=[],
                  help="notebooks to grade when no --grader-notebook is given (relative to the rootdir)")
    parser.addini(FAIL_UNDER_INI, default="",
                  help=f"pass mark in percent of the maximum score; {FAIL_UNDER_FLAG} overrides it")
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


def _ini_origin(config: pytest.Config, key: str) -> str:
    return f"the ini file {config.inipath} ({key})" if config.inipath else f"the ini file ({key})"


def _limits(config: pytest.Config, rubric: Rubric) -> Limits:
    """The rubric's limits with the ini keys, then the options, applied (SettingError for a bad ini value)."""
    from grader.sandbox.limits import settings

    given: dict[str, float] = {}
    for setting in settings():
        key = _INI_PREFIX + setting.name
        value = config.getoption(key)
        text = str(config.getini(key) or "").strip()
        if value is None and text:
            value = setting.parse(text, _ini_origin(config, key))
        if value is not None:
            given[setting.name] = value
    return rubric.limits.merged(given, "the pytest options")


def _parse_fail_under(text: str, origin: str) -> float:
    """The pass mark typed as text: a finite number from 0 to 100, else the SettingError every setting gives."""
    from grader.errors import SettingError

    value: Any = text
    for number in (int, float):  # "150" is shown as 150, not 150.0
        try:
            value = number(text)
            break
        except ValueError:
            continue
    if isinstance(value, str) or not math.isfinite(value) or not 0 <= value <= 100:
        raise SettingError.from_bad_value(FAIL_UNDER, value, origin, FAIL_UNDER_EXPECTED)
    return float(value)


def _fail_under_option(text: str) -> float:
    import argparse

    from grader.errors import SettingError

    try:
        return _parse_fail_under(text, f"the pytest command line ({FAIL_UNDER_FLAG})")
    except SettingError as exc:
        raise argparse.ArgumentTypeError(exc.message) from None


def _fail_under(config: pytest.Config) -> float | None:
    """The pass mark: the option, else the ini key (SettingError for a bad ini value), else None."""
    value: float | None = config.getoption("grader_fail_under")
    text = str(config.getini(FAIL_UNDER_INI) or "").strip()
    if value is None and text:
        value = _parse_fail_under(text, _ini_origin(config, FAIL_UNDER_INI))
    return value


class _Named:
    """The notebooks named by ``--grader-notebook`` (relative to the invocation directory) or, without
    it, by the ``grader_notebooks`` ini list (relative to the rootdir), in order, without repeats."""

    def __init__(self, config: pytest.Config) -> None:
        given = config.getoption("grader_notebook") or []
        self.from_option = bool(given)
        if given:
            self.base, names = config.invocation_params.dir, [str(name) for name in given]
            self.where = (f"in {self.base} (--grader-notebook paths are relative to the directory pytest runs in)")
        else:
            self.base, names = config.rootpath, [str(name) for name in config.getini("grader_notebooks") or []]
            self.where = (f"in the rootdir {self.base} (grader_notebooks in {config.inipath or 'the ini file'} "
                          "lists paths relative to it)")
        self.given: dict[Path, str] = {}
        for name in names:
            self.given.setdefault(_absolute(self.base / os.path.expanduser(name)), name)

    @property
    def paths(self) -> list[Path]:
        return list(self.given)

    def problem(self) -> str | None:
        """One sentence naming every notebook that is missing or a folder, or None when all are files."""
        missing = [name for path, name in self.given.items() if not path.exists()]
        if missing:
            plural = "s" if len(missing) > 1 else ""
            return f"grader: no notebook{plural} {', '.join(missing)} {self.where}; check the path and the file name."
        folders = [name for path, name in self.given.items() if path.is_dir()]
        if folders:
            return (f"grader: {', '.join(folders)} {self.where} is a folder, not a notebook; name the .ipynb file "
                    "itself.")
        return None


def _absolute(path: Path) -> Path:
    """Absolute and normalised but with symlinks kept, the way pytest makes the paths it collects."""
    return Path(os.path.abspath(path))


def pytest_configure(config: pytest.Config) -> None:
    named = _Named(config)
    if not named.paths and not config.getoption("grader_enable"):
        return
    problem = named.problem()
    if problem is not None:
        raise pytest.UsageError(problem)
    from grader.errors import GraderError
    from grader.rubric import load_rubric
    from grader.sandbox.confine import confinement

    try:
        fail_under = _fail_under(config)
        rubric = load_rubric(config.getoption("grader_rubric"), config.getoption("grader_assignment"))
        limits = _limits(config, rubric)
        confinement().require()  # a machine that may not run student code is a usage error, not 8 failures
    except GraderError as exc:
        raise pytest.UsageError(f"grader: {exc.message}") from None
    grading = _GraderSession(config, named.paths, rubric, config.getoption("grader_seed"), limits, fail_under)
    grading.schedule(config, explicit_option=named.from_option)
    config.pluginmanager.register(grading, _ACTIVE)


def _as_argument(path: Path) -> bool:
    """Whether pytest can take this path as a command-line argument: ``::`` and ``[`` start selection parts."""
    return "::" not in str(path) and "[" not in str(path)


def _argument_paths(config: pytest.Config) -> tuple[set[Path], list[Path]]:
    """The files the run's arguments name (with or without ``::`` parts) and the folders they name whole.

    Parsed as pytest does (``resolve_collection_argument``): the path ends at the first ``[``
    or ``::``, relative to the invocation directory.
    """
    files: set[Path] = set()
    folders: list[Path] = []
    for arg in config.args:
        base = str(arg).partition("[")[0]
        text, *parts = base.split("::")
        path = _absolute(config.invocation_params.dir / text)
        if not parts and path.is_dir():
            folders.append(path)
        else:
            files.add(path)
    return files, folders


def _escape(text: str) -> str:
    return text.replace("%", "%25").replace("::", "%3A%3A").replace("[", "%5B").replace("]", "%5D")


def _node_path(path: Path, rootpath: Path) -> str:
    """The path part of a notebook's node id: pytest's own (relative to the rootdir, ``/``-separated), the
    absolute path outside the rootdir, and escaped where pytest's id syntax would split it."""
    try:
        text = path.relative_to(rootpath).as_posix()
    except ValueError:
        text = path.as_posix()
    return text if _as_argument(Path(text)) else _escape(text)


class _GraderSession:
    """The active part of the plugin, registered only when there are notebooks to grade (or ``--grader``)."""

    def __init__(self, config: pytest.Config, notebooks: list[Path], rubric: Rubric, seed: int,
                 limits: Limits | None = None, fail_under: float | None = None) -> None:
        self.config = config
        self.notebooks = notebooks
        self.rubric = rubric
        self.seed = seed
        self.limits = limits
        self.fail_under = fail_under
        #: Notebooks pytest cannot take as an argument: hung off the session instead (``pytest_make_collect_report``).
        self.attached: list[Path] = []
        #: The ini's notebooks outside the paths the command line named: not run (said in the header).
        self.left_out: list[Path] = []
        #: This process's reports (or the grader's own crash), by notebook: each is graded at most once per process.
        self._graded: dict[Path, tuple[Report | None, str | None]] = {}

    def schedule(self, config: pytest.Config, *, explicit_option: bool) -> None:
        """Make pytest visit the named notebooks itself: add each to the run's arguments, unless an argument
        already names it or a folder that holds it (then pytest reaches it and ``pytest_collect_file`` takes
        it), or the command line chose its own paths and the notebooks come from the ini list (as
        ``testpaths``: explicit paths say what runs)."""
        files, folders = _argument_paths(config)
        for path in self.notebooks:
            if path in files or any(folder in path.parents for folder in folders):
                continue
            if not explicit_option and config.args_source == pytest.Config.ArgsSource.ARGS:
                self.left_out.append(path)
            elif _as_argument(path):
                config.args.append(str(path))
            else:
                self.attached.append(path)

    def pytest_report_header(self) -> list[str]:
        count = len(self.notebooks)
        which = f"{count} notebook{'s' if count != 1 else ''}" if count else "notebooks given as arguments"
        mark = f", pass mark {self.fail_under:g}%" if self.fail_under is not None else ""
        from grader.pack.installed import public_seed

        drawn = public_seed(self.rubric.assignment)
        seed = f"seed {self.seed}" if drawn is None else f"a student pack's public probes (seed {drawn})"
        lines = [f"grader: {which}, rubric {self.rubric.name} ({self.rubric.path}), {seed}{mark}"]
        if self.left_out:
            lines.append(f"grader: not run, as the command line names its own paths: "
                         f"{', '.join(path.name for path in self.left_out)} (grader_notebooks)")
        return lines

    def pytest_collect_file(self, file_path: Path, parent: pytest.Collector) -> NotebookFile | None:
        """A named notebook wherever pytest meets it; any other ``.ipynb`` only when given as an argument."""
        path = _absolute(file_path)
        if path in self.attached:
            return None  # already hung off the session: a folder argument that holds it must not add it twice
        if path in self.notebooks or (path.suffix == ".ipynb" and parent.session.isinitpath(path)):
            return self.notebook_node(parent, path)
        return None

    def notebook_node(self, parent: pytest.Collector, path: Path) -> NotebookFile:
        return NotebookFile.from_parent(parent, path=path, nodeid=_node_path(path, parent.config.rootpath),
                                        grading=self)

    @pytest.hookimpl(hookwrapper=True)  # old-style wrapper: works with every pluggy pytest>=7.4 accepts
    def pytest_make_collect_report(self, collector: pytest.Collector) -> Generator[None, Any, None]:
        # Only for notebooks whose path pytest cannot take as an argument: they hang off the session
        # next to what pytest collected from its arguments, and go through the normal item generation.
        outcome = yield
        if not self.attached or not isinstance(collector, pytest.Session):
            return
        report = outcome.get_result()
        if report.passed and isinstance(report.result, list):
            report.result.extend(self.notebook_node(collector, path) for path in self.attached)

    def report(self, path: Path) -> tuple[Report | None, str | None]:
        """The notebook's report, graded on the first call in this process; or the grader's own crash."""
        if path not in self._graded:
            from grader.grade import Options, grade_notebook

            try:
                report = grade_notebook(path, self.rubric, Options(seed=self.seed, limits=self.limits))
                self._graded[path] = (report, None)
            except Exception:  # noqa: BLE001 - a grader bug, not a bad submission: said on every item, fail closed
                self._graded[path] = (None, traceback.format_exc())
        return self._graded[path]

    @pytest.hookimpl(hookwrapper=True)
    def pytest_runtest_makereport(self, item: pytest.Item, call: pytest.CallInfo[None]) -> Generator[None, Any, None]:
        # The points ride on the report (a plain list survives xdist's serialisation to the controller).
        outcome = yield
        if call.when == "call" and isinstance(item, _NotebookItem) and item.points is not None:
            outcome.get_result().grader_points = list(item.points)

    def pytest_runtest_logreport(self, report: pytest.TestReport) -> None:
        """Each item's points as a testsuite-level property of the JUnit file (valid under every junit_family)."""
        points_given = getattr(report, "grader_points", None)
        if report.when != "call" or not points_given:
            return
        xml = _junit_xml(self.config)
        if xml is not None:
            from grader.render._common import points

            score, max_score = points_given
            xml.add_global_property(report.nodeid, f"{points(score)}/{points(max_score)}")

    def pytest_terminal_summary(self, terminalreporter: Any) -> None:
        """What this machine did not enforce while grading, for whoever runs the build (never in a test's report)."""
        from grader.sandbox import environment

        notices = environment.notices()
        if notices:
            terminalreporter.section("grader: notes for the operator")
            for notice in notices:
                terminalreporter.write_line(notice)


def _junit_xml(config: pytest.Config) -> Any:
    """pytest's JUnit writer of this run, or None (no ``--junitxml``, an xdist worker).

    The object the ``record_testsuite_property`` fixture writes to; items that are not
    test functions get no fixtures, so it is looked up the way that fixture does.
    """
    try:
        from _pytest.junitxml import xml_key
    except ImportError:  # a pytest that keeps it elsewhere: the properties are left out, nothing else
        return None
    return config.stash.get(xml_key, None)


def _testcase_properties_allowed(config: pytest.Config) -> bool:
    """Whether ``user_properties`` may be used: they become ``<properties>`` of ``<testcase>`` in the JUnit
    file, which xunit2 (pytest's default junit_family) forbids."""
    if not getattr(config.option, "xmlpath", None):
        return True
    try:
        return str(config.getini("junit_family")) != "xunit2"
    except ValueError:  # the junitxml plugin is disabled: no file is written
        return True


class NotebookFile(pytest.File):
    """One notebook: its items come from the rubric; the report is made once per process, on first use."""

    def __init__(self, *, grading: _GraderSession, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.grading = grading

    def collect(self) -> Iterator[pytest.Item]:
        yield GradingItem.from_parent(self, name=GRADING_ITEM)
        for check_id in self.grading.rubric.checks:
            yield CheckItem.from_parent(self, name=check_id)
        if self.grading.fail_under is not None:
            yield ScoreItem.from_parent(self, name=SCORE_ITEM)

    def report(self) -> Report | None:
        """The notebook's report; None when the grader itself failed."""
        return self.grading.report(_absolute(self.path))[0]

    def not_graded(self) -> str | None:
        """Why the notebook has no verdicts, or None when it was graded."""
        report, crash = self.grading.report(_absolute(self.path))
        if report is None:
            return f"the grader itself failed on {self.path}:\n{crash}"
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

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        #: (score, max_score) once the item ran; reported per item (``pytest_runtest_makereport``).
        self.points: tuple[float, float] | None = None

    def repr_failure(self, excinfo: pytest.ExceptionInfo[BaseException], style: Any = None) -> Any:
        if isinstance(excinfo.value, NotebookCheckFailed):
            return _FailureText(str(excinfo.value), self.path)
        return super().repr_failure(excinfo, style=style)

    def reportinfo(self) -> tuple[Path, int | None, str]:
        # The domain is the failure's title. It must not be the end of the node id: `pytest -v` would
        # turn the dots of such a domain into "::" and print an id that cannot be pasted back.
        return self.path, None, f"{self.name} ({self.parent.nodeid})"

    def _record(self, score: float, max_score: float) -> None:
        self.points = (score, max_score)
        if _testcase_properties_allowed(self.config):
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
        else:
            self._record(0.0, self.parent.grading.rubric.max_score)
        if reason is not None:
            raise NotebookCheckFailed(f"not graded: {reason}")


class CheckItem(_NotebookItem):
    """One rubric check: passes iff the check passed (an xfail instead of a failure under a pass mark)."""

    def runtest(self) -> None:
        weight = self.parent.grading.rubric.checks[self.name]
        reason = self.parent.not_graded()
        if reason is not None:
            self._record(0.0, weight.points)
            self._fail(f"not graded, so 0 of {weight.points:g} points: {reason}")
        report = self.parent.report()
        assert report is not None
        results = [check for check in report.checks if check.id == self.name]
        if not results:
            self._record(0.0, weight.points)
            self._fail(f"{self.name} did not run, so it scores 0 of {weight.points:g}.")
        first = results[0]  # scoring puts a check's points on its first result
        self._record(first.score, first.max_score)
        failed = [check for check in results if not _passed(check)]
        if failed:
            self._fail(_failure_text(failed[0], first, report))

    def _fail(self, text: str) -> NoReturn:
        """Fail with ``text``; under a pass mark an xfail instead (the score decides), whose one-line reason is
        the first line and the ids of the known mistakes (``--runxfail``: the failure, as for any xfail)."""
        if self.parent.grading.fail_under is not None and not self.config.getoption("runxfail", False):
            lines = text.splitlines()
            mistakes = [line.split(":")[0] for line in lines[1:] if line.startswith("known mistake ")]
            pytest.xfail("; ".join(lines[:1] + mistakes))
        raise NotebookCheckFailed(text)


class ScoreItem(_NotebookItem):
    """Only with a pass mark: fails when the notebook's score is under it, or when it has no score."""

    def runtest(self) -> None:
        from grader.render._common import percent, points

        mark = self.parent.grading.fail_under
        assert mark is not None
        reason = self.parent.not_graded()
        report = self.parent.report()
        if reason is not None or report is None:
            self._record(0.0, self.parent.grading.rubric.max_score)
            raise NotebookCheckFailed(f"not graded, so under the pass mark of {mark:g}%: {reason}")
        self._record(report.score, report.max_score)
        if under_pass_mark(report.score, report.max_score, mark):
            lines = [f"score {points(report.score)} / {points(report.max_score)} "
                     f"({percent(report.score, report.max_score)}) is under the pass mark of {mark:g}%"]
            lost = [check for check in report.checks if check.max_score > 0 and check.score < check.max_score]
            lines += [f"{check.id}: {points(check.score)} / {points(check.max_score)}" for check in lost]
            raise NotebookCheckFailed("\n".join(lines))


def under_pass_mark(score: float, max_score: float, mark: float) -> bool:
    """As ``grader check --fail-under``: under ``mark`` percent of the maximum (never with a maximum of 0)."""
    return max_score > 0 and 100.0 * score / max_score < mark


def _passed(check: CheckResult) -> bool:
    """Only a real boolean True passes (as in scoring): a truthy string from a broken check does not."""
    import numpy as np
    return isinstance(check.passed, (bool, np.bool_)) and bool(check.passed)


def _failure_text(check: CheckResult, scored: CheckResult, report: Report) -> str:
    """The check's message with its points on the first line (the one-line summary and JUnit message),
    then the whole message when it has more lines, then the named bugs of the check's function."""
    from grader.render._common import one_line, points

    message = check.message or "this check did not pass."
    lines = [f"{one_line(message)} ({points(scored.score)} / {points(scored.max_score)} points)"]
    if "\n" in message.strip():
        lines.append(message.strip())
    for diagnosis in report.diagnoses:
        if diagnosis.function == check.function:
            lines.append(f"known mistake {diagnosis.id}: {diagnosis.message}")
    return "\n".join(lines)
