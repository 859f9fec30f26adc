"""``grader grade --scheduler ADDRESS``: the same grading, on the workers of a Dask cluster.

Why Dask: universities already run clusters (Slurm, PBS, HTCondor, Kubernetes), and ``dask-jobqueue`` /
``dask-kubernetes`` start Dask workers on all of them; the grader needs no scheduler of its own.

What runs where:

* The client (this process) collects the class, reads each notebook and its companion modules
  (``NotebookRef.read``/``read_companions``: no shared file system is assumed), sends the *bytes* as a
  task's arguments, and writes each report the moment it arrives (``as_completed``), with the same
  ``Output`` and ``fingerprint`` as the local pool: the stored reports are the same whichever mode made
  them, so a re-run resumes across modes.
* Each worker process runs ``GraderPlugin`` (a Dask ``WorkerPlugin``): its ``setup`` does what a local pool
  process's initializer does (``grading.setup_worker_state``: the rubric, the fork server or a pre-started
  kernel), once per worker process; its ``teardown`` closes them. ``grade_task`` then grades with
  ``grading._grade_in_worker``, the one grading step of both paths: same sandbox, limits and reports.

Trust: the workers are the operator's machines; student code runs only inside the sandbox there. What
comes back is JSON *bytes* (``grade_task``'s result), which Dask sends as a raw frame (its "dask"
serializer for ``bytes``, no pickle) and the client parses and validates with ``json_report.from_dict``:
nothing a student could shape is unpickled here. What Dask itself pickles: the task (``grade_task`` by
reference and its arguments: source, notebook bytes, note, companion bytes), pickled by the client and
unpickled by the scheduler, which pickles it again for the worker; the plugin likewise (client →
scheduler → workers); an exception a task raised or a ``KilledWorker`` (pickled by a worker or the
scheduler, unpickled here). All of those pickles are made by the operator's own processes: see
docs/cluster.md.

Nothing lost: a worker that dies mid-submission makes the scheduler run that task on another worker;
one that dies a second time on the same task is, with ``distributed.scheduler.allowed-failures`` at 1
(``ALLOWED_FAILURES``), a ``KilledWorker`` here: an error row naming why, and the batch goes on.
"""
from __future__ import annotations

import asyncio
import json
import threading
import time
import uuid
import warnings
from collections import Counter
from typing import TYPE_CHECKING, Any

from grader.batch.collect import NotebookChanged, Submission
from grader.batch.grading import (
    GRADER_FAILED,
    IN_FLIGHT_PER_JOB,
    _close_worker_state,
    _grade_in_worker,
    feedback_files,
    report_of_result,
    setup_worker_state,
)
from grader.errors import GraderError
from grader.grade import companion_files, error_report
from grader.render import json_report
from grader.render.visibility import RELEASED_WHILE_OPEN
from grader.sandbox import environment

if TYPE_CHECKING:
    from distributed import Worker, WorkerPlugin

    from grader.batch.run import BatchOptions, Output, Progress
    from grader.model import Report
    from grader.rubric import Rubric
else:
    try:
        from distributed import WorkerPlugin
    except ImportError:  # Dask is optional: without it, ``Cluster.connect`` says how to install it
        WorkerPlugin = object

NEEDS_DASK = "--scheduler needs Dask: pip install 'numpy-nn-grader[dask]'."
UNREACHABLE = ("The Dask scheduler at {address} could not be reached within {timeout:g} s ({reason}); start it "
               "(`dask scheduler`) or correct --scheduler.")
#: The reasons of an error row (in ``grading.GRADER_FAILED`` / ``grading.WORKER_FAILED``), and the notices for the operator.
KILLED_WORKERS = "its grading process died on {count} Dask workers, the last {worker}"
LOST_TOO_OFTEN = "the Dask workers it was sent to died {count} times (the last {worker})"
TASK_FAILED = "a Dask worker failed it: {reason}"
NOT_SET_UP = ("the Dask worker that took it has no grader set up (it is not running the grader's worker plugin; "
              "restart the worker)")
