"""The grading step of a batch, wherever it runs: a local pool process or a Dask worker.

Both start the same per-process state once (``setup_worker_state``: the rubric, the fork server or a
pre-started kernel), grade a submission with the same function (``grade_in_worker``: the same sandbox,
limits and reports, feedback rendered there, in parallel) and send back plain data, which the main process
validates with ``report_of_result`` before it writes anything. ``grader.batch.run`` drives a local pool
with them, ``grader.batch.cluster`` a Dask cluster.
"""
from __future__ import annotations

import atexit
import dataclasses
import time
from collections.abc import Iterable
from typing import TYPE_CHECKING, Any, Protocol

from grader.batch.collect import NotebookChanged, NotebookRef, Submission
from grader.grade import Options, error_report, grade_notebook
from grader.model import Report
from grader.render import RENDERERS, json_report
from grader.render.visibility import RELEASED_WHILE_OPEN, student_view
from grader.rubric import Rubric, load_rubric
from grader.sandbox import environment
from grader.template import opening_cells

if TYPE_CHECKING:
    from grader.sandbox.forkserver import ForkServer
    from grader.sandbox.kernel import KernelSandbox
    from grader.sandbox.limits import Limits


class Noting(Protocol):
    """Where an operator notice is printed (the batch's ``Progress``)."""

    def note(self, line: str) -> None: ...


GRADER_FAILED = ("The grader itself failed on this submission ({reason}); the rest of the class was graded. "
                 "Re-run with --force to retry it, and report it if it happens again.")
WORKER_FAILED = ("This submission was not graded because its grading process could not start ({reason}); "
                 "run `grader doctor`, fix what it reports and run the same command again.")
NOTICE_NO_FORK_SERVER = ("A grading process could not start its fork server ({reason}), so its submissions were "
                         "each run in a freshly started sandbox, which is slower.")
#: Submissions in flight per pool process: enough to keep it busy, few enough to bound memory.
IN_FLIGHT_PER_JOB = 4


# --- in the pool processes -----------------------------------------------------------

_worker_state: dict[str, Any] = {}


def _init_worker(rubric_ref: str | None, seed: int, overrides: tuple[tuple[str, float], ...],
                 backend: str = "subprocess", names: tuple[str, ...] = (), assignment: str | None = None,
                 release: frozenset[str] = RELEASED_WHILE_OPEN) -> None:
    """A pool process's initializer: Ctrl-C is left to the main process, then ``setup_worker_state``."""
    import signal

    signal.signal(signal.SIGINT, signal.SIG_IGN)  # Ctrl-C is the main process's to handle
    atexit.register(_close_worker_state)  # a pool process ends normally when the pool shuts down
    setup_worker_state(_worker_state, rubric_ref, seed, overrides, backend, names, assignment, release)


def setup_worker_state(state: dict[str, Any], rubric_ref: str | None, seed: int,
                       overrides: tuple[tuple[str, float], ...], backend: str = "subprocess",
                       names: tuple[str, ...] = (), assignment: str | None = None,
                       release: frozenset[str] = RELEASED_WHILE_OPEN) -> None:
    """Load the rubric and start this process's fork server (or first kernel) once, not per submission.

    Shared by the local pool (``_init_worker``) and a Dask worker (``grader.batch.cluster``), so both
    grade with the same sandbox, limits and reports. Never raises: an initializer that raises breaks
    the whole pool, and every submission would then fail with nothing but "the pool broke". A failure
    is kept in ``state`` instead, and each submission sent here comes back as that failure (an error
    row naming it); a fork server that cannot start only costs speed.
    """
    try:
        rubric = load_rubric(rubric_ref, assignment)
        limits = rubric.limits.merged(dict(overrides), "the command line")
        names = names or rubric.assignment.names
    except Exception as exc:  # noqa: BLE001 - an initializer that raises breaks the pool: kept, reported per row
        state["failure"] = _reason(exc)
        return
    state["rubric"] = rubric
    state["names"] = names
    state["release"] = release
    state["options"] = Options(seed=seed, limits=limits, backend=backend)
    if backend == "kernel":
        state["server"] = None
        state["next_kernel"] = _prestart_kernel(limits)
    else:
        try:
            state["server"] = _fork_server(rubric, limits, names)
        except Exception as exc:  # noqa: BLE001 - each submission then starts its own sandbox, which reports its own trouble
            state["server"] = None
            environment.note(NOTICE_NO_FORK_SERVER.format(reason=_reason(exc).rstrip(".")))


def _limits(options: Options) -> Limits:
    """The limits ``_init_worker`` gave this process's options (always set there)."""
    assert options.limits is not None
    return options.limits


def _reason(exc: BaseException) -> str:
    """An exception in words: a grader error's own sentence, otherwise its type and message."""
    from grader.errors import GraderError

    return exc.message if isinstance(exc, GraderError) else f"{type(exc).__name__}: {exc}"


def _fork_server(rubric: Rubric, limits: Limits, names: tuple[str, ...]) -> ForkServer:
    """This process's fork server, primed with the template's opening cells (up to the first that defines
    one of the graded functions ``names``) when the rubric names a template."""
    from grader.sandbox.forkserver import ForkServer

    return ForkServer(opening_cells(rubric, names), limits.cell_timeout_s)


def _close_worker_state(state: dict[str, Any] | None = None) -> None:
    """Stop this process's fork server (and a kernel started ahead), removing their working directories."""
    state = _worker_state if state is None else state
    for key in ("server", "next_kernel"):
        resource = state.pop(key, None)
        if resource is not None:
            try:
                resource.close()
            except Exception:  # noqa: BLE001 - already gone: nothing left to clean
                pass


