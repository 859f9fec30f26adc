"""The system calls that put a sandbox process in its jail (Linux namespaces, mounts, rlimits).

Used in two places: between fork and exec of a freshly started sandbox (as
``subprocess``'s ``preexec_fn``), and inside the fork server, which receives this
file as source text. So it imports only the standard library, nothing from the
grader, and does no work at import time. ``grader/confine.py`` decides *whether*
and *how* to confine; this module only carries it out.
"""
import ctypes
import ctypes.util
import os
import resource
import signal
import sys

# Linux constants (include/uapi/linux/sched.h, mount.h, prctl.h).
CLONE_NEWNS, CLONE_NEWPID, CLONE_NEWUSER, CLONE_NEWNET = 0x00020000, 0x20000000, 0x10000000, 0x40000000
MS_RDONLY, MS_NOSUID, MS_NODEV, MS_NOEXEC = 0x1, 0x2, 0x4, 0x8
MS_REMOUNT, MS_BIND, MS_REC, MS_PRIVATE = 0x20, 0x1000, 0x4000, 0x40000
MS_NOATIME, MS_NODIRATIME, MS_RELATIME, MS_STRICTATIME = 0x400, 0x800, 0x200000, 0x1000000
PR_SET_PDEATHSIG, PR_SET_NAME = 1, 15
_MOUNT_OPTION_FLAGS = {"ro": MS_RDONLY, "nosuid": MS_NOSUID, "nodev": MS_NODEV, "noexec": MS_NOEXEC,
                       "noatime": MS_NOATIME, "nodiratime": MS_NODIRATIME, "relatime": MS_RELATIME,
                       "strictatime": MS_STRICTATIME}

_LIBC = []


def libc():
    """The C library with the calls below typed, or None off Linux (cached: resolved before any fork)."""
    if _LIBC:
        return _LIBC[0]
    _LIBC.append(_load_libc())
    return _LIBC[0]


def _load_libc():
    if not sys.platform.startswith("linux"):
        return None
    name = ctypes.util.find_library("c") or "libc.so.6"
    try:
        libc = ctypes.CDLL(name, use_errno=True)
        libc.mount.argtypes = [ctypes.c_char_p, ctypes.c_char_p, ctypes.c_char_p, ctypes.c_ulong, ctypes.c_char_p]
        libc.unshare.argtypes = [ctypes.c_int]
        libc.prctl.argtypes = [ctypes.c_int, ctypes.c_ulong, ctypes.c_ulong, ctypes.c_ulong, ctypes.c_ulong]
        libc.setns.argtypes = [ctypes.c_int, ctypes.c_int]
        return libc
    except (OSError, AttributeError):
        return None


# --- in the child, between fork and exec ------------------------------------------------
# Everything below runs in the forked child before exec: no imports, no threads,
# no allocation-heavy work; errors abort the start (the grader reports it) rather
# than letting the worker run less confined than promised.


def set_process_name(libc, name: str) -> None:
    """What ``ps``, ``top`` and ``perf`` show for this process (15 bytes at most): an instructor
    watching a batch sees which processes are sandboxes and which are the grader."""
    if libc is not None:
        buffer = ctypes.create_string_buffer(name.encode()[:15])
        libc.prctl(PR_SET_NAME, ctypes.addressof(buffer), 0, 0, 0)


def _check(result: int, what: str) -> None:
    if result != 0:
        errno = ctypes.get_errno()
        raise OSError(errno, f"{what}: {os.strerror(errno)}")


def set_rlimits(limits, processes: bool) -> None:
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


def enter_namespaces(libc, limits, hidden: tuple[str, ...], workdir: str, writable: tuple[str, ...] = ()) -> None:
    """``writable`` directories stay writable (a kernel's socket directory, shared with the grader)."""
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
    for path in writable:
        _check(libc.mount(path.encode(), path.encode(), None, MS_BIND, None), f"keep {path} writable")
    for point, kept in _mount_points():
        # Best effort per mount: a few pseudo filesystems refuse a remount; everything a
        # submission could write to (disks, tmpfs, /dev/shm) accepts it.
        if point not in writable:
            libc.mount(None, point.encode(), None, MS_REMOUNT | MS_BIND | MS_RDONLY | kept, None)
    _private_workdir(libc, limits, workdir)
    _become_pid_one(libc)