OTHER_VERSION = ("this Dask worker has grader {worker}, the client {client}; install the client's version on "
                 "every worker")
NOTICE_ALLOWED_FAILURES = ("The Dask scheduler lets a submission kill {count} workers before it gives up on it "
                           "(distributed.scheduler.allowed-failures = {allowed}); start it with "
                           "DASK_DISTRIBUTED__SCHEDULER__ALLOWED_FAILURES=1 so that one killing two is an error row.")
WAITING_FOR_WORKERS = "grader: the Dask scheduler at {address} has no workers yet; waiting for some (`dask worker {address}`)."
#: Seconds to reach the scheduler before giving up (one sentence, exit 2).
CONNECT_TIMEOUT_S = 10.0
#: Worker deaths a submission may cause and still be retried: one retry elsewhere, then an error row.
ALLOWED_FAILURES = 1
#: Times a submission is sent at most: a dying worker takes the submissions waiting on it along, and the
#: scheduler gives up on those too after ``allowed-failures`` deaths; they are sent again, up to this.
MAX_SENDS = 4
#: Seconds to wait for the workers' teardown (their fork servers closing) when the run ends.
CLOSE_TIMEOUT_S = 10.0


def _grader_version() -> str:
    """The version a worker must share with the client: the stored reports' fingerprint includes it."""
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version("numpy-nn-grader")
    except PackageNotFoundError:
        from grader import __version__
        return __version__


# --- on the workers ------------------------------------------------------------------------------


class GraderPlugin(WorkerPlugin):
    """What a local pool process's initializer does, once per Dask worker process: load the rubric and
    start the fork server (or pre-start a kernel); ``teardown`` closes them when the run ends or the
    worker stops. Never raises: a failure is kept and each submission sent here becomes an error row
    naming it, as in a local pool.
    """

    def __init__(self, setup_args: tuple[Any, ...], version: str, group: str = "") -> None:
        self.setup_args = setup_args
        self.version = version
        #: The first element of this run's task keys, and the event topic the starts are logged under.
        self.group = group
        self.state: dict[str, Any] | None = None
        self.lock: threading.Lock | None = None
        self.worker: Worker | None = None

    def transition(self, key: Any, start: str, finish: str, **kwargs: Any) -> None:
        """Tell the client (through the scheduler's event log) which submission this worker starts: when a
        worker dies, the scheduler blames every task it held, and only the client can then tell the one
        that was running (which counts a death) from those merely waiting there (sent again)."""
        if finish == "executing" and self.worker is not None and isinstance(key, tuple) and key[:1] == (self.group,):
            self.worker.log_event(self.group, {"key": str(key)})

    def setup(self, worker: Worker) -> None:
        # One submission at a time per worker process (its fork server serves one): run workers with
        # --nthreads 1 and as many processes (--nworkers) as cores.
        self.lock = threading.Lock()
        self.worker = worker
        state: dict[str, Any] = {}
        ours = _grader_version()
        if ours != self.version:
            state["failure"] = OTHER_VERSION.format(worker=ours, client=self.version)
        else:
            try:
                from grader.sandbox.confine import confinement
                confinement().require()  # a root worker that cannot drop root grades nothing
            except GraderError as exc:
                state["failure"] = exc.message
            else:
                setup_worker_state(state, *self.setup_args)
        self.state = state

    def teardown(self, worker: Worker) -> None:
        if self.state is not None:
            _close_worker_state(self.state)

    def __getstate__(self) -> dict[str, Any]:
        # What crosses to the scheduler and the workers: the options, never a started fork server or a lock.
        return {"setup_args": self.setup_args, "version": self.version, "group": self.group, "state": None,
                "lock": None, "worker": None}


def plugin(options: BatchOptions, group: str) -> GraderPlugin:
    """The worker plugin for ``options``: what ``run._pool`` gives its processes' initializer."""
    return GraderPlugin((options.rubric, options.seed, options.limit_overrides, options.backend, options.names,
                         options.assignment, options.release), _grader_version(), group)


