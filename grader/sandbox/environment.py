"""What the grader's machine enforces, told to the operator and never to a student.

Two audiences read the grader's output. A student reads a report: their checks,
hints and what their notebook did. The operator (the instructor, or whoever runs
the grader in CI, on Gradescope or in a container) needs to know what this machine
could not enforce: no namespaces, running as root, a cache that had to move. That
is not about any submission, and a Gradescope student must never read "the grader
runs as root". So those facts are **operator notices**, kept out of the report
model entirely:

* a process-wide, ordered, de-duplicated list (:func:`note`, :func:`notices`),
  filled where the fact is learned (the sandbox's confinement, the cache), read
  by whoever speaks to the operator;
* ``grader check`` prints them on stderr after the report; ``grader grade``
  collects them from its grading processes, prints each once per run on stderr
  and writes them to ``summary.json`` (``operator_notices``) and ``summary.html``;
* ``grader doctor`` (:func:`survey`) starts one sandbox, without any student
  code, and says what it really got: namespaces, capabilities, no_new_privs,
  seccomp, the uid it runs as on the host, where the caches are.

Importing this module loads only the standard library.
"""
from __future__ import annotations

import ctypes
import ctypes.util
import json
import os
import sys
from dataclasses import asdict, dataclass, field
from typing import Any

DOCTOR_SCHEMA = "grader.doctor/1"

# The notices themselves live in ``grader.notices`` (standard library only, imported by the sandbox,
# the cache and the errors without a cycle); they are re-exported here for the doctor's callers.
from grader.notices import forget, note, notices, stderr_line  # noqa: E402

__all__ = ["forget", "note", "notices", "render_text", "stderr_line", "survey", "to_dict"]


# --- grader doctor ----------------------------------------------------------------------------

#: Namespace kinds by clone flag, in the order bubblewrap creates them.
_NAMESPACE_FLAGS: tuple[tuple[str, int], ...] = (
    ("user", 0x10000000), ("mount", 0x00020000), ("pid", 0x20000000), ("network", 0x40000000),
    ("ipc", 0x08000000), ("uts", 0x04000000), ("cgroup", 0x02000000),
)
_CLONE_NEWUSER = 0x10000000

#: What the doctor's probe cell prints, after this marker, as one JSON line (no student code is involved).
_PROBE_MARK = "GRADER-DOCTOR-PROBE "
_PROBE_CELL = f"""
import json, os
status = {{}}
for line in open('/proc/self/status'):
    key, _, value = line.partition(':')
    if key in ('Uid', 'Gid', 'CapInh', 'CapPrm', 'CapEff', 'CapBnd', 'CapAmb', 'NoNewPrivs', 'Seccomp'):
        status[key] = value.split()
print({_PROBE_MARK!r} + json.dumps({{'status': status, 'pid': os.getpid()}}))
"""


@dataclass(frozen=True)
class Fact:
    """One line of ``grader doctor``: what was looked at, whether it holds, and the detail."""

    name: str
    #: True: enforced / works; False: not enforced (the operator should act); None: for information.
    ok: bool | None
    detail: str


@dataclass
class Survey:
    """Everything ``grader doctor`` found; the exit code follows from it."""

    facts: list[Fact] = field(default_factory=list)
    notices: list[str] = field(default_factory=list)
    #: Why the grader cannot run student code here at all, in one sentence; None when it can.
    fatal: str | None = None

    @property
    def exit_code(self) -> int:
        """0 all enforced, 1 grading works but something is not enforced, 2 cannot run student code."""
        if self.fatal is not None:
            return 2
        return 1 if self.notices or any(fact.ok is False for fact in self.facts) else 0


def _libc() -> Any:
    """The C library, loaded here rather than through ``grader.sandbox.jail``: the doctor must still run when the
    jail's own set-up is what is broken."""
    name = ctypes.util.find_library("c") or "libc.so.6"
    try:
        return ctypes.CDLL(name, use_errno=True)
    except OSError:
        return None


def namespace_kinds() -> dict[str, str]:
    """Which namespace kinds this process may create: kind → "" when it can, else why not (errno text).

    Each kind is tried on its own in a throwaway child (together with a user
    namespace, as an unprivileged grader must): the only reliable test across
    kernels, containers and seccomp profiles.
    """
    libc = _libc() if sys.platform.startswith("linux") else None
    if libc is None:
        return {kind: "not Linux" for kind, _ in _NAMESPACE_FLAGS}
    found: dict[str, str] = {}
    for kind, flag in _NAMESPACE_FLAGS:
        pid = os.fork()
        if pid == 0:  # pragma: no cover - child
            code = 250
            try:
                code = 0 if libc.unshare(_CLONE_NEWUSER | flag) == 0 else (min(ctypes.get_errno(), 250) or 250)
            finally:
                os._exit(code)
        _, status = os.waitpid(pid, 0)
        code = os.waitstatus_to_exitcode(status)
        found[kind] = "" if code == 0 else (os.strerror(code) if 0 < code < 250 else f"failed ({code})")
    return found


