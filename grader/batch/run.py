"""``grader grade``: a whole class, in parallel, resumable, losing nothing.

collect (``collect.py``) → grade in a pool of processes, each with its own fork
server (``forkserver.py``) → write each submission's files atomically as it
finishes → gradebook, summaries, JUnit from every report, old and new.

Nothing lost:
* a report is written (``grader.files.write_atomic``: temp file, ``os.replace``) the moment its grading ends,
  so killing the batch keeps everything finished so far;
* a re-run with the same ``--out`` reuses a stored report whose notebook hash
  and grading fingerprint (rubric file, seed, limits, grader version) are
  unchanged, so an interrupted batch finishes where it stopped; ``--force``
  regrades everything;
* a submission that breaks the grader itself, or kills a pool process, becomes
  a row with status "error" and the batch goes on.

With ``--scheduler ADDRESS`` (``BatchOptions.scheduler``) the same submissions are graded on a Dask
cluster's workers instead of a local pool (``grader.batch.cluster``), by the same ``setup_worker_state``
and ``_grade_in_worker``, into the same ``Output``: the reports do not depend on where they were made.

What the class files say besides the grades: every file of the inputs that was not graded and why
(``collect.Skipped``: printed as one line on stderr, listed in ``summary.json``/``summary.html``),
the submissions an interrupted run did not reach (likewise), and, with ``--lms``, the import file of
each LMS asked for (``grader.integrations.lms``), written with the other class files.
"""
from __future__ import annotations

import concurrent.futures as futures
import dataclasses
import datetime
import hashlib
import json
import multiprocessing
import sys
import threading
import time
from collections import Counter
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, TextIO

from grader.batch.collect import Collection, Submission, collect
from grader.batch.grading import (
    GRADER_FAILED,
    IN_FLIGHT_PER_JOB,
    _grade_in_worker,
    _init_worker,
    _take_notices,
    feedback_files,
    report_of_result,
)
from grader.batch.grading import WORKER_FAILED as WORKER_FAILED  # the messages of a batch's rows, for its callers
from grader.batch.grading import _worker_state as _worker_state  # a pool process's state (tests set it up)
from grader.batch.summary import GradebookRow, NotGraded, render_summary_html, summarize, write_gradebook
from grader.files import write_atomic
from grader.grade import Options as Options  # what a pool process grades with (tests build its state)
from grader.grade import error_report
from grader.integrations.lms import IMPORT_FILES, LMS_NAMES, GradeRow, LmsAssignment, render_import
from grader.model import Report
from grader.render import file_name, json_report, junit
from grader.render.visibility import RELEASED_WHILE_OPEN
from grader.rubric import Rubric, load_rubric
from grader.template import opening_cells

if TYPE_CHECKING:
    pass

POOL_LOST = ("This submission was not graded because the grading processes kept dying before they could grade "
             "anything; run `grader doctor`, fix what it reports and run the same command again.")
NOTICE_POOL_LOST = ("{pools} pools of grading processes in a row died before grading anything ({reason}), so the "
                    "{count} submissions left were not graded; run `grader doctor` to see why.")
#: Pools that may break in a row, with nothing graded in between, before the rest become error rows.
#: Three, not two: a submission that kills its grading process breaks two pools (it is retried once).
MAX_FRUITLESS_POOLS = 3
#: The class-wide files of ``--out``, and the file naming what they were made from.
CLASS_FILES = ("gradebook.csv", "summary.json", "summary.html", file_name("junit", "junit"))
CLASS_STAMP_FILE = ".class-files-stamp"
#: The files not graded named on stderr before "and N more" (all are in summary.json and summary.html).
MAX_NOT_GRADED_SHOWN = 3
NOT_GRADED_LINE = ("grader: {count} found {were} not graded: {shown}{more}; "
                   "summary.json and summary.html list each one with the reason.")
UNGRADED_LINE = ("grader: {count} {are} still ungraded ({shown}{more}); "
                 "summary.json and summary.html list them; run the same command again to grade them.")


