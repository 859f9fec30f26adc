"""The execute stage: run a notebook's code in a separate, limited process and call its functions.

One sandbox class, ``ProcessSandbox``, whatever the backend: a *launcher* (``launch.Launcher``)
starts its worker (a fresh confined Python, a fork of the fork server, a confined ipykernel, or
a worker already running in a student's kernel), and the sandbox talks to it over a dedicated
pipe pair (``protocol``); the student's own stdout and stderr go to a third pipe that is drained
into a bounded excerpt and never parsed. When the worker dies or hangs, it is killed (its whole
process group), restarted, and the cells that ran cleanly before are replayed, so one bad call
costs that call only. ``SubprocessSandbox``, ``kernel.KernelSandbox`` and ``AttachedSandbox``
are the sandbox with each backend's launcher.
"""
from __future__ import annotations

import secrets
import shutil
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Literal, NamedTuple, Protocol, Self, TypeVar

import numpy as np

from grader import notices
from grader.errors import SandboxError
from grader.model import CellRun, FunctionInfo
from grader.sandbox import protocol
from grader.sandbox.confine import confinement
from grader.sandbox.launch import (
    CHANNEL_FAILURES,
    AttachedLauncher,
    CellStop,
    FreshLauncher,
    Launcher,
    StopKind,
    Worker,
    sandbox_workdir,
    stop_kind,
)
from grader.sandbox.limits import Limits
from grader.untrusted_text import safe_lines, safe_text

if TYPE_CHECKING:
    from grader.load import Cell
    from grader.sandbox.forkserver import ForkServer

CallStatus = Literal["ok", "raised", "timeout", "crashed", "missing", "protocol"]

#: Extra wall time the watchdog allows beyond a limit before it kills the sandbox:
#: the in-process alarm should have fired by then; if not, the code ignores signals.
WATCHDOG_GRACE_S = 0.5
#: The worker sends batched replies at least this often (``CallReplies.FLUSH_S`` in the worker).
BATCH_FLUSH_S = 0.2
MAX_RESTARTS = 4



@dataclass(frozen=True)
class CallRequest:
    function: str
    args: tuple[Any, ...]
    #: Ask for the arguments' state after the call (to see in-place updates); costs a round of encoding.
    args_after: bool = True


@dataclass
class CallOutcome:
    """What one call of a student function did, as reported by the sandbox (untrusted data)."""

    status: CallStatus
    value: Any = None
    error: str | None = None
    args_after: tuple[Any, ...] | None = None

    @property
    def ok(self) -> bool:
        return self.status == "ok"


def parse_outcome(header: dict[str, Any], blobs: list[bytes], batched: bool = False) -> CallOutcome:
    """One call's reply (a ``result`` message, or one reply of a batched ``results``) as a CallOutcome."""
    if not batched and header.get("op") != "result":
        raise protocol.WireError("unexpected message")
    status = header.get("status")
    if status == "ok":
        value = protocol.decode_value(header.get("value"), blobs)
        after = header.get("args_after")
        args_after = tuple(protocol.decode_value(a, blobs) for a in after) if isinstance(after, list) else None
        return CallOutcome("ok", value=value, args_after=args_after)
    if status in ("raised", "timeout", "missing"):
        error = header.get("error")
        return CallOutcome(status, error=safe_lines(error, limit=300) if error else None)
    raise protocol.WireError("unknown call status")


class LoopStep(NamedTuple):
    """One call of a training loop's iteration, as the sandbox runs it: ``function`` takes ``parameters``
    from the loop's state by name; what it returns binds ``result`` (one name: the whole value; several:
    the elements of a returned tuple or list), and its ``in_place`` arguments are taken back after it ran."""

    function: str
    parameters: tuple[str, ...]
    result: tuple[str, ...] = ()
    in_place: tuple[str, ...] = ()

    @property
    def bound(self) -> tuple[str, ...]:
        """Every name the call binds: its results, then its in-place arguments."""
        return (*self.result, *self.in_place)


_T = TypeVar("_T")

#: The shape a bound name's value must have (``protocol.shaped_value``): () a number, a tuple an array, None any.
Shape = tuple[int, ...] | None


