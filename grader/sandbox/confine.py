"""Operating-system confinement of the sandbox process (part of the execute stage).

What the worker can see and do is decided here, once per grader process, and
handed to ``jail.py`` as a plain-data plan that it carries out before any
student code runs:

* **Who it is**: never root on the host. When the grader is root (Gradescope,
  CI images, Docker), the sandbox drops to an unprivileged uid and gid (65534,
  or ``GRADER_SANDBOX_UID``/``GRADER_SANDBOX_GID``) before it makes its user
  namespace; an ordinary user's sandbox maps that user's own uid.
* **What it sees**: a minimal root file system (``/usr``, the interpreter, each
  installed distribution but the grader's at ``/site``, a synthetic ``/etc``,
  three device nodes, its own ``/proc``, a private tmpfs at ``/work``), in its
  own mount, PID, network, IPC, UTS and cgroup namespaces.
* **What it may do**: no capability at all, ``no_new_privs``, and a seccomp
  filter, compiled here by libseccomp (``pyseccomp``), that refuses mounting,
  namespaces, ptrace, keyrings, BPF, io_uring, module and kexec calls and the
  rest of ``SECCOMP_REFUSED``; plus rlimits.

Where a part cannot be had (no user namespaces in this container, no
libseccomp), the sandbox runs with what can be enforced and
``Confinement.notices`` tells the *operator* what was not, with the kernel's
own reason. A root grader that cannot even switch to an unprivileged uid
refuses to run student code (``Confinement.refusal``).
"""
from __future__ import annotations

import errno
import hashlib
import json
import os
import site
import sys
import sysconfig
import tempfile
import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from functools import lru_cache
from pathlib import Path
from typing import Any

from grader.sandbox import jail
from grader.sandbox.limits import Limits

_PACKAGE_DIR = Path(__file__).resolve().parent.parent

#: Set to 1 to run without namespaces even where the kernel offers them (tests of the fallback).
NO_NAMESPACES_ENV = "GRADER_NO_NAMESPACES"

WARN_NO_NAMESPACES = (
    "Linux namespaces were unavailable here (not Linux, forbidden by the kernel or container, or turned off "
    "with GRADER_NO_NAMESPACES=1), so the submission ran without a file system, network or process space of "
    "its own: it could read what its uid (65534 when the grader is root) can read, write where that uid can "
    "write, use the network, and start processes that outlive it; grade untrusted work on Linux with user "
    "namespaces enabled."
)

WARN_NO_SECCOMP = (
    "No seccomp filter could be compiled here ({reason}), so the sandbox ran without one (it still had no "
    "capabilities and no_new_privs); install libseccomp (Debian: libseccomp2) and the Python package pyseccomp."
)
WARN_NAMESPACE_CAUSE = "The kernel refused the sandbox's namespaces: {reason}."
REFUSE_ROOT = (
    "The grader runs as root and cannot switch the sandbox to the unprivileged uid {uid} ({reason}), so it will "
    "not run student code; run it as an ordinary user, enable user namespaces, or install it in an environment "
    "that uid can read (set GRADER_SANDBOX_UID to choose another uid)."
)

#: Names in site-packages that belong to the grader and never enter the site view.
_HIDDEN_PREFIXES = ("grader", "__editable__", "_grader", "reference", "rubrics", "numpy_nn_grader")

#: Set to choose the host uid/gid a root grader's sandbox runs as (default: nobody, 65534).
SANDBOX_UID_ENV, SANDBOX_GID_ENV = "GRADER_SANDBOX_UID", "GRADER_SANDBOX_GID"
DEFAULT_SANDBOX_ID = 65534