@dataclass(frozen=True)
class BatchOptions:
    out: Path
    jobs: int = 1
    force: bool = False
    seed: int = 0
    rubric: str | None = None
    #: Limit overrides from the command line, as ``Limits.merged`` takes them.
    limit_overrides: tuple[tuple[str, float], ...] = ()
    backend: str = "subprocess"
    #: The assignment's graded functions, in its order (``assignment.names``): they choose the notebook
    #: of a submission that holds several (``collect``) and end the template's opening (``template``).
    names: tuple[str, ...] = ()
    #: ``--assignment``: a bundled assignment's name or an assignment folder (None: the rubric's own).
    assignment: str | None = None
    #: ``--lms``: the LMSs whose grade import file to write too (``grader.integrations.lms.LMS_NAMES``).
    lms: tuple[str, ...] = ()
    #: The LMS assignment's name in those files (default: the one the export names, else the rubric's title)
    #: and its id (Canvas's assignment id, Blackboard's column id), which the LMS matches on when given.
    lms_assignment: str = ""
    lms_assignment_id: str = ""
    #: ``--release``: the check visibilities the students' feedback pages show (``grader.render.visibility``);
    #: the gradebook, the stored reports and Gradescope's results always hold every check.
    release: frozenset[str] = RELEASED_WHILE_OPEN
    #: ``--scheduler``: the address of a Dask scheduler whose workers grade (``grader.batch.cluster``);
    #: None grades in a local pool of ``jobs`` processes.
    scheduler: str | None = None


@dataclass
class BatchResult:
    rows: list[GradebookRow]
    graded: int
    reused: int
    errors: int
    seconds: float
    interrupted: bool = False
    #: What the grading machine did not enforce (printed once on stderr, in summary.json/html), never in a report.
    notices: tuple[str, ...] = ()
    #: Every file of the inputs that was not graded, and why.
    not_graded: tuple[NotGraded, ...] = ()
    #: The sources of the submissions an interrupted run did not reach.
    ungraded: tuple[str, ...] = ()


# --- in the main process ------------------------------------------------------------------


def _assignment_digest(rubric: Rubric) -> str:
    """The assignment's code (its reference, probes and mutants decide every verdict): an edit regrades."""
    folder = Path(rubric.assignment.path)
    digest = hashlib.sha256(rubric.assignment.name.encode())
    if folder.is_dir():
        for path in sorted(folder.rglob("*.py")):
            digest.update(path.relative_to(folder).as_posix().encode() + b"\0" + path.read_bytes())
    return digest.hexdigest()


def fingerprint(rubric: Rubric, seed: int, overrides: Iterable[tuple[str, float]], backend: str = "subprocess",
                release: Iterable[str] = RELEASED_WHILE_OPEN) -> str:
    """What a stored report and its feedback depend on besides the notebook: rubric file, seed, limits, backend,
    grader version, the assignment's code and the checks released to students."""
    from importlib.metadata import PackageNotFoundError, version

    try:
        grader_version = version("numpy-nn-grader")
    except PackageNotFoundError:
        from grader import __version__ as grader_version
    text = Path(rubric.path).read_bytes() if rubric.path and Path(rubric.path).is_file() else rubric.name.encode()
    parts = [hashlib.sha256(text).hexdigest(), str(seed), repr(sorted(overrides)), grader_version, backend,
             _assignment_digest(rubric), *([] if set(release) == set(RELEASED_WHILE_OPEN) else sorted(release))]
    return hashlib.sha256("\n".join(parts).encode()).hexdigest()[:32]