def _capabilities_empty(status: dict[str, list[str]]) -> bool:
    return all(int(status.get(key, ["1"])[0], 16) == 0 for key in ("CapInh", "CapPrm", "CapEff", "CapAmb", "CapBnd"))


def _descendants(root: int) -> list[int]:
    """Every process below ``root``, from ``/proc/*/stat`` (the sandbox seen from the host)."""
    parents: dict[int, int] = {}
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/stat", "rb") as handle:
                text = handle.read().decode("ascii", "replace")
        except OSError:
            continue
        fields = text.rsplit(")", 1)[-1].split()
        if len(fields) > 1:
            parents[int(entry)] = int(fields[1])
    found: list[int] = []
    frontier = [root]
    while frontier:
        parent = frontier.pop()
        children = [pid for pid, ppid in parents.items() if ppid == parent]
        found += children
        frontier += children
    return found


def _host_uids(pids: list[int]) -> set[int]:
    """The real uids the host sees for ``pids`` (from their ``/proc/<pid>/status``)."""
    uids: set[int] = set()
    for pid in pids:
        try:
            with open(f"/proc/{pid}/status", encoding="ascii", errors="replace") as handle:
                for line in handle:
                    if line.startswith("Uid:"):
                        uids.add(int(line.split()[1]))
                        break
        except (OSError, ValueError, IndexError):
            continue
    return uids


def _probe_sandbox(survey: Survey) -> None:
    """Start one sandbox (no student code), read its ``/proc/self/status`` from inside and its uid from outside."""
    from grader.errors import GraderError
    from grader.load import Cell
    from grader.sandbox.limits import Limits
    from grader.sandbox.process import SubprocessSandbox

    others = set(_descendants(os.getpid()))  # children that are not this sandbox's (none, from the command line)
    try:
        sandbox = SubprocessSandbox(Limits())
    except GraderError as exc:
        survey.fatal = exc.message
        return
    except Exception as exc:  # noqa: BLE001 - the doctor reports, it never shows a traceback
        survey.fatal = f"The sandbox could not be started ({type(exc).__name__}: {exc})."
        return
    try:
        survey.facts.append(Fact("sandbox namespaces", sandbox.confinement.namespaces,
                                 "used" if sandbox.confinement.namespaces else "not used: see the notices"))
        execution = sandbox.run_notebook([Cell(0, _PROBE_CELL)])
        host_uids = _host_uids([pid for pid in _descendants(os.getpid()) if pid not in others])
        excerpt = sandbox.output_excerpt()
    except GraderError as exc:
        survey.fatal = exc.message
        return
    except Exception as exc:  # noqa: BLE001 - the doctor reports, it never shows a traceback
        survey.fatal = f"The sandbox did not answer ({type(exc).__name__}: {exc})."
        return
    finally:
        sandbox.close()
    line = next((line for line in excerpt.splitlines() if line.startswith(_PROBE_MARK)), None)
    if line is None or not execution.cells or execution.cells[0].status != "ok":
        why = execution.cells[0].error if execution.cells and execution.cells[0].error else "no answer"
        survey.fatal = f"The sandbox started but could not run a cell ({why})."
        return
    status: dict[str, list[str]] = json.loads(line[len(_PROBE_MARK):])["status"]
    caps = {key: status.get(key, ["?"])[0] for key in ("CapEff", "CapPrm", "CapBnd")}
    survey.facts.append(Fact("sandbox capabilities", _capabilities_empty(status),
                             "none" if _capabilities_empty(status)
                             else "kept: " + ", ".join(f"{k} {v}" for k, v in caps.items())))
    nnp = status.get("NoNewPrivs", ["?"])[0]
    survey.facts.append(Fact("sandbox no_new_privs", nnp == "1", f"NoNewPrivs {nnp}"))
    seccomp = status.get("Seccomp", ["?"])[0]
    survey.facts.append(Fact("sandbox seccomp filter", seccomp == "2",
                             {"2": "a filter is installed (Seccomp 2)", "0": "no filter (Seccomp 0)",
                              "1": "strict mode (Seccomp 1)"}.get(seccomp, f"Seccomp {seccomp}")))
    inside = status.get("Uid", ["?"])[0]
    if host_uids:
        shown = ", ".join(str(uid) for uid in sorted(host_uids))
        survey.facts.append(Fact("sandbox uid on the host", 0 not in host_uids,
                                 f"{shown} (uid {inside} inside the sandbox)"))
    else:
        survey.facts.append(Fact("sandbox uid on the host", None, f"not visible (uid {inside} inside the sandbox)"))


