"""Operating-system confinement of the sandbox process (part of the execute stage).

What the worker can see and do is decided here, before any student code runs:

* **Python path**: the worker runs ``python -I -S`` with a *site view*, a cached
  directory of links to every installed distribution except the grader, so
  ``import grader`` / ``import reference`` fail there however it is installed.
* **Resource limits** (``setrlimit``): address space, CPU seconds, file size,
  processes, no core files; its own session so the whole group can be killed.
* **Linux namespaces** when the kernel lets an unprivileged process create them
  (no root needed): a user namespace; a network namespace with nothing but a
  downed loopback (no network); a mount namespace in which every mount is
  read-only, the grader's source directories are covered by empty read-only
  tmpfs, and the working directory is a private size-limited tmpfs; a PID
  namespace whose init is the worker, so when it dies every process it left
  behind dies with it, and whose fresh ``/proc`` shows no grader process.

Where namespaces are unavailable (macOS, containers that forbid them) the
worker still runs with the site view and rlimits, and ``Confinement.warnings``
says what is not enforced so the report can tell the instructor.
"""
from __future__ import annotations

import ctypes
import ctypes.util
import hashlib
import os
import resource
import signal
import sys
import sysconfig
import tempfile
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path

from grader.limits import Limits

_PACKAGE_DIR = Path(__file__).resolve().parent

#: Set to 1 to run without namespaces even where the kernel offers them (tests of the fallback).
NO_NAMESPACES_ENV = "GRADER_NO_NAMESPACES"

WARN_NO_NAMESPACES = (
    "Linux namespaces were unavailable here (not Linux, forbidden by the kernel or container, or turned off "
    "with GRADER_NO_NAMESPACES=1), so the submission ran without network "
    "isolation, with write access wherever this user can write, and could start processes that outlive it; "
    "grade untrusted work on Linux with user namespaces enabled."
)

WARN_ROOT_PROCESSES = (
    "The grader runs as root, which the kernel exempts from the process-count limit (max_processes): "
    "every process the submission started was still stopped when grading ended, but run the grader as an "
    "ordinary user to cap how many it may start."
)

# Linux constants (include/uapi/linux/sched.h, mount.h, prctl.h).
CLONE_NEWNS, CLONE_NEWPID, CLONE_NEWUSER, CLONE_NEWNET = 0x00020000, 0x20000000, 0x10000000, 0x40000000
MS_RDONLY, MS_NOSUID, MS_NODEV, MS_NOEXEC = 0x1, 0x2, 0x4, 0x8
MS_REMOUNT, MS_BIND, MS_REC, MS_PRIVATE = 0x20, 0x1000, 0x4000, 0x40000
MS_NOATIME, MS_NODIRATIME, MS_RELATIME, MS_STRICTATIME = 0x400, 0x800, 0x200000, 0x1000000
PR_SET_PDEATHSIG = 1
_MOUNT_OPTION_FLAGS = {"ro": MS_RDONLY, "nosuid": MS_NOSUID, "nodev": MS_NODEV, "noexec": MS_NOEXEC,
                       "noatime": MS_NOATIME, "nodiratime": MS_NODIRATIME, "relatime": MS_RELATIME,
                       "strictatime": MS_STRICTATIME}

#: Names in site-packages that belong to the grader and never enter the site view.
_HIDDEN_PREFIXES = ("grader", "__editable__", "_grader", "reference", "rubrics")


@dataclass(frozen=True)
class Confinement:
    """How the sandbox will be confined on this machine (decided once per grader process)."""

    namespaces: bool
    site_view: str
    #: Directories covered by an empty tmpfs inside the mount namespace.
    hidden: tuple[str, ...]
    warnings: tuple[str, ...]
    #: matplotlib's font cache (file name, bytes), copied into each fresh working directory:
    #: matplotlib insists on a writable config directory and would otherwise rebuild it every run.
    matplotlib_cache: tuple[tuple[str, bytes], ...] = ()


#: Where the worker finds matplotlib's config and cache, relative to its working directory.
MPLCONFIG_SUBDIR = ".config/matplotlib"


def _cache_root() -> Path:
    base = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    return Path(base) / "grader"


def _site_dirs() -> list[Path]:
    """Directories the grader's own interpreter imports third-party packages from."""
    import site

    candidates = [sysconfig.get_paths()["purelib"], sysconfig.get_paths()["platlib"]]
    try:
        candidates += site.getsitepackages()
    except AttributeError:  # pragma: no cover - old virtualenv
        pass
    seen: list[Path] = []
    for entry in candidates:
        path = Path(entry)
        if path.is_dir() and path not in seen:
            seen.append(path)
    return seen