#: System calls the sandbox may not make: anything that could change what it sees (mounts,
#: namespaces, roots), reach another process (ptrace and its kin), keep state between
#: submissions outside its namespaces (keyrings), or attack the kernel through a large surface
#: (BPF, perf, userfaultfd, io_uring, modules, kexec). They fail with EPERM.
SECCOMP_REFUSED = (
    "mount", "umount2", "pivot_root", "chroot", "unshare", "setns", "ptrace", "process_vm_readv",
    "process_vm_writev", "kcmp", "pidfd_getfd", "keyctl", "add_key", "request_key", "bpf", "perf_event_open",
    "userfaultfd", "io_uring_setup", "io_uring_enter", "io_uring_register", "kexec_load", "kexec_file_load",
    "init_module", "finit_module", "delete_module", "reboot", "swapon", "swapoff", "acct", "open_by_handle_at",
    "name_to_handle_at", "fsopen", "fsconfig", "fsmount", "fspick", "move_mount", "open_tree", "mount_setattr",
    "quotactl", "syslog", "vhangup", "lookup_dcookie", "uselib", "personality", "setdomainname", "sethostname",
    # Memory files hold pages outside the address space (RLIMIT_AS) and outside /work's size: 192 of 8 MB each
    # held 1.5 GB under a 256 MB memory limit (red team, issue 15). Nothing a notebook imports needs one.
    "memfd_create", "memfd_secret",
)
#: clone() flags that make a namespace; clone() with any of them fails with EPERM. clone3() passes its
#: flags in memory a filter cannot read, so it fails with ENOSYS and the C library falls back to clone().
NAMESPACE_CLONE_FLAGS = (jail.CLONE_NEWNS, jail.CLONE_NEWCGROUP, jail.CLONE_NEWUTS, jail.CLONE_NEWIPC,
                         jail.CLONE_NEWUSER, jail.CLONE_NEWPID, jail.CLONE_NEWNET)


@dataclass(frozen=True)
class Confinement:
    """How the sandbox will be confined on this machine (decided once per grader process)."""

    namespaces: bool
    #: The host directory of links to every installed distribution but the grader's.
    site_view: str
    #: Directories covered by an empty tmpfs inside the sandbox's root.
    hidden: tuple[str, ...]
    #: For the operator only (stderr, summary, ``grader doctor``): what could not be enforced, and why.
    notices: tuple[str, ...]
    #: matplotlib's font cache (file name, bytes), copied into each fresh working directory:
    #: matplotlib insists on a writable config directory and would otherwise rebuild it every run.
    matplotlib_cache: tuple[tuple[str, bytes], ...] = ()
    #: What ``jail.enter_sandbox`` builds (namespaces only).
    plan: dict[str, Any] = field(default_factory=dict)
    #: What ``jail.lock_down`` applies: the seccomp program as hex, and keyctl's number.
    lockdown: dict[str, Any] = field(default_factory=dict)
    #: The host uid and gid a root grader's sandbox runs as; None when the grader is not root.
    drop_to: tuple[int, int] | None = None
    #: Why student code may not run at all (a root grader that cannot drop root); "" when it may.
    refusal: str = ""

    @property
    def site_path(self) -> str:
        """Where the sandbox imports installed packages from, as the sandbox sees it."""
        return jail.SANDBOX_SITE if self.namespaces else self.site_view

    def workdir(self, host_workdir: str) -> str:
        """The sandbox's working directory, as the sandbox sees it."""
        return jail.SANDBOX_WORKDIR if self.namespaces else host_workdir

    def require(self) -> None:
        """Raise when student code may not run here at all."""
        if self.refusal:
            from grader.errors import SandboxRefused

            raise SandboxRefused.from_reason(self.refusal)


#: Where the worker finds matplotlib's config and cache, relative to its working directory.
MPLCONFIG_SUBDIR = ".config/matplotlib"


def _cache_root() -> Path:
    """The grader's cache directory: one decision for every module, with a private fallback (``grader/cache.py``)."""
    from grader.cache import cache_root

    return cache_root()


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


def build_site_view(entries: dict[str, str] | None = None) -> str:
    """Return a directory of symlinks to everything installed except the grader (cached, rebuilt on change).

    Why links and not ``sys.path`` filtering: the worker must not be able to
    import the grader even by editing its own ``sys.path`` or ``.pth`` files,
    so the grader's distribution simply is not in the directory it imports from.
    ``entries``: ``_site_entries()``, when the caller has it already.
    """
    entries = _site_entries() if entries is None else entries
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