def grade_task(plugin_name: str, source: str, data: bytes, note: str, files: dict[str, bytes] | None) -> bytes:
    """One submission, on a worker: ``grading._grade_in_worker`` with this worker's plugin state.

    Returns JSON bytes, so that the client unpickles nothing a student could shape (see the module
    docstring). Never raises: whatever goes wrong is in the result, as with a local pool process.
    """
    from distributed import get_worker

    try:
        found = get_worker().plugins.get(plugin_name)
    except ValueError:  # not on a worker at all
        found = None
    if not isinstance(found, GraderPlugin) or found.state is None or found.lock is None:
        result: dict[str, Any] = {"failure": NOT_SET_UP, "notices": []}
    else:
        with found.lock:
            result = _grade_in_worker(source, data, note, files, found.state)
    try:
        return json.dumps(result, allow_nan=False, separators=(",", ":")).encode()
    except ValueError as exc:  # a non-finite number: a grader bug, this row only
        state = found.state if isinstance(found, GraderPlugin) and found.state else {}
        if "rubric" not in state:
            raise
        report = error_report(source, state["rubric"], GRADER_FAILED.format(reason=f"ValueError: {exc}"),
                              time.perf_counter())
        return json.dumps({"report": json_report.to_dict(report), "notices": [],
                           "files": feedback_files(report, state.get("release", RELEASED_WHILE_OPEN))}).encode()


def payload(submission: Submission) -> tuple[bytes, dict[str, bytes]]:
    """What a worker is sent for ``submission``: the notebook's bytes and its companion modules (the ``.py``
    files its cells may import), read here, as the local pool's process reads them. Always a dict of
    companions, so that a worker never looks for them on its own file system at the client's path.
    NotebookChanged when the notebook is not the one collected."""
    ref = submission.ref
    data = ref.read()
    return data, ref.read_companions() if ref.members else companion_files(ref.path)


async def _probe(address: str, timeout_s: float) -> None:
    """Open and close one connection to the scheduler, with the TLS settings of Dask's configuration
    (``distributed.comm.tls.*``) for a ``tls://`` address; raises as Dask's ``connect`` does."""
    from distributed import comm, security

    untyped: Any = comm, security  # unannotated in Dask
    opened = await untyped[0].connect(address, timeout=timeout_s,
                                      **untyped[1].Security().get_connection_args("client"))
    await opened.close()


def _allowed_failures(dask_scheduler: Any) -> int:
    """On the scheduler: how many worker deaths a task may cause before it is given up (``KilledWorker``)."""
    return int(dask_scheduler.allowed_failures)


# --- on the client ---------------------------------------------------------------------------------