def _visible(name: str) -> bool:
    lowered = name.lower()
    return not (lowered.startswith(_HIDDEN_PREFIXES) or lowered.endswith(".pth") or lowered == "__pycache__")


def build_site_view() -> str:
    """Return a directory of symlinks to everything installed except the grader (cached, rebuilt on change).

    Why links and not ``sys.path`` filtering: the worker must not be able to
    import the grader even by editing its own ``sys.path`` or ``.pth`` files,
    so the grader's distribution simply is not in the directory it imports from.
    """
    entries: dict[str, str] = {}
    for directory in _site_dirs():
        for child in sorted(directory.iterdir()):
            if _visible(child.name) and child.name not in entries:
                entries[child.name] = str(child)
    digest = hashlib.sha256(repr(sorted(entries.items())).encode()).hexdigest()[:16]
    view = _cache_root() / "site-view" / digest
    if view.is_dir():
        return str(view)
    view.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix="building-", dir=view.parent))
    for name, target in entries.items():
        os.symlink(target, staging / name)
    try:
        os.rename(staging, view)
    except OSError:  # another grader process built it first
        for link in staging.iterdir():
            link.unlink()
        staging.rmdir()
    return str(view)


def _grader_directories() -> tuple[str, ...]:
    """What to cover inside the mount namespace: the package, and its checkout when run from source."""
    hidden = [_PACKAGE_DIR]
    root = _PACKAGE_DIR.parent
    if (root / "pyproject.toml").is_file() and (root / "reference").is_dir():
        hidden = [root]
    return tuple(str(p) for p in hidden)


@lru_cache(maxsize=1)
def _libc() -> ctypes.CDLL | None:
    if not sys.platform.startswith("linux"):
        return None
    name = ctypes.util.find_library("c") or "libc.so.6"
    try:
        libc = ctypes.CDLL(name, use_errno=True)
        libc.mount.argtypes = [ctypes.c_char_p, ctypes.c_char_p, ctypes.c_char_p, ctypes.c_ulong, ctypes.c_char_p]
        libc.unshare.argtypes = [ctypes.c_int]
        libc.prctl.argtypes = [ctypes.c_int, ctypes.c_ulong, ctypes.c_ulong, ctypes.c_ulong, ctypes.c_ulong]
        return libc
    except (OSError, AttributeError):
        return None


def _namespaces_work() -> bool:
    """Try the namespaces in a throwaway child: the only reliable test across kernels and containers."""
    libc = _libc()
    if libc is None or os.environ.get(NO_NAMESPACES_ENV) == "1":
        return False
    pid = os.fork()
    if pid == 0:  # pragma: no cover - child
        ok = libc.unshare(CLONE_NEWUSER | CLONE_NEWNS | CLONE_NEWNET | CLONE_NEWPID) == 0
        os._exit(0 if ok else 1)
    _, status = os.waitpid(pid, 0)
    return os.waitstatus_to_exitcode(status) == 0


def _matplotlib_cache(site_view: str) -> tuple[tuple[str, bytes], ...]:
    """matplotlib's font list, built once per machine by a trusted, student-free interpreter."""
    import subprocess

    cache = _cache_root() / "matplotlib"
    cache.mkdir(parents=True, exist_ok=True)
    if not list(cache.glob("fontlist-*.json")):
        warm = "import sys; sys.path.append(sys.argv[1]); import matplotlib.font_manager"
        subprocess.run([sys.executable, "-I", "-S", "-c", warm, site_view], env={**os.environ, "MPLCONFIGDIR": str(cache)},
                       stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, timeout=120, check=False)
    return tuple((path.name, path.read_bytes()) for path in sorted(cache.glob("fontlist-*.json")))


@lru_cache(maxsize=1)
def confinement() -> Confinement:
    """Decide, once per process, how sandboxes are confined here."""
    namespaces = _namespaces_work()
    warnings = () if namespaces else (WARN_NO_NAMESPACES,)
    if namespaces and os.geteuid() == 0:
        warnings += (WARN_ROOT_PROCESSES,)
    view = build_site_view()
    return Confinement(namespaces, view, _grader_directories(), warnings, _matplotlib_cache(view))


# --- in the child, between fork and exec ------------------------------------------------
# Everything below runs in the forked child before exec: no imports, no threads,
# no allocation-heavy work; errors abort the start (the grader reports it) rather
# than letting the worker run less confined than promised.


def _check(result: int, what: str) -> None:
    if result != 0:
        errno = ctypes.get_errno()
        raise OSError(errno, f"{what}: {os.strerror(errno)}")