def _view_for(uid: int, view: str) -> str:
    """Without namespaces a root grader's sandbox runs as ``uid`` and reads the site view by its host
    path, which lies in root's private cache: give it a copy of the links it can read (removed at exit)."""
    import atexit
    import shutil

    copy = tempfile.mkdtemp(prefix="grader-site-view-")
    for link in os.scandir(view):
        os.symlink(os.readlink(link.path), os.path.join(copy, link.name))
    os.chmod(copy, 0o755)
    atexit.register(shutil.rmtree, copy, True)
    return copy


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


def interpreter() -> str:
    """The real interpreter (a virtual environment's ``bin/python`` is a link to it, or a copy of it
    beside the environment's site-packages, which the sandbox must not see)."""
    base = getattr(sys, "_base_executable", None) or sys.executable
    return os.path.realpath(base)


def _sandbox_ids() -> tuple[int, int]:
    values = []
    for name in (SANDBOX_UID_ENV, SANDBOX_GID_ENV):
        text = os.environ.get(name, str(DEFAULT_SANDBOX_ID))
        if not text.isdigit() or int(text) in (0, 0xFFFFFFFF) or int(text) > 0xFFFFFFFE:
            from grader.errors import SettingError

            raise SettingError.from_bad_value(name, text, "the environment", "a uid/gid other than 0, such as 65534")
        values.append(int(text))
    return values[0], values[1]


def _seccomp_program() -> tuple[str, str]:
    """(the filter as hex BPF, "") or ("", why not): compiled by libseccomp, loaded by the jail with one prctl."""
    try:
        import pyseccomp as seccomp
    except Exception as exc:  # noqa: BLE001 - ImportError, or RuntimeError("Unable to find libseccomp")
        return "", f"{type(exc).__name__}: {exc}"
    try:
        refuse = seccomp.ERRNO(errno.EPERM)
        program = seccomp.SyscallFilter(seccomp.ALLOW)
        for name in SECCOMP_REFUSED:
            try:
                program.add_rule(refuse, name)
            except (OSError, ValueError, RuntimeError):
                continue  # a call this kernel's architecture does not have
        for flag in NAMESPACE_CLONE_FLAGS:
            program.add_rule(refuse, "clone", seccomp.Arg(0, seccomp.MASKED_EQ, flag, flag))
        program.add_rule(seccomp.ERRNO(errno.ENOSYS), "clone3")
        # A process that could make itself dumpable again could be read through /proc by its peers.
        program.add_rule(refuse, "prctl", seccomp.Arg(0, seccomp.EQ, jail.PR_SET_DUMPABLE), seccomp.Arg(1, seccomp.NE, 0))
        # The sandbox's init dies with the relay above it (PDEATHSIG), and every process of the sandbox
        # with its init: an init that cleared that signal (and left the process group the grader kills)
        # would outlive the grader.
        program.add_rule(refuse, "prctl", seccomp.Arg(0, seccomp.EQ, jail.PR_SET_PDEATHSIG))
        with tempfile.TemporaryFile() as handle:
            program.export_bpf(handle)
            handle.seek(0)
            return handle.read().hex(), ""
    except Exception as exc:  # noqa: BLE001 - no filter is a notice for the operator, never a crash
        return "", f"{type(exc).__name__}: {exc}"


def _syscall_number(name: str) -> int | None:
    try:
        import pyseccomp as seccomp

        number = seccomp.resolve_syscall(seccomp.system_arch(), name)
        return int(number) if int(number) >= 0 else None
    except Exception:  # noqa: BLE001 - libseccomp missing or unsure: the table below knows the two calls
        return _FALLBACK_NUMBERS.get((os.uname().machine, name))


#: Where libseccomp cannot be asked: x86-64 and arm64 numbers of the two calls the jail makes itself.
_FALLBACK_NUMBERS = {("x86_64", "pivot_root"): 155, ("x86_64", "keyctl"): 250,
                     ("aarch64", "pivot_root"): 41, ("aarch64", "keyctl"): 219}


def _under(path: str, roots: list[str]) -> bool:
    return any(path == root or path.startswith(root.rstrip("/") + "/") for root in roots)


