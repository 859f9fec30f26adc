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

import hashlib
import os
import sys
import sysconfig
import tempfile
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path

from grader import jail
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


def _grader_directories(interpreter_prefix: str | None = None) -> tuple[str, ...]:
    """What to cover inside the mount namespace: the package, and its checkout when run from source.

    A checkout is covered folder by folder rather than whole, because the
    virtual environment the sandbox's interpreter lives in is often inside it
    (``python -m venv .venv && pip install -e .``): covering the checkout would
    hide that interpreter and no sandbox could start. The folder holding the
    environment stays visible; it holds no grader code (its site-packages has
    only the editable install's ``.pth``, which the site view leaves out).
    """
    root = _PACKAGE_DIR.parent
    if not ((root / "pyproject.toml").is_file() and (root / "reference").is_dir()):
        return (str(_PACKAGE_DIR),)
    prefix = Path(interpreter_prefix or sys.prefix).resolve()
    if prefix != root and root not in prefix.parents:
        return (str(root),)
    keep = prefix.relative_to(root).parts[:1]
    return tuple(str(child) for child in sorted(root.iterdir())
                 if child.is_dir() and not child.is_symlink() and child.name not in keep)


def _namespaces_work() -> bool:
    """Try the namespaces in a throwaway child: the only reliable test across kernels and containers."""
    libc = jail.libc()
    if libc is None or os.environ.get(NO_NAMESPACES_ENV) == "1":
        return False
    pid = os.fork()
    if pid == 0:  # pragma: no cover - child
        ok = libc.unshare(jail.CLONE_NEWUSER | jail.CLONE_NEWNS | jail.CLONE_NEWNET | jail.CLONE_NEWPID) == 0
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


def prepare_child(limits: Limits, workdir: str, confined: Confinement, writable: tuple[str, ...] = ()) -> None:
    """The ``preexec_fn`` of the worker: new session, namespaces when available, then rlimits.

    ``writable``: directories that stay writable inside the mount namespace (a kernel's sockets).
    """
    try:
        os.setsid()
    except OSError:  # already a session leader (start_new_session=True)
        pass
    libc = jail.libc()
    if confined.namespaces and libc is not None:
        jail.enter_namespaces(libc, limits, confined.hidden, workdir, writable)
    config = os.path.join(workdir, MPLCONFIG_SUBDIR)
    os.makedirs(config, exist_ok=True)
    for name, data in confined.matplotlib_cache:
        with open(os.path.join(config, name), "wb") as handle:
            handle.write(data)
    # After unshare, so RLIMIT_NPROC counts this namespace's processes only (Linux ≥ 5.14);
    # without namespaces it would count every process of the user, so it is not set then.
    jail.set_rlimits(limits, processes=confined.namespaces)