class Output:
    """The layout of ``--out``; every file of one submission is named by its stable id."""

    def __init__(self, root: Path, release: Iterable[str] = RELEASED_WHILE_OPEN) -> None:
        self.root = root
        #: The check visibilities the feedback pages show (``BatchOptions.release``).
        self.release = frozenset(release)

    def report(self, sid: str) -> Path:
        return self.root / "reports" / file_name(sid, "json")

    def stored(self, submission: Submission, stamp: str) -> Report | None:
        """The stored report, if it was made from the same notebook bytes and the same grading setup."""
        try:
            document = json.loads(self.report(submission.id).read_text(encoding="utf-8"))
        except (OSError, ValueError):
            return None
        batch = document.get("batch") if isinstance(document, dict) else None
        if not isinstance(batch, dict) or batch.get("sha256") != submission.sha256 or batch.get("fingerprint") != stamp:
            return None
        try:
            return json_report.from_dict(document)
        except (KeyError, TypeError, ValueError):
            return None

    def save(self, sid: str, student: str, source: str, sha256: str, stamp: str, report: Report,
             files: dict[str, str] | None = None, document: dict[str, Any] | None = None) -> None:
        """Write the report last: its presence is what marks the submission as done.

        ``document`` is the report as a dict when a pool process already made it."""
        document = dict(document) if document is not None else json_report.to_dict(report)
        files = files or feedback_files(report, self.release)
        write_atomic(self.root / "feedback" / file_name(sid, "md"), files["md"], durable=False)
        write_atomic(self.root / "feedback" / file_name(sid, "html"), files["html"], durable=False)
        write_atomic(self.root / "results" / sid / file_name("results", "gradescope"), files["gradescope"],
                     durable=False)
        document["batch"] = {"id": sid, "student": student, "source": source, "sha256": sha256, "fingerprint": stamp}
        # Compact: with an indent, json encodes in pure Python, 2 ms a report (the loss curves are
        # 400 numbers); people read the feedback pages, and any JSON viewer indents these.
        write_atomic(self.report(sid), json.dumps(document, allow_nan=False, separators=(",", ":")) + "\n",
                     durable=False)

    def class_files_current(self, class_stamp: str, lms: Iterable[str] = ()) -> bool:
        """Whether the class-wide files (and the import files of the LMSs ``lms``) exist and were made from
        exactly this class and setup."""
        try:
            made_from = (self.root / CLASS_STAMP_FILE).read_text(encoding="utf-8").strip()
        except OSError:
            return False
        names = [*CLASS_FILES, *(IMPORT_FILES[name] for name in lms)]
        return made_from == class_stamp and all((self.root / name).is_file() for name in names)

    def previous_notices(self) -> list[str]:
        """The operator notices of the last summary: they describe how the reports reused from it were graded."""
        try:
            document = json.loads((self.root / "summary.json").read_text(encoding="utf-8"))
        except (OSError, ValueError):
            return []
        listed = document.get("operator_notices") if isinstance(document, dict) else None
        return [str(notice) for notice in listed] if isinstance(listed, list) else []

    def finish(self, rows: list[GradebookRow], class_stamp: str = "", notices: Iterable[str] = (),
               not_graded: Iterable[NotGraded] = (), ungraded: Iterable[GradebookRow] = (),
               imports: dict[str, LmsAssignment] | None = None) -> None:
        """The class-wide files; the stamp goes last, so an interrupted finish is redone next time.

        ``notices``: the operator notices of the run, ``not_graded``: the files not graded, ``ungraded``:
        the submissions an interrupted run did not reach, for ``summary.json`` and ``summary.html``.
        ``imports``: the LMSs whose import file to write, each with the assignment it grades; an import
        file of an LMS not asked for this time is removed, so no file with grades older than the gradebook
        is left to upload."""
        try:
            (self.root / CLASS_STAMP_FILE).unlink()
        except FileNotFoundError:
            pass
        write_gradebook(rows, self.root / "gradebook.csv")
        summary = summarize(rows, notices, not_graded, ungraded)
        write_atomic(self.root / "summary.json", json.dumps(summary, indent=1, allow_nan=False) + "\n")
        write_atomic(self.root / "summary.html",
                      render_summary_html(summary, rows, link=lambda row: f"feedback/{file_name(row.id, 'html')}"))
        write_atomic(self.root / file_name("junit", "junit"), junit.render_many([row.report for row in rows]))
        self.write_imports(rows, imports or {})
        if class_stamp:
            write_atomic(self.root / CLASS_STAMP_FILE, class_stamp + "\n")

    def write_imports(self, rows: list[GradebookRow], imports: dict[str, LmsAssignment]) -> None:
        """The grade import file of each LMS in ``imports`` (shared like the gradebook: 0644); the others
        removed. An LMS's file holds its own submissions and the plain files (matched by name), never
        another LMS's: their ids mean nothing to it."""
        graded_at = datetime.datetime.now()  # local time: Moodle reads it back in its server's time zone
        for name in LMS_NAMES:
            target = self.root / IMPORT_FILES[name]
            if name in imports:
                grades = [GradeRow(row.student, row.identity,
                                   row.report.score if row.report.status != "error" else None, row.report.max_score)
                          for row in rows if row.lms in ("", name)]
                write_atomic(target, render_import(name, grades, imports[name], graded_at), mode=0o644)
            else:
                try:
                    target.unlink()
                except FileNotFoundError:
                    pass