def build_plan(site_entries: dict[str, str], hidden: tuple[str, ...]) -> dict[str, Any]:
    """What the sandbox's root holds, in ``jail.build_root``'s terms (paths inside equal paths outside,
    but for the site view at ``/site`` and the working directory at ``/work``)."""
    binds: list[list[str]] = []
    symlinks: list[list[str]] = []
    trees: list[str] = []
    if os.path.isdir("/usr"):
        binds.append(["/usr", "/usr", "dir"])
        trees.append("/usr")
    for top in ("/bin", "/sbin", "/lib", "/lib32", "/lib64", "/libx32"):
        if os.path.islink(top):
            symlinks.append([os.readlink(top), top])
        elif os.path.isdir(top):
            binds.append([top, top, "dir"])
            trees.append(top)
    for prefix in {os.path.realpath(sys.base_prefix), os.path.realpath(sys.base_exec_prefix),
                   os.path.dirname(os.path.dirname(interpreter()))}:
        if prefix not in ("/", "") and not _under(prefix, trees):
            binds.append([prefix, prefix, "dir"])
            trees.append(prefix)
    if os.path.isfile("/etc/ld.so.cache"):
        binds.append(["/etc/ld.so.cache", "/etc/ld.so.cache", "file"])
    for device in ("null", "zero", "urandom"):
        binds.append([f"/dev/{device}", f"/dev/{device}", "dev"])
    for name, target in sorted(site_entries.items()):
        binds.append([target, f"{jail.SANDBOX_SITE}/{name}", "dir" if os.path.isdir(target) else "file"])
    symlinks += [["/proc/self/fd", "/dev/fd"], ["/proc/self/fd/0", "/dev/stdin"],
                 ["/proc/self/fd/1", "/dev/stdout"], ["/proc/self/fd/2", "/dev/stderr"],
                 [jail.SANDBOX_WORKDIR, "/tmp"], [jail.SANDBOX_WORKDIR, "/dev/shm"]]
    files = [["/etc/passwd", f"student:x:0:0:student:{jail.SANDBOX_WORKDIR}:/bin/false\n"],
             ["/etc/group", "student:x:0:\n"], ["/etc/hosts", "127.0.0.1 localhost\n::1 localhost\n"]]
    site_dirs = {str(path) for path in _site_dirs()}
    version = f"python{sys.version_info.major}.{sys.version_info.minor}"
    for scheme_vars in ({"base": sys.base_prefix, "platbase": sys.base_exec_prefix},):
        paths = sysconfig.get_paths(vars=scheme_vars)
        site_dirs.update((paths["purelib"], paths["platlib"]))
    site_dirs.update(f"{root}/lib/{name}/{kind}" for root in ("/usr", "/usr/local") for name in (version, "python3")
                     for kind in ("site-packages", "dist-packages"))
    try:
        site_dirs.update(site.getsitepackages() + [site.getusersitepackages()])
    except AttributeError:  # pragma: no cover - old virtualenv
        pass
    # Installed packages are reached through /site only: any site-packages inside a bound tree
    # (a system-wide install, the grader's own among them) is covered, and so is the grader.
    covers = sorted({os.path.realpath(p) for p in (*site_dirs, *hidden)
                     if _under(os.path.realpath(p), trees) and os.path.isdir(p)})
    return {"root": os.geteuid() == 0, "binds": binds, "symlinks": symlinks, "files": files, "covers": covers,
            "writable": [], "pivot_root": _syscall_number("pivot_root"), "workdir_mb": 64}


def _site_entries() -> dict[str, str]:
    entries: dict[str, str] = {}
    for directory in _site_dirs():
        for child in sorted(directory.iterdir()):
            if _visible(child.name) and child.name not in entries:
                entries[child.name] = str(child)
    return entries