def fork_into_own_pid_namespace(libc, home_namespace: int) -> int:
    """``os.fork()`` whose child is the init (PID 1) of a PID namespace of its own.

    The fork server's children need that so a submission's processes all die with
    it. ``unshare(CLONE_NEWPID)`` only moves the caller's *next* children, once;
    ``setns`` back to ``home_namespace`` (the server's own, an open
    ``/proc/self/ns/pid``) re-arms it for the next fork. Cheaper than forking a
    relay process per submission, and the server sees the worker's own exit status.
    """
    _check(libc.unshare(CLONE_NEWPID), "unshare a PID namespace")
    try:
        pid = os.fork()
    except OSError:
        libc.setns(home_namespace, CLONE_NEWPID)
        raise
    if pid != 0:  # in the server
        _check(libc.setns(home_namespace, CLONE_NEWPID), "return to the server's PID namespace")
    return pid


def enter_submission_namespaces(libc, limits, workdir: str, readonly: tuple[str, ...]) -> None:
    """In a child of the fork server (already PID 1 of its own PID namespace, inside the server's user,
    network and mount namespaces): a mount namespace of its own with a fresh /proc, its private working
    directory, and ``readonly`` (the server's working directory) made read-only so no submission can
    leave anything for the next."""
    libc.prctl(PR_SET_PDEATHSIG, signal.SIGKILL, 0, 0, 0)
    _check(libc.unshare(CLONE_NEWNS), "unshare a mount namespace")
    _check(libc.mount(None, b"/", None, MS_REC | MS_PRIVATE, None), "make mounts private")
    kept = dict(_mount_points())
    for path in readonly:
        if path in kept:
            libc.mount(None, path.encode(), None, MS_REMOUNT | MS_BIND | MS_RDONLY | kept[path], None)
    libc.mount(b"proc", b"/proc", b"proc", MS_NOSUID | MS_NODEV | MS_NOEXEC, None)
    _private_workdir(libc, limits, workdir)


def _private_workdir(libc, limits, workdir: str) -> None:
    size = f"size={limits.file_size_mb}m,mode=700".encode()
    _check(libc.mount(b"tmpfs", workdir.encode(), b"tmpfs", MS_NOSUID | MS_NODEV, size), "mount the work directory")
    os.chdir(workdir)  # an earlier chdir points at the directory now covered by the tmpfs


def _become_pid_one(libc) -> None:
    """Fork into the new PID namespace; this process stays behind only to relay the exit status."""
    child = os.fork()
    if child == 0:
        libc.prctl(PR_SET_PDEATHSIG, signal.SIGKILL, 0, 0, 0)
        # A fresh /proc shows only this namespace's processes; where a container's masked
        # /proc forbids it, the inherited one stays (the grader's memory is still not ptrace-able
        # from here: the sandbox holds no capability in the grader's user namespace).
        libc.mount(b"proc", b"/proc", b"proc", MS_NOSUID | MS_NODEV | MS_NOEXEC, None)
        return
    # If the grader dies, so does this relay, and with it (PDEATHSIG) the worker: a kernel, which
    # never reads the grader's channel before it serves, would otherwise outlive it.
    libc.prctl(PR_SET_PDEATHSIG, signal.SIGKILL, 0, 0, 0)
    os.closerange(0, 65536)  # hold no pipe open: the grader must see EOF when the worker ends
    signal.signal(signal.SIGCHLD, signal.SIG_DFL)
    for number in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP):
        signal.signal(number, signal.SIG_IGN)  # a kernel interrupt is for the worker, not for this relay
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
        signal.pthread_sigmask(signal.SIG_UNBLOCK, [number])
        os.kill(os.getpid(), number)
    os._exit(os.waitstatus_to_exitcode(status) & 0xFF)