def _step_json(step: LoopStep) -> dict[str, Any]:
    return {"function": step.function, "parameters": list(step.parameters), "result": list(step.result),
            "in_place": list(step.in_place)}


def _shapes_json(shapes: Mapping[str, Shape]) -> dict[str, list[int] | None]:
    return {name: None if shape is None else [int(n) for n in shape] for name, shape in shapes.items()}


@dataclass
class Chain:
    """What the sandbox says its run of a training loop did (untrusted: the grader audits it).

    ``outputs[k][name][i]`` is what step k bound to ``name`` at iteration i (numbers as a 1-d
    float64 array, arrays stacked), for the ``counts[k]`` iterations step k completed. ``stop_*``
    name the iteration and the step whose call ended the chain early, with that call's outcome;
    all None when every iteration ran.
    """

    outputs: list[dict[str, np.ndarray]]
    counts: list[int]
    stop_iteration: int | None = None
    stop_step: int | None = None
    stop_function: str | None = None
    stop_outcome: CallOutcome | None = None

    @property
    def done(self) -> int:
        """Iterations completed: every step ran."""
        return min(self.counts) if self.counts else 0

    @classmethod
    def from_reply(cls, header: dict[str, Any], blobs: list[bytes], steps: Sequence[LoopStep] = ()) -> Chain | None:
        """The chain a ``trained`` reply describes for ``steps``; None when the sandbox says it has none to give
        (past its budget, too large): WireError when the reply is malformed or contradicts itself."""
        status = header.get("status")
        if status == "unavailable":
            return None
        descs, counts = header.get("outputs"), header.get("counts")
        if (status != "ok" or not steps or not isinstance(descs, list) or len(descs) != len(steps)
                or not isinstance(counts, list) or len(counts) != len(steps)
                or not all(type(count) is int and count >= 0 for count in counts)):
            raise protocol.WireError("malformed training chain")
        outputs: list[dict[str, np.ndarray]] = []
        for step, desc, count in zip(steps, descs, counts, strict=True):
            if not isinstance(desc, dict) or set(desc) != set(step.bound):
                raise protocol.WireError("malformed training chain")
            values: dict[str, np.ndarray] = {}
            for name in step.bound:
                value = protocol.decode_value(desc[name], blobs)
                if not isinstance(value, np.ndarray) or value.ndim < 1 or value.dtype != np.float64:
                    raise protocol.WireError("malformed training chain")
                if len(value) != count:
                    raise protocol.WireError("inconsistent training chain")
                values[name] = value
            outputs.append(values)
        stop = header.get("stop")
        if stop is None:
            if len(set(counts)) != 1:
                raise protocol.WireError("inconsistent training chain")
            return cls(outputs, counts)
        if (not isinstance(stop, dict) or type(stop.get("iteration")) is not int or type(stop.get("step")) is not int
                or not 0 <= stop["step"] < len(steps) or not isinstance(stop.get("reply"), dict)):
            raise protocol.WireError("malformed training stop")
        iteration, index = stop["iteration"], stop["step"]
        if any(count != iteration + (k < index) for k, count in enumerate(counts)):
            raise protocol.WireError("inconsistent training chain")
        outcome = parse_outcome({"op": "result", **stop["reply"]}, blobs)
        return cls(outputs, counts, iteration, index, steps[index].function, outcome)


@dataclass
class Execution:
    cells: list[CellRun] = field(default_factory=list)
    functions: dict[str, FunctionInfo] = field(default_factory=dict)
    warnings: list[str] = field(default_factory=list)


class Sandbox(Protocol):
    """What every execution backend offers the probe stage."""

    name: str

    def run_notebook(self, cells: Sequence[Cell]) -> Execution: ...

    def call_many(self, requests: Sequence[CallRequest]) -> list[CallOutcome]: ...

    def output_excerpt(self) -> str: ...

    def close(self) -> None: ...