def _trial(plan: dict[str, Any] | None, lockdown: dict[str, Any], drop_to: tuple[int, int] | None,
           reachable: tuple[str, ...] = ()) -> str:
    """Confine a throwaway child exactly as a sandbox will be: "" when it worked, else the kernel's reason.

    The only reliable test across kernels and containers, and the only place the real cause can
    be read: a ``preexec_fn`` that fails says no more than "Exception occurred in preexec_fn".
    """
    libc = jail.libc()
    if libc is None:
        return "not Linux"
    read_end, write_end = os.pipe()
    base = tempfile.mkdtemp(prefix="grader-trial-")
    if plan is None and drop_to is not None:
        os.chown(base, *drop_to)
    pid = os.fork()
    if pid == 0:  # pragma: no cover - child
        code = 1
        try:
            os.close(read_end)
            if plan is not None:
                jail.enter_sandbox(libc, {**plan, "base": base})
            elif drop_to is not None:
                jail.drop_bounding_set(libc)
                jail.drop_to(*drop_to)
                for needed in (interpreter(), base, *reachable):
                    if not os.access(needed, os.R_OK | os.X_OK):
                        raise PermissionError(f"uid {drop_to[0]} cannot reach {needed}")
            jail.lock_down(libc, lockdown)
            os.write(write_end, b"ok")
            code = 0
        except BaseException as exc:  # noqa: BLE001 - the forked child reports any failure to its parent, then exits
            try:
                os.write(write_end, f"{exc}".encode()[:500])
            except OSError:
                pass
        os._exit(code)
    os.close(write_end)
    chunks = []
    while True:
        chunk = os.read(read_end, 4096)
        if not chunk:
            break
        chunks.append(chunk)
    os.close(read_end)
    os.waitpid(pid, 0)
    try:
        os.rmdir(base)
    except OSError:
        pass
    said = b"".join(chunks).decode("utf-8", "replace")
    return "" if said == "ok" else (said or "the trial sandbox died without saying why")


def _matplotlib_cache(site_view: str, inside: str) -> tuple[tuple[str, bytes], ...]:
    """matplotlib's font list, built once per machine by a trusted, student-free interpreter, with the
    view's host path replaced by the path the sandbox imports from."""
    import subprocess

    cache = _cache_root() / "matplotlib"
    cache.mkdir(parents=True, exist_ok=True)
    if not list(cache.glob("fontlist-*.json")):
        warm = "import sys; sys.path.append(sys.argv[1]); import matplotlib.font_manager"
        subprocess.run([sys.executable, "-I", "-S", "-c", warm, site_view], env={**os.environ, "MPLCONFIGDIR": str(cache)},
                       stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, timeout=120, check=False)
    fonts = []
    for path in sorted(cache.glob("fontlist-*.json")):
        data = path.read_bytes()
        if inside != site_view:
            data = data.replace(json.dumps(site_view)[1:-1].encode() + b"/", inside.encode() + b"/")
        fonts.append((path.name, data))
    return tuple(fonts)


#: Held while the decision is being made: a caller that comes while another thread decides (``prepare``)
#: waits for that decision instead of making it a second time.
_DECIDING = threading.RLock()


def prepare() -> None:
    """Start deciding how sandboxes are confined, in a background thread, and return at once.

    The decision costs a process's first sandbox 0.2 s, and 1 s on a machine's first run (it builds the
    site view and matplotlib's font list): ``grader check`` starts it before it loads the rubric and the
    notebook, which then happen meanwhile. Nothing about the decision changes: the same function, once."""
    def decide_quietly() -> None:
        try:
            confinement()
        except Exception:  # noqa: BLE001 - not decided here: the grader's own call decides again, and says why
            pass

    threading.Thread(target=decide_quietly, name="grader-confinement", daemon=True).start()


def _decided(function: Callable[[], Confinement]) -> Callable[[], Confinement]:
    """``function`` cached once per process and made under ``_DECIDING`` (``cache_clear`` kept for tests)."""
    cached = lru_cache(maxsize=1)(function)

    def decide() -> Confinement:
        with _DECIDING:
            return cached()
    decide.cache_clear = cached.cache_clear  # type: ignore[attr-defined]
    decide.__doc__ = function.__doc__
    return decide