def _set_rlimits(limits: Limits, processes: bool) -> None:
    mib = 1 << 20
    values = [(resource.RLIMIT_AS, limits.memory_mb * mib), (resource.RLIMIT_CPU, int(limits.cpu_time_s) + 1),
              (resource.RLIMIT_FSIZE, limits.file_size_mb * mib), (resource.RLIMIT_CORE, 0)]
    if processes:
        values.append((resource.RLIMIT_NPROC, limits.max_processes))
    for which, value in values:
        try:
            soft, hard = resource.getrlimit(which)
            if hard != resource.RLIM_INFINITY:
                value = min(value, hard)
            resource.setrlimit(which, (value, value))
        except (ValueError, OSError):
            pass


def _mount_points() -> list[tuple[str, int]]:
    """(mount point, flags that must be kept) for every mount, from /proc/self/mountinfo."""
    points = []
    with open("/proc/self/mountinfo", "rb") as handle:
        for line in handle.read().decode("utf-8", "replace").splitlines():
            fields = line.split(" ")
            if len(fields) < 6:
                continue
            point = fields[4].replace("\\040", " ").replace("\\011", "\t").replace("\\134", "\\")
            flags = 0
            for option in fields[5].split(","):
                flags |= _MOUNT_OPTION_FLAGS.get(option, 0)
            points.append((point, flags))
    return points


def _enter_namespaces(libc: ctypes.CDLL, limits: Limits, hidden: tuple[str, ...], workdir: str) -> None:
    uid, gid = os.getuid(), os.getgid()
    _check(libc.unshare(CLONE_NEWUSER | CLONE_NEWNS | CLONE_NEWNET | CLONE_NEWPID), "unshare")
    for name, text in (("setgroups", "deny"), ("uid_map", f"{uid} {uid} 1"), ("gid_map", f"{gid} {gid} 1")):
        with open(f"/proc/self/{name}", "w") as handle:
            handle.write(text)
    _check(libc.mount(None, b"/", None, MS_REC | MS_PRIVATE, None), "make mounts private")
    for path in hidden:
        if os.path.isdir(path):
            _check(libc.mount(b"tmpfs", path.encode(), b"tmpfs", MS_RDONLY | MS_NOSUID | MS_NODEV,
                              b"size=4k,mode=555"), f"hide {path}")
    for point, kept in _mount_points():
        # Best effort per mount: a few pseudo filesystems refuse a remount; everything a
        # submission could write to (disks, tmpfs, /dev/shm) accepts it.
        libc.mount(None, point.encode(), None, MS_REMOUNT | MS_BIND | MS_RDONLY | kept, None)
    size = f"size={limits.file_size_mb}m,mode=700".encode()
    _check(libc.mount(b"tmpfs", workdir.encode(), b"tmpfs", MS_NOSUID | MS_NODEV, size), "mount the work directory")
    os.chdir(workdir)  # the earlier chdir points at the directory now covered by the tmpfs
    _become_pid_one(libc)


def _become_pid_one(libc: ctypes.CDLL) -> None:
    """Fork into the new PID namespace; this process stays behind only to relay the exit status."""
    child = os.fork()
    if child == 0:
        libc.prctl(PR_SET_PDEATHSIG, signal.SIGKILL, 0, 0, 0)
        # A fresh /proc shows only this namespace's processes; where a container's masked
        # /proc forbids it, the inherited one stays (the grader's memory is still not ptrace-able
        # from here: the sandbox holds no capability in the grader's user namespace).
        libc.mount(b"proc", b"/proc", b"proc", MS_NOSUID | MS_NODEV | MS_NOEXEC, None)
        return
    os.closerange(0, 65536)  # hold no pipe open: the grader must see EOF when the worker ends
    while True:
        try:
            _, status = os.waitpid(child, 0)
            break
        except ChildProcessError:  # pragma: no cover
            os._exit(1)
        except InterruptedError:  # pragma: no cover
            continue
    if os.WIFSIGNALED(status):
        number = os.WTERMSIG(status)
        signal.signal(number, signal.SIG_DFL)
        os.kill(os.getpid(), number)
    os._exit(os.waitstatus_to_exitcode(status) & 0xFF)


def prepare_child(limits: Limits, workdir: str, confined: Confinement) -> None:
    """The ``preexec_fn`` of the worker: new session, namespaces when available, then rlimits."""
    os.setsid()
    libc = _libc()
    if confined.namespaces and libc is not None:
        _enter_namespaces(libc, limits, confined.hidden, workdir)
    config = os.path.join(workdir, MPLCONFIG_SUBDIR)
    os.makedirs(config, exist_ok=True)
    for name, data in confined.matplotlib_cache:
        with open(os.path.join(config, name), "wb") as handle:
            handle.write(data)
    # After unshare, so RLIMIT_NPROC counts this namespace's processes only (Linux ≥ 5.14);
    # without namespaces it would count every process of the user, so it is not set then.
    _set_rlimits(limits, processes=confined.namespaces)