class Progress:
    """A bar on a terminal (tqdm), otherwise a plain line every few seconds, both on stderr."""

    def __init__(self, total: int, stream: TextIO | None = None, interval_s: float = 5.0) -> None:
        self.total, self.done, self.stream = total, 0, stream or sys.stderr
        self.interval_s, self._last = interval_s, time.monotonic()
        self._bar: Any = None
        if self.stream.isatty():
            from tqdm import tqdm
            self._bar = tqdm(total=total, unit="nb", file=self.stream, dynamic_ncols=True)

    def advance(self, what: str) -> None:
        self.done += 1
        if self._bar is not None:
            self._bar.update(1)
            self._bar.set_postfix_str(what[-40:], refresh=False)
        elif time.monotonic() - self._last >= self.interval_s or self.done == self.total:
            self._last = time.monotonic()
            print(f"grader: {self.done}/{self.total} submissions done", file=self.stream, flush=True)

    def note(self, line: str) -> None:
        """Print a line for the operator without breaking the bar."""
        if self._bar is not None:
            self._bar.write(line, file=self.stream)
        else:
            print(line, file=self.stream, flush=True)

    def close(self) -> None:
        if self._bar is not None:
            self._bar.close()


def _pool(options: BatchOptions) -> futures.ProcessPoolExecutor:
    context = multiprocessing.get_context("spawn")  # no copy of this process's threads or state
    return futures.ProcessPoolExecutor(max_workers=options.jobs, mp_context=context, initializer=_init_worker,
                                       initargs=(options.rubric, options.seed, options.limit_overrides,
                                                 options.backend, options.names, options.assignment, options.release))


def _plan(paths: list[str], options: BatchOptions, rubric: Rubric
          ) -> tuple[Collection, Output, str, dict[str, Report], list[Submission]]:
    """Collect the class and split it into the reports stored and current (reused) and the submissions to grade."""
    # Holds references, not notebooks: each is read when it is graded (by the process grading it, or,
    # with --scheduler, by this one just before it is sent).
    collection: Collection = collect(paths, rubric.template, options.names)
    stamp = fingerprint(rubric, options.seed, options.limit_overrides, options.backend, options.release)
    out = Output(options.out, options.release)
    options.out.mkdir(parents=True, exist_ok=True)
    reports: dict[str, Report] = {}
    todo: list[Submission] = []
    for submission in collection.submissions:
        stored = None if options.force else out.stored(submission, stamp)
        if stored is not None:
            reports[submission.id] = stored
        else:
            todo.append(submission)
    return collection, out, stamp, reports, todo


def run_batch(paths: list[str], options: BatchOptions, progress: Callable[[int], Progress] | None = None) -> BatchResult:
    """Grade every submission under ``paths`` into ``options.out``; see the module docstring."""
    started = time.perf_counter()
    rubric = load_rubric(options.rubric, options.assignment)
    if not options.names:
        options = dataclasses.replace(options, names=rubric.assignment.names)
    rubric.limits.merged(dict(options.limit_overrides), "the command line")  # fail before any work
    opening_cells(rubric, options.names)  # a template that cannot be read is the course's mistake: say so before any work
    cluster = None
    if options.scheduler is None:
        from grader.sandbox.confine import confinement
        confinement().require()  # a root grader that cannot drop root stops here, before any student code
    else:  # student code runs on the workers (each checks its own confinement): reach the scheduler first
        from grader.batch.cluster import Cluster
        cluster = Cluster.connect(options.scheduler)
    try:
        collection, out, stamp, reports, todo = _plan(paths, options, rubric)
    except BaseException:
        if cluster is not None:
            cluster.close()
        raise
    reused = len(reports)
    if todo:
        # The class summary's charts need matplotlib, a few hundred ms to import: do it while the
        # pool grades (this thread mostly waits), not after the last submission.
        threading.Thread(target=_import_chart_libraries, daemon=True).start()
    meter = (progress or (lambda n: Progress(n)))(len(todo))
    interrupted = False
    # The reused reports were graded under the previous run's conditions: its notices still apply to them.
    notices: dict[str, None] = dict.fromkeys(out.previous_notices() if reused else [])
    seen: dict[str, None] = {}
    try:
        if cluster is None:
            _grade_all(todo, options, out, stamp, rubric, reports, meter, seen)
        else:
            cluster.grade_all(todo, options, out, stamp, rubric, reports, meter, seen)
    except KeyboardInterrupt:
        interrupted = True
    finally:
        meter.close()
        if cluster is not None:
            cluster.close()

    rows = [_row(s, reports[s.id]) for s in collection.submissions
            if s.id in reports]  # one missing was interrupted before it was graded: the next run picks it up
    ungraded = [_row(s, error_report(s.source, rubric, "", started)) for s in collection.submissions
                if s.id not in reports]
    not_graded = tuple(NotGraded(skipped.source, skipped.reason) for skipped in collection.skipped)
    imports = {name: _lms_assignment(name, options, rubric, collection) for name in options.lms}
    class_stamp = _class_stamp(stamp, collection, imports)
    unchanged = not todo and not interrupted and out.class_files_current(class_stamp, imports)
    for problem in collection.problems:
        report = error_report(problem.source, rubric, problem.message, time.perf_counter())
        # A whole submission that could not be graded (several notebooks, none chosen) keeps its id and student.
        row = GradebookRow(problem.source, problem.student, report, problem.id or _problem_id(problem.source),
                           problem.lms, problem.identity)
        if not unchanged:
            out.save(row.id, problem.student, problem.source, "", stamp, report)
        rows.append(row)
    notices.update(seen)
    if not unchanged:  # a re-run over an unchanged class rewrites nothing
        out.finish(rows, class_stamp, notices, not_graded, ungraded, imports)
    _tell_what_was_not_graded(meter.stream, not_graded, [row.submission for row in ungraded])
    errors = sum(row.report.status != "graded" for row in rows)
    return BatchResult(rows, len(rows) - reused - len(collection.problems), reused, errors,
                       time.perf_counter() - started, interrupted, tuple(notices), not_graded,
                       tuple(row.submission for row in ungraded))