@_decided
def confinement() -> Confinement:
    """Decide, once per process, how sandboxes are confined here (trying it for real first)."""
    entries = _site_entries()
    view = build_site_view(entries)
    hidden = _grader_directories()
    program, no_seccomp = _seccomp_program()
    lockdown = {"bpf": program, "keyctl": _syscall_number("keyctl")}
    notices: list[str] = [WARN_NO_SECCOMP.format(reason=no_seccomp)] if no_seccomp else []
    drop_to = _sandbox_ids() if os.geteuid() == 0 else None
    plan: dict[str, Any] = {}
    namespaces = False
    if jail.libc() is not None and os.environ.get(NO_NAMESPACES_ENV) != "1":
        plan = build_plan(entries, hidden)
        if drop_to is not None:
            plan.update(uid=drop_to[0], gid=drop_to[1])
        cause = _trial(plan, lockdown, drop_to)
        namespaces = not cause
        if cause:
            notices += [WARN_NO_NAMESPACES, WARN_NAMESPACE_CAUSE.format(reason=cause)]
            plan = {}
    else:
        notices.append(WARN_NO_NAMESPACES)
    refusal = ""
    built = view
    if not namespaces and drop_to is not None:
        view = _view_for(drop_to[0], view)
    if not namespaces and jail.libc() is not None:
        cause = _trial(None, lockdown, drop_to, (view,))
        if cause and drop_to is not None:
            refusal = REFUSE_ROOT.format(uid=drop_to[0], reason=cause)
        elif cause:
            notices.append(f"The sandbox could not be locked down ({cause}); it ran with this user's privileges.")
            lockdown = {}
    fonts = _matplotlib_cache(built, jail.SANDBOX_SITE if namespaces else view)
    return Confinement(namespaces, view, hidden, tuple(notices), fonts, plan, lockdown, drop_to, refusal)


def prepare_child(limits: Limits, workdir: str, confined: Confinement, writable: tuple[str, ...] = (),
                  lock: bool = True, readable: tuple[str, ...] = ()) -> None:
    """The ``preexec_fn`` of a sandbox process: new session, its jail, rlimits, then the lock-down.

    ``workdir``: the host directory the root is built over (namespaces) or that it works in
    (without). ``writable``: directories that stay writable, at the same path (a kernel's sockets).
    ``readable``: files bound read-only at the same path (a kernel's connection file).
    ``lock``: False for a fork server, which keeps its namespace's capabilities to confine its
    children (each locks itself down before student code).
    A failure is written to the process's stderr before it is raised, since ``subprocess`` only
    reports "Exception occurred in preexec_fn".
    """
    try:
        _prepare_child(limits, workdir, confined, writable, lock, readable)
    except BaseException as exc:
        try:
            os.write(2, f"grader: the sandbox could not be confined: {exc}\n".encode())
        except OSError:
            pass
        raise


def _prepare_child(limits: Limits, workdir: str, confined: Confinement, writable: tuple[str, ...],
                   lock: bool, readable: tuple[str, ...] = ()) -> None:
    try:
        os.setsid()
    except OSError:  # already a session leader (start_new_session=True)
        pass
    libc = jail.libc()
    if confined.namespaces and libc is not None:
        binds = confined.plan["binds"] + [[path, path, "file"] for path in readable]
        jail.enter_sandbox(libc, {**confined.plan, "base": workdir, "writable": list(writable), "binds": binds,
                                  "workdir_mb": limits.file_size_mb})
        here = jail.SANDBOX_WORKDIR
    else:
        if confined.drop_to is not None and libc is not None:
            jail.drop_bounding_set(libc)
            jail.drop_to(*confined.drop_to)
        here = workdir
    config = os.path.join(here, MPLCONFIG_SUBDIR)
    os.makedirs(config, exist_ok=True)
    for name, data in confined.matplotlib_cache:
        with open(os.path.join(config, name), "wb") as handle:
            handle.write(data)
    # After unshare, so RLIMIT_NPROC counts this namespace's processes only (Linux >= 5.14);
    # without namespaces it would count every process of the user, so it is not set then.
    jail.set_rlimits(limits, processes=confined.namespaces)
    if lock and confined.lockdown and libc is not None:
        jail.lock_down(libc, confined.lockdown)