class Cluster:
    """A connection to a Dask scheduler, and the grading loop that feeds its workers."""

    def __init__(self, client: Any, address: str) -> None:
        #: A ``distributed.Client``; typed ``Any`` because its methods carry no annotations (mypy --strict
        #: would reject every call), so what it returns is checked where it is used.
        self.client: Any = client
        self.address = address
        self.plugin_name: str | None = None

    @classmethod
    def connect(cls, address: str, timeout_s: float | None = None) -> Cluster:
        """Reach the scheduler, before any work: without Dask, or when it cannot be reached, one sentence."""
        timeout_s = CONNECT_TIMEOUT_S if timeout_s is None else timeout_s
        try:
            import distributed
        except ImportError:
            raise GraderError(NEEDS_DASK) from None
        api: Any = distributed  # its client API carries no annotations: what it returns is checked where used
        try:
            # A plain connection first: a Client that fails half-way through its constructor complains again
            # (a traceback, 20 s later) when it is collected.
            asyncio.run(_probe(address, timeout_s))
            client: Any = api.Client(address, timeout=timeout_s, set_as_default=False)
        except Exception as exc:  # noqa: BLE001 - OSError, TimeoutError, a malformed address: all one sentence
            reason = " ".join(str(exc).split()) or type(exc).__name__
            raise GraderError(UNREACHABLE.format(address=address, timeout=timeout_s,
                                                 reason=reason.rstrip("."))) from None
        return cls(client, address)

    def close(self) -> None:
        """Tear down this run's plugin (the workers' fork servers close) and disconnect."""
        try:
            if self.plugin_name is not None:
                self.client.unregister_worker_plugin(self.plugin_name)
        except Exception:  # noqa: BLE001 - a worker gone or a scheduler closing: its fork server went with it
            pass
        finally:
            self.plugin_name = None
            try:
                self.client.close(timeout=CLOSE_TIMEOUT_S)
            except Exception:  # noqa: BLE001 - nothing left to do about a connection that will not close
                pass

    def grade_all(self, todo: list[Submission], options: BatchOptions, out: Output, stamp: str, rubric: Rubric,
                  reports: dict[str, Report], meter: Progress, notices: dict[str, None] | None = None) -> None:
        """As ``run._grade_all``: keep the workers fed with a bounded window of submissions (read here, sent as
        bytes) and save each result as it arrives. Ctrl-C cancels what is in flight and propagates.

        A worker that dies makes the scheduler send what it held elsewhere, and, once a task was on
        ``allowed-failures + 1`` dead workers, give up on it (``KilledWorker``). The scheduler blames every
        task the dead worker held, running or waiting; the workers log each start (``GraderPlugin.transition``),
        so here a submission that was *running* on two dead workers becomes an error row, and one that was
        only waiting is sent again (at most ``MAX_SENDS`` times in all).
        """
        import distributed

        api: Any = distributed  # as in ``connect``
        if not todo:
            return
        notices = {} if notices is None else notices
        # A name of its own per run: two runs on one cluster each keep their own rubric and fork servers. The
        # task keys are (group, n, id): one task group, which the scheduler queues instead of piling every task
        # on the workers at once (so a dying worker takes few waiting submissions with it).
        group = f"grader-{stamp[:12]}-{uuid.uuid4().hex[:8]}"
        self.plugin_name = group
        starts: Counter[str] = Counter()  # task key -> how many times a worker started it
        starts_lock = threading.Lock()  # the client's event loop thread counts, this one reads

        def started(event: Any) -> None:
            with starts_lock:
                starts[str(event[1].get("key"))] += 1

        self.client.subscribe_topic(group, started)
        self.client.register_plugin(plugin(options, group), name=group)
        self._check_allowed_failures(notices, meter)
        slots = sum(self.client.nthreads().values())
        if not slots:
            meter.note(WAITING_FOR_WORKERS.format(address=self.address))
        window = max(2, IN_FLIGHT_PER_JOB * slots)
        queue = list(reversed(todo))
        pending: dict[Any, Submission] = {}  # distributed.Future: untyped, like the client
        payloads: dict[str, tuple[bytes, dict[str, bytes]]] = {}  # kept for a submission sent again
        deaths: Counter[str] = Counter()  # submission id -> workers that died while it ran
        sends: Counter[str] = Counter()
        arrived: Any = api.as_completed(loop=self.client.loop)
        numbers = iter(range(1 << 62))

        def record(submission: Submission, report: Report, files: dict[str, str] | None = None,
                   document: dict[str, Any] | None = None) -> None:
            payloads.pop(submission.id, None)
            out.save(submission.id, submission.student, submission.source, submission.sha256, stamp, report,
                     files, document)
            reports[submission.id] = report
            meter.advance(submission.id)

        def submit(submission: Submission, data: bytes, files: dict[str, bytes]) -> None:
            sends[submission.id] += 1
            with warnings.catch_warnings():  # a 50 MB notebook is a "large graph": expected, not news
                warnings.simplefilter("ignore", UserWarning)
                future = self.client.submit(grade_task, group, submission.source, data, submission.note, files,
                                            key=(group, next(numbers), submission.id), pure=False, retries=1)
            pending[future] = submission
            arrived.add(future)

        def send() -> None:
            while queue and len(pending) < window:
                submission = queue.pop()
                try:
                    data, files = payload(submission)
                except NotebookChanged as exc:  # replaced or removed since it was collected: this row only
                    record(submission, error_report(submission.source, rubric, exc.message, time.perf_counter()))
                    continue
                payloads[submission.id] = (data, files)
                submit(submission, data, files)

        try:
            send()
            while pending:
                future = next(arrived)
                submission = pending.pop(future)
                killed = self._killed(future)
                if killed is not None:
                    with starts_lock:
                        deaths[submission.id] += starts.pop(str(future.key), 0)
                    if deaths[submission.id] < 2 and sends[submission.id] < MAX_SENDS:
                        future.release()
                        submit(submission, *payloads[submission.id])  # it was waiting there: not its fault
                        continue
                    reason = (KILLED_WORKERS.format(count=deaths[submission.id], worker=killed)
                              if deaths[submission.id] >= 2 else
                              LOST_TOO_OFTEN.format(count=sends[submission.id], worker=killed))
                    report, files, document = error_report(submission.source, rubric, GRADER_FAILED.format(
                        reason=reason), time.perf_counter()), None, None
                else:
                    report, files, document = self._result(future, submission, rubric, notices, meter)
                with starts_lock:
                    starts.pop(str(future.key), None)
                future.release()
                record(submission, report, files, document)
                send()
        except KeyboardInterrupt:
            try:
                self.client.cancel(list(pending))
            except Exception:  # noqa: BLE001 - the scheduler drops a closed client's futures anyway
                pass
            raise
        finally:
            try:
                self.client.unsubscribe_topic(group)
            except Exception:  # noqa: BLE001 - a closing client has no subscriptions left
                pass

    @staticmethod
    def _killed(future: Any) -> str | None:
        """The address of the last worker that died running ``future``'s task when the scheduler gave up on it
        (``KilledWorker``); None for every other outcome."""
        from distributed import KilledWorker

        if future.status != "error":
            return None
        try:
            failure = future.exception()
        except Exception:  # noqa: BLE001 - cancelled: ``_result`` says so
            return None
        if not isinstance(failure, KilledWorker):
            return None
        return str(getattr(failure.last_worker, "address", failure.last_worker))

    def _result(self, future: Any, submission: Submission, rubric: Rubric, notices: dict[str, None],
                meter: Progress) -> tuple[Report, dict[str, str] | None, dict[str, Any] | None]:
        """A finished task's report; an error row when the task failed."""
        if future.status == "finished":
            try:
                result = json.loads(future.result())
            except Exception as exc:  # noqa: BLE001 - a malformed result costs this row only
                return error_report(submission.source, rubric, GRADER_FAILED.format(
                    reason=f"{type(exc).__name__}: {exc}"), time.perf_counter()), None, None
            return report_of_result(result, submission, rubric, notices, meter)
        failure: BaseException
        try:
            failure = future.exception()
        except Exception as raised:  # noqa: BLE001 - cancelled by the scheduler (a lost client, a restart)
            failure = raised
        reason = TASK_FAILED.format(reason=f"{type(failure).__name__}: {failure}".rstrip("."))
        return error_report(submission.source, rubric, GRADER_FAILED.format(reason=reason),
                            time.perf_counter()), None, None

    def _check_allowed_failures(self, notices: dict[str, None], meter: Progress) -> None:
        """An operator notice when the scheduler lets a submission kill more than two workers."""
        try:
            allowed = int(self.client.run_on_scheduler(_allowed_failures))
        except Exception:  # noqa: BLE001 - a scheduler that runs no client functions: the docs say how to set it
            return
        if allowed > ALLOWED_FAILURES:
            notice = NOTICE_ALLOWED_FAILURES.format(count=allowed + 1, allowed=allowed)
            if notice not in notices:
                notices[notice] = None
                meter.note(environment.stderr_line(notice))