def _seccomp_binding() -> str:
    import importlib.util

    for module in ("seccomp", "pyseccomp"):
        try:
            if importlib.util.find_spec(module) is not None:
                return module
        except (ImportError, ValueError):
            continue
    return ""


def survey(*, sandbox: bool = True) -> Survey:
    """What this machine enforces for student code, for ``grader doctor``; never raises."""
    from grader import cache
    from grader.errors import GraderError
    from grader.sandbox import confine

    result = Survey()
    uid, euid, gid = os.getuid(), os.geteuid(), os.getgid()
    who = "root" if euid == 0 else "an ordinary user"
    result.facts.append(Fact("grader user", None, f"uid {uid}, euid {euid}, gid {gid} ({who})"))
    kinds = namespace_kinds()
    available = [kind for kind, why in kinds.items() if not why]
    missing = [f"{kind} ({why})" for kind, why in kinds.items() if why]
    detail = "can create: " + (", ".join(available) or "none")
    if missing:
        detail += "; cannot: " + ", ".join(missing)
    if os.environ.get(confine.NO_NAMESPACES_ENV) == "1":
        detail += f"; turned off by {confine.NO_NAMESPACES_ENV}=1"
    result.facts.append(Fact("namespaces", not missing and os.environ.get(confine.NO_NAMESPACES_ENV) != "1", detail))
    seccomp_kernel = _proc_status_has("Seccomp")
    binding = _seccomp_binding()
    result.facts.append(Fact("seccomp support", None,
                             ("the kernel has seccomp" if seccomp_kernel else "the kernel has no seccomp")
                             + (f"; Python binding: {binding}" if binding else "; no Python binding (seccomp, pyseccomp)")))
    try:
        root = cache.describe()
    except GraderError as exc:
        result.fatal = exc.message
        result.facts.append(Fact("caches", False, exc.message))
    else:
        where = {"GRADER_CACHE_DIR": f"set by {cache.CACHE_DIR_ENV}", "XDG_CACHE_HOME": "under XDG_CACHE_HOME",
                 "home": "in the home directory", "temporary": "a private per-user temporary directory",
                 "private temporary": "a fresh private directory for this process"}[root.origin]
        because = f" because {root.reason}" if root.reason else ""
        result.facts.append(Fact("caches", None, f"{root.path} ({where}{because})"))
    if result.fatal is None:
        try:
            confined = confine.confinement()
        except GraderError as exc:
            result.fatal = exc.message
        except Exception as exc:  # noqa: BLE001 - the doctor reports, it never shows a traceback
            result.fatal = f"The sandbox's confinement could not be decided ({type(exc).__name__}: {exc})."
        else:
            note(*confined.notices)
            result.fatal = confined.refusal or None
    if sandbox and result.fatal is None:
        _probe_sandbox(result)
    result.notices = list(notices())
    return result


def _proc_status_has(key: str) -> bool:
    try:
        with open("/proc/self/status", encoding="ascii", errors="replace") as handle:
            return any(line.startswith(key + ":") for line in handle)
    except OSError:
        return False


def render_text(result: Survey) -> str:
    """The survey for a terminal: one line per fact, then the notices and the verdict."""
    marks = {True: "ok  ", False: "NO  ", None: "    "}
    width = max((len(fact.name) for fact in result.facts), default=0)
    lines = ["grader doctor: what this machine enforces for student code", ""]
    lines += [f"  {marks[fact.ok]}{fact.name.ljust(width)}  {fact.detail}" for fact in result.facts]
    if result.notices:
        lines += ["", f"notices for the operator ({len(result.notices)})"]
        lines += [f"  - {notice}" for notice in result.notices]
    lines.append("")
    if result.fatal is not None:
        lines.append(f"cannot grade here: {result.fatal}")
    elif result.exit_code:
        lines.append("grading works here, but not everything above is enforced (lines marked NO, and the notices).")
    else:
        lines.append("everything above is enforced.")
    return "\n".join(lines) + "\n"


def to_dict(result: Survey) -> dict[str, Any]:
    """The survey as JSON data (``grader doctor --format json``)."""
    return {"schema": DOCTOR_SCHEMA, "exit_code": result.exit_code, "fatal": result.fatal,
            "facts": [asdict(fact) for fact in result.facts], "notices": list(result.notices)}