def _row(submission: Submission, report: Report) -> GradebookRow:
    """A graded (or, for ``ungraded``, not yet graded) submission's gradebook row, with its LMS identity."""
    lms = "" if submission.lms == "plain" else submission.lms
    return GradebookRow(submission.source, submission.student, report, submission.id, lms, submission.identity)


def _lms_assignment(lms: str, options: BatchOptions, rubric: Rubric, collection: Collection) -> LmsAssignment:
    """The assignment ``lms``'s import file grades: the name given, else the one that LMS's export names
    most (Blackboard's file names carry it), else the rubric's title; its points are the rubric's maximum."""
    named = Counter(s.identity.assignment for s in collection.submissions if s.lms == lms and s.identity.assignment)
    name = options.lms_assignment or (named.most_common(1)[0][0] if named else "") or rubric.title or rubric.name
    return LmsAssignment(name, rubric.max_score, options.lms_assignment_id)


def _counted(count: int, noun: str) -> str:
    """``1 file``, ``3 files``."""
    return f"{count} {noun}" if count == 1 else f"{count} {noun}s"


def _tell_what_was_not_graded(stream: TextIO, not_graded: tuple[NotGraded, ...], ungraded: list[str]) -> None:
    """One line each on stderr: the files found but not graded, and the submissions still ungraded."""
    def more(count: int) -> str:
        return f" and {count - MAX_NOT_GRADED_SHOWN} more" if count > MAX_NOT_GRADED_SHOWN else ""

    if not_graded:
        shown = "; ".join(f"{item.path} ({item.reason})" for item in not_graded[:MAX_NOT_GRADED_SHOWN])
        count = len(not_graded)
        print(NOT_GRADED_LINE.format(count=_counted(count, "file"), were="was" if count == 1 else "were", shown=shown,
                                     more=more(count)),
              file=stream, flush=True)
    if ungraded:
        print(UNGRADED_LINE.format(count=_counted(len(ungraded), "submission"), are="is" if len(ungraded) == 1 else "are",
                                   shown=", ".join(ungraded[:MAX_NOT_GRADED_SHOWN]),
                                   more=more(len(ungraded))), file=stream, flush=True)


def _class_stamp(stamp: str, collection: Collection, imports: dict[str, LmsAssignment] | None = None) -> str:
    """What the class-wide files are made from: the grading fingerprint, and every submission's id,
    student, identity, source and content hash, every input that could not be read, every file not
    graded, and the LMS files asked for."""
    digest = hashlib.sha256(stamp.encode())
    for submission in collection.submissions:
        digest.update(f"\0{submission.id}\0{submission.student}\0{submission.source}\0{submission.sha256}"
                      f"\0{submission.identity!r}".encode("utf-8", "surrogatepass"))
    for problem in collection.problems:
        digest.update(f"\1{problem.source}\0{problem.message}\0{problem.identity!r}".encode("utf-8", "surrogatepass"))
    for skipped in collection.skipped:
        digest.update(f"\2{skipped.source}\0{skipped.reason}".encode("utf-8", "surrogatepass"))
    digest.update(f"\3{sorted((imports or {}).items())!r}".encode("utf-8", "surrogatepass"))
    return digest.hexdigest()[:32]