class ProcessSandbox:
    """A sandbox whose worker ``launcher`` starts: the one sandbox class, whatever the backend.

    Everything but starting and stopping a worker is here, and the same for every backend: the
    notebook's cells, calls, training chains, restarts and replays. The launcher says how a worker
    starts (``Launcher.launch``), what to release when one stops and when the sandbox closes, and,
    for a kernel, how cells run (``Launcher.cells``). The sandbox owns its launcher: ``close``
    closes it, as does a failure to set the sandbox up.
    """

    def __init__(self, launcher: Launcher, limits: Limits | None = None, graded: tuple[str, ...] = ()) -> None:
        self.launcher = launcher
        #: The backend's name, as the report gives it.
        self.name = launcher.name
        self.limits = limits or Limits()
        #: The names of the functions the assignment grades: the worker reports on these after the cells.
        self.graded: tuple[str, ...] = tuple(graded)
        #: ``.py`` files submitted beside the notebook, by name: written into the working directory before
        #: the cells run (``companion_files``), as Jupyter would find them.
        self.files: dict[str, bytes] = {}
        #: Live stand-ins' values by name, while ``substitute_live`` is in force.
        self._live: dict[str, Callable[[np.ndarray], Any]] = {}
        self._replayable: list[Cell] = []
        self._functions: dict[str, FunctionInfo] = self._parse_functions({})
        self._excerpts: list[str] = []
        self._restarts = 0
        #: Functions that hung or killed the sandbox once, with the outcome every later call gets.
        self._broken: dict[str, CallOutcome] = {}
        #: Replies to a batch of calls come several per message, until a batch fails unclearly.
        self._batched_replies = True
        #: What the notebook did to the grader's channel (for an integrity diagnosis), in words.
        self.tampering: list[str] = []
        #: What the worker's audit hook noticed (untrusted, only ever used to flag for review).
        self.seen: list[str] = []
        self._process: Worker | None = None
        self._ready = False
        workdir = None
        try:
            self.confinement = confinement()
            # What this machine cannot enforce is the operator's to know (stderr, summary), never a student's report.
            notices.note(*self.confinement.notices)
            if launcher.starts_processes:
                self.confinement.require()
            self.workdir = workdir = sandbox_workdir(self.confinement, "grader-sandbox-")
            self._started = time.monotonic()
            if launcher.starts_early:
                self._spawn()  # a fresh Python takes a while to start: let it, while the notebook loads
        except BaseException:
            # Nothing to close() later: what was made goes now.
            if workdir is not None:
                shutil.rmtree(workdir, ignore_errors=True)
            launcher.close()
            raise
        # A launcher that starts late (a fork is quick, and which server to fork from depends on the cells)
        # starts its first worker in run_notebook.

    # --- lifecycle ------------------------------------------------------------

    def _start(self, first_cells: Sequence[Cell] | None = None) -> None:
        self._spawn(first_cells)
        self._await_ready()

    def _spawn(self, first_cells: Sequence[Cell] | None = None) -> None:
        """Start the worker without waiting, so its start-up overlaps the grader's own work.

        ``first_cells``: the cells its first execution begins with, when known (a fork server
        may then start it from a process that has already run the template's opening cells)."""
        sources = None if first_cells is None else [cell.source for cell in first_cells]
        self._process = self.launcher.launch(self, sources)
        self._ready = False

    def _await_ready(self) -> None:
        if self._process is None:
            self._spawn()
        assert self._process is not None
        if self._ready:
            return
        runner = self.launcher.cells
        if runner is not None:
            runner.connect(self, self._process)
        else:
            self._await_worker(self._process)
        self._ready = True

    @staticmethod
    def _await_worker(process: Worker) -> None:
        """Wait for the worker's first message, "ready"; SandboxError when it does not come."""
        try:
            header, _ = process.receive(time.monotonic() + 60)
        except CHANNEL_FAILURES:
            process.kill(died=True)
            reason = process.drain.excerpt().strip().splitlines()[-1:] or ["no output"]
            raise SandboxError.from_start_failure(reason[0]) from None
        if header.get("op") != "ready":
            raise SandboxError.from_start_failure("unexpected first message")

    def _may_restart(self) -> bool:
        """A worker the grader did not start is never restarted; any other at most MAX_RESTARTS times."""
        return self.launcher.starts_processes and self._restarts < MAX_RESTARTS

    def _retire(self, stop: StopKind = "timeout") -> str:
        """Kill the current process and keep its output; return how it ended, in words."""
        process = self._process
        assert process is not None
        process.kill(died=stop != "timeout")
        how = process.exit_description()
        self._excerpts.append(process.drain.excerpt())
        if stop == "protocol":
            self.tampering.append("the notebook wrote to the grader's private channel or broke its protocol")
            reason = process.wire_error  # set by Worker.receive (the grader's words)
            how = "stopped: it broke the grader's protocol" + (f" ({reason})" if reason else "")
        self.launcher.stopped()
        return how

    def close(self) -> None:
        if self._process is not None:
            self._retire()
            self._process = None
        shutil.rmtree(self.workdir, ignore_errors=True)
        self.launcher.close()

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def output_excerpt(self) -> str:
        runner = self.launcher.cells
        parts = [runner.output_excerpt(self) if runner is not None else "", *self._excerpts]
        if self._process is not None:
            parts.append(self._process.drain.excerpt())
        # Each process's excerpt is already bounded; restarts are bounded by MAX_RESTARTS.
        return "\n".join(p for p in parts if p)

    def total_deadline(self) -> float:
        """When this submission's total time is up (``time.monotonic``)."""
        return self._started + self.limits.total_timeout_s

    def _request(self, header: dict[str, Any], blobs: list[bytes] | None = None) -> str:
        """Send a request tagged with a fresh token that every reply to it must echo."""
        assert self._process is not None
        token = secrets.token_hex(8)
        limit = max(self.limits.call_timeout_s, self.limits.cell_timeout_s)
        # A worker that stopped reading must not hang the grader in this write: bounded as its reply is.
        self._process.send({**header, "token": token}, blobs,
                           min(time.monotonic() + limit + WATCHDOG_GRACE_S, self.total_deadline()))
        return token

    def _reply(self, token: str, deadline: float) -> tuple[dict[str, Any], list[bytes]]:
        assert self._process is not None
        header, blobs = self._process.receive(deadline)
        while header.get("op") == "helper" and self._live:  # a live stand-in asks for a value mid-call
            self._answer_helper(header, blobs, deadline)
            header, blobs = self._process.receive(deadline)
        if header.get("token") != token:
            raise protocol.WireError("a reply without the request's token")
        if "seen" in header and header.get("op") != "exec_done":
            self._take_seen(header.get("seen"))
        return header, blobs

    # --- notebook ---------------------------------------------------------------

    def run_notebook(self, cells: Sequence[Cell]) -> Execution:
        cells = list(cells)
        if self._process is None and not self.launcher.starts_early:
            self._spawn(cells)
        self._await_ready()
        execution = Execution()
        runs = self._exec(cells, execution.warnings)
        execution.cells = runs
        self._replayable = [c for c, r in zip(cells, runs, strict=True) if r.status in ("ok", "error")]
        self._hand_over()
        execution.functions = self._functions
        return execution

    def _exec(self, cells: list[Cell], warnings: list[str]) -> list[CellRun]:
        """Run ``cells`` in order; a cell that kills or hangs the process is skipped after a restart."""
        runs: dict[int, CellRun] = {}
        if not cells:  # still ask what is defined (a kernel must start serving; a self-check has no cells)
            stop = self._exec_once([], runs, warnings)
            if stop is not None:
                self._retire(stop[1])
                self._process = None
            return []
        pending = list(cells)
        while pending:
            stop = self._exec_once(pending, runs, warnings)
            if stop is None:
                break
            culprit, kind = stop
            bad = pending[culprit]
            how = self._retire(kind)
            runs[bad.index] = CellRun(bad.index, "timeout" if kind == "timeout" else "crashed",
                                      f"this cell stopped the sandbox: {how}")
            pending = pending[culprit + 1:]
            if not self._may_restart():
                self._process = None
                break
            self._restarts += 1
            replay = [c for c in cells if c.index in runs and runs[c.index].status in ("ok", "error")]
            self._start(replay)
            if replay:
                stop = self._exec_once(replay, {}, None)
                if stop is not None:
                    self._retire(stop[1])
                    self._process = None
                    break
        return [runs.get(c.index, CellRun(c.index, "skipped", "not run: the sandbox had stopped")) for c in cells]

    def _exec_once(self, cells: list[Cell], runs: dict[int, CellRun], warnings: list[str] | None) -> CellStop | None:
        """Run ``cells`` in the live process; None when all ran, else (position of the cell that stopped it, why).
        The worker runs them, unless the backend has its own way (a kernel's nbclient)."""
        assert self._process is not None
        runner = self.launcher.cells
        if runner is not None:
            return runner.run(self, self._process, cells, runs)
        return self._exec_in_worker(cells, runs, warnings)

    def _exec_in_worker(self, cells: list[Cell], runs: dict[int, CellRun],
                        warnings: list[str] | None) -> CellStop | None:
        """``_exec_once`` by the worker: one "exec" request, a reply per cell, then what is defined."""
        assert self._process is not None
        limit = self.limits.cell_timeout_s
        position = 0
        try:
            # Sources travel as blobs, not in the JSON header: a cell of any size a notebook can have
            # fits the sandbox's limits (protocol.FROM_GRADER), and it is not escaped and parsed as JSON.
            # "surrogatepass": a lone surrogate in a source reaches the cell as it was in the notebook.
            sources = [c.source.encode("utf-8", "surrogatepass") for c in cells]
            files = [{"name": name, "blob": len(sources) + i} for i, name in enumerate(self.files)]
            token = self._request({"op": "exec", "cell_timeout": limit, "output_limit": self.limits.output_kb * 1024,
                                   "functions": list(self.graded), "files": files,
                                   "cells": [{"index": c.index, "blob": i} for i, c in enumerate(cells)]},
                                  sources + list(self.files.values()))
            for position, cell in enumerate(cells):  # noqa: B007 - the handler below names the cell that stopped it
                deadline = min(time.monotonic() + limit + WATCHDOG_GRACE_S, self.total_deadline())
                header, _ = self._reply(token, deadline)
                if header.get("op") != "cell" or header.get("index") != cell.index:
                    raise protocol.WireError("out-of-order cell report")
                status = header.get("status")
                error = header.get("error")
                runs[cell.index] = CellRun(cell.index, status if status in ("ok", "error", "timeout") else "error",
                                           safe_lines(error, limit=300) if error else None)
                refused = header.get("refused")
                if warnings is not None and isinstance(refused, list):
                    warnings.extend(f"Cell {cell.index + 1}: shell command not run while grading: {safe_text(c, limit=120)}"
                                    for c in refused[:10])
            position = len(cells) - 1
            self._await_exec_done(token)
            return None
        except CHANNEL_FAILURES as error:
            return position, stop_kind(error)

    def _hand_over(self) -> None:
        """After a backend ran the cells itself (a kernel), its worker takes the process over and says, as
        any worker does after its cells, what is defined; a process that cannot is retired."""
        if self.launcher.cells is None or self._process is None:
            return
        try:
            self.launcher.cells.serve(self, self._process)
        except CHANNEL_FAILURES as error:
            stop: CellStop | None = (-1, stop_kind(error))
        else:
            stop = self._exec_in_worker([], {}, None)
        if stop is not None:
            self._retire(stop[1])
            self._process = None

    def _await_exec_done(self, token: str) -> None:
        header, _ = self._reply(token, min(time.monotonic() + 30, self.total_deadline()))
        if header.get("op") != "exec_done":
            raise protocol.WireError("missing end of execution")
        self._take_exec_done(header)

    def _take_exec_done(self, header: dict[str, Any]) -> None:
        """What the worker says is defined after the cells, and what its audit hook noticed."""
        self._functions = self._parse_functions(header.get("functions"))
        self._take_signatures(header.get("signatures"))
        self._take_seen(header.get("seen"))

    def _take_signatures(self, data: Any) -> None:
        """The graded functions' parameter names (untrusted and bounded: only ever words in a message)."""
        if not isinstance(data, dict):
            return
        for name, info in self._functions.items():
            entries = data.get(name)
            if not info.found or not isinstance(entries, list):
                continue
            pairs = [e for e in entries[:16] if isinstance(e, list) and len(e) == 2 and all(isinstance(v, str) for v in e)]
            positional = ("POSITIONAL_ONLY", "POSITIONAL_OR_KEYWORD")
            info.parameters = tuple(safe_text(n, limit=40) for n, kind in pairs if kind in positional)
            info.variadic = any(kind == "VAR_POSITIONAL" for _, kind in pairs)

    def _take_seen(self, seen: Any) -> None:
        """Add the audit hook's notes (untrusted, bounded, only ever used to flag for review)."""
        if isinstance(seen, list):
            self.seen.extend(note for note in (safe_text(item, limit=200) for item in seen[:20])
                             if note not in self.seen and len(self.seen) < 40)

    def _parse_functions(self, data: Any) -> dict[str, FunctionInfo]:
        data = data if isinstance(data, dict) else {}
        kinds = ("function", "lambda", "builtin", "other callable")
        result = {}
        for name in self.graded:
            kind = data.get(name)
            kind = kind if kind in kinds else None
            result[name] = FunctionInfo(name=name, found=kind is not None, kind=kind)
        return result

    # --- calls --------------------------------------------------------------------

    def call_many(self, requests: Sequence[CallRequest]) -> list[CallOutcome]:
        """Answer ``requests`` in order. A function that once hung or killed the sandbox is not called again:
        its later calls fail at once with the same reason, so a hung submission costs one limit, not one per probe."""
        outcomes: list[CallOutcome] = []
        remaining = list(requests)
        while remaining:
            broken = self._broken.get(remaining[0].function)
            if broken is not None:
                outcomes.append(broken)
                remaining = remaining[1:]
                continue
            if time.monotonic() >= self.total_deadline():
                outcomes += [CallOutcome("timeout", error="total time limit for this submission")] * len(remaining)
                break
            if self._process is None:
                outcomes += [CallOutcome("crashed", error="the sandbox could not be restarted")] * len(remaining)
                break
            batch = [remaining[0]]
            for request in remaining[1:]:
                if request.function in self._broken:
                    break
                batch.append(request)
            answered = self._call_batch(batch, outcomes)
            remaining = remaining[answered:]
        return outcomes

    def _call_batch(self, requests: list[CallRequest], outcomes: list[CallOutcome]) -> int:
        """Send ``requests``; append outcomes as they arrive; return how many were answered.

        Replies come a few per message (``batched``, see ``CallReplies`` in the worker) until a
        batch ends in a way that leaves unclear which call caused it (the sandbox died, or went
        silent without saying a call was overdue): then the unanswered calls are sent again, from
        then on one reply per message, which pins the failure on the right call.
        """
        assert self._process is not None
        blobs: list[bytes] = []
        calls = [{"fn": r.function, "args": [protocol.encode_value(a, blobs) for a in r.args], "args_after": r.args_after}
                 for r in requests]
        limit = self.limits.call_timeout_s
        batched = self._batched_replies
        answered = 0
        overdue = False
        stop: StopKind
        try:
            token = self._request({"op": "call", "call_timeout": limit, "calls": calls, "batched": batched}, blobs)
            while answered < len(requests):
                # Batched, a message may wait for a call that started just before a send was due.
                wait = WATCHDOG_GRACE_S if overdue else limit + WATCHDOG_GRACE_S + (BATCH_FLUSH_S if batched else 0)
                header, reply_blobs = self._reply(token, min(time.monotonic() + wait, self.total_deadline()))
                if batched:
                    replies, overdue = self._parse_batch(header, len(requests) - answered)
                else:
                    replies = [header]
                for reply in replies:
                    outcome = parse_outcome(reply, reply_blobs, batched)
                    outcomes.append(outcome)
                    if outcome.status == "timeout":
                        self._broken[requests[answered].function] = outcome
                    answered += 1
            return answered
        except CHANNEL_FAILURES as error:
            stop = stop_kind(error)
        how = self._retire(stop)
        if batched and not overdue:
            self._batched_replies = False  # which call failed is unknown: ask again, a reply per message
            self._restart_and_replay()
            return answered
        if stop == "timeout":
            outcome = CallOutcome("timeout", error="time limit (the code did not stop when asked)")
        else:
            outcome = CallOutcome("crashed", error=f"the sandbox was {how}")
        outcomes.append(outcome)
        self._broken[requests[answered].function] = outcome
        self._restart_and_replay()
        return answered + 1

    @staticmethod
    def _parse_batch(header: dict[str, Any], expected: int) -> tuple[list[dict[str, Any]], bool]:
        """A batched message's replies (no more than the calls still unanswered) and its overdue mark."""
        replies, overdue = header.get("replies"), header.get("overdue")
        if (header.get("op") != "results" or not isinstance(replies, list) or len(replies) > expected
                or not isinstance(overdue, bool) or not all(isinstance(r, dict) for r in replies)):
            raise protocol.WireError("unexpected message")
        return replies, overdue

    def train(self, steps: Sequence[LoopStep], start: Mapping[str, Any], shapes: Mapping[str, Shape],
              iterations: int) -> Chain | None:
        """Run a training loop inside the sandbox in one request; None when the caller should go call by call.

        From the ``start`` state, ``iterations`` times the ``steps``; ``shapes`` gives the shape every
        name a step binds must have. None covers every irregular case (a time budget used up, a chain
        too large to send, a crash, a malformed answer): the call-by-call path then reproduces it with
        its usual per-call handling.
        """
        steps = tuple(steps)
        if self._process is None or not steps or any(step.function in self._broken for step in steps):
            return None
        blobs: list[bytes] = []
        header = {"op": "train", "steps": [_step_json(step) for step in steps],
                  "start": {name: protocol.encode_value(value, blobs) for name, value in start.items()},
                  "shapes": _shapes_json(shapes), "iterations": iterations}
        return self._chain_request(header, blobs, "trained",
                                   lambda reply, reply_blobs: Chain.from_reply(reply, reply_blobs, steps))

    def _chain_request(self, header: dict[str, Any], blobs: list[bytes], answer: str,
                       read: Callable[[dict[str, Any], list[bytes]], _T]) -> _T | None:
        """One request that runs many calls inside the sandbox within one call-time budget (the training
        chain, its replay), answered by one ``answer`` message that ``read`` turns into a result.

        None when anything goes wrong (past the budget, a dead sandbox, a malformed answer): the sandbox
        is then retired and restarted, and the caller goes call by call, which reports the failure precisely.
        """
        budget = self.limits.call_timeout_s
        try:
            token = self._request({**header, "call_timeout": self.limits.call_timeout_s, "budget": budget}, blobs)
            deadline = min(time.monotonic() + budget + self.limits.call_timeout_s + WATCHDOG_GRACE_S,
                           self.total_deadline())
            reply, reply_blobs = self._reply(token, deadline)
            if reply.get("op") != answer:
                raise protocol.WireError("unexpected message")
            return read(reply, reply_blobs)
        except CHANNEL_FAILURES as error:
            stop: StopKind = stop_kind(error)
        self._retire(stop)
        self._restart_and_replay()
        return None

    def replay(self, step: LoopStep, fixed: Mapping[str, Any], stacked: Mapping[str, np.ndarray], count: int,
               shapes: Mapping[str, Shape]) -> dict[str, np.ndarray] | None:
        """``step`` called at each of ``count`` iterations of a training chain, independently, in one request.

        Call i takes ``fixed`` arguments (the same for every call) and row i of the ``stacked`` ones.
        The answer is what the calls bound, stacked (name -> array of ``count`` rows of the name's
        shape), or None whenever anything is irregular (a failed call, a malformed or inconsistent
        answer, a dead sandbox); the caller then replays call by call, which reports the failure
        precisely. Untrusted like any answer.
        """
        if self._process is None or step.function in self._broken or count <= 0:
            return None
        blobs: list[bytes] = []
        header = {"op": "replay", "step": _step_json(step),
                  "fixed": {name: protocol.encode_value(value, blobs) for name, value in fixed.items()},
                  "stacked": {name: protocol.encode_value(value, blobs) for name, value in stacked.items()},
                  "count": count, "shapes": _shapes_json(shapes)}

        def read(reply: dict[str, Any], reply_blobs: list[bytes]) -> dict[str, np.ndarray] | None:
            descs = reply.get("outputs")
            if reply.get("status") != "ok" or not isinstance(descs, dict) or set(descs) != set(step.bound):
                return None
            outputs: dict[str, np.ndarray] = {}
            for name in step.bound:
                value = protocol.decode_value(descs[name], reply_blobs)
                shape = shapes.get(name)
                if not (isinstance(value, np.ndarray) and value.dtype == np.float64 and value.ndim >= 1
                        and len(value) == count and (shape is None or value.shape[1:] == tuple(shape))):
                    return None
                outputs[name] = value
            return outputs

        return self._chain_request(header, blobs, "replayed", read)

    def substitute(self, tables: Mapping[str, Sequence[tuple[np.ndarray, np.ndarray]]]) -> bool:
        """Replace the notebook's functions named in ``tables`` by stand-ins that answer with the given values
        at the given points (and raise elsewhere), until ``restore``; False when the sandbox would not.

        How a function is judged with a working helper while the student's own is broken: the stand-in
        holds values the grader computed, never the grader's code."""
        if self._process is None:
            return False
        blobs: list[bytes] = []
        install = {name: [[protocol.encode_value(point, blobs), protocol.encode_value(value, blobs)]
                          for point, value in pairs] for name, pairs in tables.items()}
        answer = self._chain_request({"op": "substitute", "install": install}, blobs, "substituted",
                                     lambda reply, _: reply.get("status") == "ok")
        return bool(answer)

    def substitute_live(self, functions: Mapping[str, Callable[[np.ndarray], Any]]) -> bool:
        """Replace the notebook's functions named in ``functions`` by stand-ins that ask the grader for every
        value over the channel, answered here with ``functions`` (trusted: the assignment's default pair),
        until ``restore``. For the training loop, whose points are not known in advance."""
        if self._process is None:
            return False
        self._live = dict(functions)
        ok = bool(self._chain_request({"op": "substitute", "live": list(functions)}, [], "substituted",
                                      lambda reply, _: reply.get("status") == "ok"))
        if not ok:
            self._live = {}
        return ok

    def _answer_helper(self, header: dict[str, Any], blobs: list[bytes], deadline: float) -> None:
        """One value for a live stand-in: computed on the trusted side from a decoded (bounded) array, sent by
        ``deadline`` (the reply's: a worker that asks and does not read the answer must not hang the grader)."""
        assert self._process is not None
        function = self._live.get(str(header.get("name")))
        value: Any = None
        if function is not None:
            point = protocol.decode_value(header.get("z"), blobs)
            array = protocol.float_array(point)
            if array is not None and array.size <= 1 << 20:
                try:
                    with np.errstate(all="ignore"):
                        value = np.asarray(function(array), dtype=float)
                except LookupError:  # a student pack holds no value there: the stand-in raises, as for any miss
                    value = None
        out: list[bytes] = []
        self._process.send({"op": "helper_value", "value": protocol.encode_value(value, out)}, out, deadline)

    def restore(self) -> bool:
        """Put back the notebook's own functions that ``substitute`` replaced."""
        self._live = {}
        if self._process is None:
            return False
        return bool(self._chain_request({"op": "substitute", "restore": True}, [], "substituted",
                                        lambda reply, _: reply.get("status") == "ok"))

    def _restart_and_replay(self) -> None:
        self._process = None
        if not self._may_restart():
            return
        self._restarts += 1
        self._start(self._replayable)
        stop = self._exec_once(list(self._replayable), {}, None)
        if stop is not None:
            self._retire(stop[1])
            self._process = None
        self._hand_over()


# --- the backends, by name -------------------------------------------------------------------
# Thin constructors: each is the sandbox with one launcher, and adds nothing else.


class SubprocessSandbox(ProcessSandbox):
    """The default backend: a fresh confined Python per submission, or, given a fork ``server``, a fork of it."""

    def __init__(self, limits: Limits | None = None, server: ForkServer | None = None,
                 graded: tuple[str, ...] = ()) -> None:
        super().__init__(FreshLauncher() if server is None else server.launcher(), limits, graded)


class AttachedSandbox(ProcessSandbox):
    """A sandbox whose worker already runs elsewhere (``grader.check()`` in a student's kernel):
    the grader neither starts nor kills it, and after a call hangs it there is no restart."""

    def __init__(self, channel_in: int, channel_out: int, limits: Limits | None = None) -> None:
        super().__init__(AttachedLauncher(channel_in, channel_out), limits)