def _prestart_kernel(limits: Limits | None) -> KernelSandbox | None:
    """A kernel sandbox booting in the background while the current submission is graded."""
    from grader.errors import GraderError
    from grader.sandbox.kernel import KernelSandbox

    try:
        return KernelSandbox(limits)
    except GraderError:
        return None


def _grade_in_worker(source: str, data: bytes | NotebookRef, note: str = "",
                     files: dict[str, bytes] | None = None, state: dict[str, Any] | None = None) -> dict[str, Any]:
    """Grade one submission and render its feedback here, in parallel; plain data crosses back.

    The one grading step of both paths: a local pool process sends ``data`` as a ``NotebookRef``
    (read here, now), a Dask worker as the bytes the client read, with their companion modules
    ``files``. ``state`` is what ``setup_worker_state`` made (default: this pool process's).
    Besides the report: ``notices``, what this process learned about the machine since its last
    answer (for the operator, never in the report), and instead of a report ``failure`` when this
    process could not start (see ``setup_worker_state``).
    """
    state = _worker_state if state is None else state
    if "failure" in state:
        return {"failure": state["failure"], "notices": _new_notices(state)}
    rubric: Rubric = state["rubric"]
    options: Options = state["options"]
    server = state.get("server")
    started = time.perf_counter()
    if server is not None and not server.alive:
        try:
            server = state["server"] = _fork_server(rubric, _limits(options), state["names"])
        except Exception as exc:  # noqa: BLE001 - as in setup_worker_state: a fresh sandbox per submission instead
            server = state["server"] = None
            environment.note(NOTICE_NO_FORK_SERVER.format(reason=_reason(exc).rstrip(".")))
    prestarted = None
    if options.backend == "kernel":
        prestarted = state.pop("next_kernel", None)
        state["next_kernel"] = _prestart_kernel(options.limits)
    try:
        if isinstance(data, NotebookRef):  # a batch sends where the notebook is: read it here, now
            files = data.read_companions() if data.members else None
            data = data.read()
        report = grade_notebook(source, rubric, dataclasses.replace(options, server=server, prestarted=prestarted),
                                data=data, files=files)
        if note:  # which of the submission's notebooks was graded, and why
            report.warnings.append(note)
    except NotebookChanged as exc:  # replaced or removed since it was collected: this row only
        report = error_report(source, rubric, exc.message, started)
    except Exception as exc:  # noqa: BLE001 - a grader bug must cost one row, never the batch
        report = error_report(source, rubric, GRADER_FAILED.format(reason=f"{type(exc).__name__}: {exc}"), started)
    return {"report": json_report.to_dict(report),
            "files": feedback_files(report, state.get("release", RELEASED_WHILE_OPEN)),
            "notices": _new_notices(state)}


def _new_notices(state: dict[str, Any] | None = None) -> list[str]:
    """The operator notices of this process not yet sent to the main process (each crosses once)."""
    state = _worker_state if state is None else state
    sent: set[str] = state.setdefault("notices_sent", set())
    fresh = [notice for notice in environment.notices() if notice not in sent]
    sent.update(fresh)
    return fresh


def feedback_files(report: Report, release: Iterable[str] = RELEASED_WHILE_OPEN) -> dict[str, str]:
    """The per-student files besides the JSON report, by kind: the feedback pages a student reads show the
    released checks only (``student_view``); Gradescope's results carry every check with its visibility,
    which Gradescope itself honours."""
    shown = student_view(report, release)
    return {"md": RENDERERS["md"].render(shown), "html": RENDERERS["html"].render(shown),
            "gradescope": RENDERERS["gradescope"].render(report)}


def report_of_result(result: Any, submission: Submission, rubric: Rubric, notices: dict[str, None],
                     meter: Noting) -> tuple[Report, dict[str, str] | None, dict[str, Any] | None]:
    """The report, feedback files and report document a grading process sent back (``_grade_in_worker``'s
    dict), validated here: anything malformed costs this row only. Its operator notices are taken too.

    Shared by the local pool and the Dask path, which parses the worker's JSON into this same dict."""
    if not isinstance(result, dict):
        return error_report(submission.source, rubric, GRADER_FAILED.format(
            reason=f"a result of type {type(result).__name__}"), time.perf_counter()), None, None
    _take_notices(result, notices, meter)
    if "failure" in result:
        return error_report(submission.source, rubric, WORKER_FAILED.format(
            reason=str(result["failure"]).rstrip(".")), time.perf_counter()), None, None
    try:
        document, files = result["report"], result["files"]
        report = json_report.from_dict(document)
        if not isinstance(files, dict) or not all(isinstance(files.get(kind), str)
                                                  for kind in ("md", "html", "gradescope")):
            raise TypeError("feedback files missing")
    except Exception as exc:  # noqa: BLE001 - a malformed result costs this row only
        return error_report(submission.source, rubric, GRADER_FAILED.format(
            reason=f"{type(exc).__name__}: {exc}"), time.perf_counter()), None, None
    return report, files, document


def _take_notices(result: dict[str, Any], notices: dict[str, None], meter: Noting) -> None:
    """Add a pool result's operator notices to the run's; print each new one once, on stderr."""
    listed = result.get("notices")
    for notice in listed if isinstance(listed, list) else ():
        notice = str(notice)
        if notice not in notices:
            notices[notice] = None
            meter.note(environment.stderr_line(notice))