def _import_chart_libraries() -> None:
    try:
        import matplotlib.backends.backend_agg
        import matplotlib.figure  # noqa: F401
    except Exception:  # noqa: BLE001 - the summary reports the problem itself when it draws
        pass


def _problem_id(source: str) -> str:
    return "unreadable-" + hashlib.sha256(source.encode("utf-8", "surrogatepass")).hexdigest()[:12]


def _grade_all(todo: list[Submission], options: BatchOptions, out: Output, stamp: str, rubric: Rubric,
               reports: dict[str, Report], meter: Progress, notices: dict[str, None] | None = None) -> None:
    """Keep the pool fed with a bounded window of submissions; save each result as it arrives.

    A pool that breaks (one of its processes died) is replaced and what was in flight
    is tried once more. After ``MAX_FRUITLESS_POOLS`` pools in a row broke with
    nothing graded, no new pool is started: every submission left becomes an error
    row, so a machine where grading processes cannot live still ends the run with
    its gradebook, never in a hang or an endless round of new pools. ``notices``
    collects the pool's operator notices; each new one is printed once, via ``meter``.
    """
    if not todo:
        return
    notices = {} if notices is None else notices
    queue = list(reversed(todo))
    attempts: dict[str, int] = {}
    pool = _pool(options)
    pending: dict[futures.Future[dict[str, Any]], Submission] = {}
    fruitless, cause = 0, ""
    interrupted = False

    def record(submission: Submission, report: Report, files: dict[str, str] | None = None,
               document: dict[str, Any] | None = None) -> None:
        out.save(submission.id, submission.student, submission.source, submission.sha256, stamp, report,
                 files, document)
        reports[submission.id] = report
        meter.advance(submission.id)

    try:
        while queue or pending:
            broken = False
            while queue and len(pending) < options.jobs * IN_FLIGHT_PER_JOB:
                submission = queue.pop()
                try:
                    # Where the notebook is, not its bytes: the pool process reads it (one at a time).
                    future = pool.submit(_grade_in_worker, submission.source, submission.ref, submission.note)
                except (futures.process.BrokenProcessPool, RuntimeError) as exc:  # broke between two results
                    queue.append(submission)
                    broken, cause = True, str(exc)
                    break
                attempts[submission.id] = attempts.get(submission.id, 0) + 1
                pending[future] = submission
            done = futures.wait(pending, return_when=futures.FIRST_COMPLETED)[0] if pending else set()
            for future in done:
                submission = pending.pop(future)
                files = document = None
                try:
                    result = future.result()
                except futures.process.BrokenProcessPool as exc:
                    # Every submission in flight fails with the pool, and which one broke it is
                    # unknown: each gets one more try in a fresh pool before it becomes an error row.
                    broken, cause = True, str(exc)
                    if attempts[submission.id] < 2:
                        queue.append(submission)
                        continue
                    report = error_report(submission.source, rubric, GRADER_FAILED.format(
                        reason="its grading process died twice"), time.perf_counter())
                except Exception as exc:  # noqa: BLE001 - whatever the pool raised costs this row only
                    report = error_report(submission.source, rubric, GRADER_FAILED.format(
                        reason=f"{type(exc).__name__}: {exc}"), time.perf_counter())
                else:
                    if "failure" not in result:
                        fruitless = 0
                    report, files, document = report_of_result(result, submission, rubric, notices, meter)
                record(submission, report, files, document)
            if broken:
                queue.extend(pending.values())
                pending.clear()
                pool.shutdown(wait=False, cancel_futures=True)
                fruitless += 1
                if fruitless >= MAX_FRUITLESS_POOLS:
                    _take_notices({"notices": [NOTICE_POOL_LOST.format(
                        pools=fruitless, reason=cause.rstrip(".") or "no reason given", count=len(queue))]},
                        notices, meter)
                    while queue:
                        submission = queue.pop()
                        record(submission, error_report(submission.source, rubric, POOL_LOST, time.perf_counter()))
                    break
                pool = _pool(options)
    except KeyboardInterrupt:
        interrupted = True
        raise
    finally:
        pool.shutdown(wait=not interrupted, cancel_futures=True)
