"""The system calls that put a sandbox process in its jail: namespaces, a minimal root, no privilege.

Used in two places: between fork and exec of a freshly started sandbox (as
``subprocess``'s ``preexec_fn``), and inside the fork server, which receives this
file as source text. So it imports only the standard library, nothing from the
grader, and does no work at import time. ``grader/confine.py`` decides *whether*
and *how* to confine and hands over a plain-data *plan*; this module only
carries it out, in bubblewrap's order:

1. namespaces: user (mapping the sandbox to an unprivileged host uid), mount,
   PID, network, IPC, UTS and cgroup;
2. a PID namespace whose init is the sandbox (``become_pid_one``);
3. a minimal root file system built on a tmpfs (``build_root``): read-only
   binds of ``/usr``, the interpreter and each installed package the site view
   lists, a synthetic ``/etc``, three device nodes, a ``/proc`` of its own PID
   namespace, and nothing of the host's ``/tmp``, ``/home``, ``/root``, the
   grader or the reference; then ``pivot_root`` into it and the old root detached;
4. a private size-limited tmpfs working directory;
5. ``lock_down``: a fresh session keyring, no capabilities (effective,
   permitted, inheritable, ambient and bounding), locked securebits,
   ``PR_SET_NO_NEW_PRIVS`` and a seccomp filter compiled on the trusted side by
   libseccomp.

Hand-written on ctypes rather than by running ``bwrap``: the fork server must
repeat steps 2, 4 and 5 for each submission *inside* an already confined,
preloaded interpreter, in milliseconds, which a separate program cannot do.
"""
import ctypes
import ctypes.util
import os
import resource
import signal
import sys
from typing import Any, Protocol

# Linux constants (include/uapi/linux/sched.h, mount.h, prctl.h, capability.h, securebits.h).
CLONE_NEWNS, CLONE_NEWCGROUP, CLONE_NEWUTS, CLONE_NEWIPC = 0x00020000, 0x02000000, 0x04000000, 0x08000000
CLONE_NEWUSER, CLONE_NEWPID, CLONE_NEWNET = 0x10000000, 0x20000000, 0x40000000
MS_RDONLY, MS_NOSUID, MS_NODEV, MS_NOEXEC = 0x1, 0x2, 0x4, 0x8
MS_REMOUNT, MS_BIND, MS_REC, MS_PRIVATE = 0x20, 0x1000, 0x4000, 0x40000
MS_NOATIME, MS_NODIRATIME, MS_RELATIME, MS_STRICTATIME = 0x400, 0x800, 0x200000, 0x1000000
MNT_DETACH = 2
PR_SET_PDEATHSIG, PR_SET_DUMPABLE, PR_SET_NAME, PR_CAPBSET_DROP = 1, 4, 15, 24
PR_SET_SECUREBITS, PR_SET_NO_NEW_PRIVS, PR_CAP_AMBIENT, PR_CAP_AMBIENT_CLEAR_ALL = 28, 38, 47, 4
PR_SET_SECCOMP, SECCOMP_MODE_FILTER = 22, 2
#: NOROOT, NO_SETUID_FIXUP, KEEP_CAPS_LOCKED, NO_CAP_AMBIENT_RAISE, each with its lock bit.
SECUREBITS_LOCKED = 0x01 | 0x02 | 0x04 | 0x08 | 0x20 | 0x40 | 0x80
KEYCTL_JOIN_SESSION_KEYRING = 1
_LINUX_CAPABILITY_VERSION_3 = 0x20080522
_MOUNT_OPTION_FLAGS = {"ro": MS_RDONLY, "nosuid": MS_NOSUID, "nodev": MS_NODEV, "noexec": MS_NOEXEC,
                       "noatime": MS_NOATIME, "nodiratime": MS_NODIRATIME, "relatime": MS_RELATIME,
                       "strictatime": MS_STRICTATIME}

#: Where things are inside a namespaced sandbox, whatever their host paths.
SANDBOX_SITE = "/site"
SANDBOX_WORKDIR = "/work"
SANDBOX_HOSTNAME = b"sandbox"

_LIBC: list[ctypes.CDLL | None] = []


class RLimits(Protocol):
    """What ``set_rlimits`` reads: a ``grader.sandbox.limits.Limits``, or the fork server's copy of one."""

    @property
    def memory_mb(self) -> int: ...
    @property
    def cpu_time_s(self) -> float: ...
    @property
    def file_size_mb(self) -> int: ...
    @property
    def max_processes(self) -> int: ...


def libc() -> ctypes.CDLL | None:
    """The C library with the calls below typed, or None off Linux (cached: resolved before any fork)."""
    if _LIBC:
        return _LIBC[0]
    _LIBC.append(_load_libc())
    return _LIBC[0]


def _load_libc() -> ctypes.CDLL | None:
    if not sys.platform.startswith("linux"):
        return None
    try:
        libc = _c_library()
        libc.mount.argtypes = [ctypes.c_char_p, ctypes.c_char_p, ctypes.c_char_p, ctypes.c_ulong, ctypes.c_char_p]
        libc.umount2.argtypes = [ctypes.c_char_p, ctypes.c_int]
        libc.unshare.argtypes = [ctypes.c_int]
        libc.prctl.argtypes = [ctypes.c_int, ctypes.c_ulong, ctypes.c_ulong, ctypes.c_ulong, ctypes.c_ulong]
        libc.setns.argtypes = [ctypes.c_int, ctypes.c_int]
        libc.capset.argtypes = [ctypes.c_void_p, ctypes.c_void_p]
        libc.syscall.restype = ctypes.c_long
        return libc
    except (OSError, AttributeError):
        return None


def _c_library() -> ctypes.CDLL:
    """The C library this Python is linked with, as ``dlopen(NULL)`` finds it; ``find_library`` only when that
    lacks ``unshare`` (a statically linked interpreter): it runs ``ldconfig -p`` in a forked child, a few ms
    on the path of every ``grader check`` before its sandbox can start."""
    own = ctypes.CDLL(None, use_errno=True)
    if hasattr(own, "unshare"):
        return own
    return ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6", use_errno=True)


# --- in the child, between fork and exec ------------------------------------------------
# Everything below runs in a forked child before exec (or in a fork server's child before
# student code): errors abort the start, and the caller reports them, rather than letting
# the worker run less confined than promised.


def set_process_name(libc: ctypes.CDLL | None, name: str) -> None:
    """What ``ps``, ``top`` and ``perf`` show for this process (15 bytes at most): an instructor
    watching a batch sees which processes are sandboxes and which are the grader."""
    if libc is not None:
        buffer = ctypes.create_string_buffer(name.encode()[:15])
        libc.prctl(PR_SET_NAME, ctypes.addressof(buffer), 0, 0, 0)


def _check(result: int, what: str) -> None:
    if result != 0:
        errno = ctypes.get_errno()
        raise OSError(errno, f"{what}: {os.strerror(errno)}")


#: Open files at once: far more than a notebook, numpy, matplotlib or a kernel's sockets use, and few enough
#: that the kernel memory each can pin outside the address space (a pipe's or a socket's buffer) stays small.
MAX_OPEN_FILES = 256


def set_rlimits(limits: RLimits, processes: bool) -> None:
    mib = 1 << 20
    values = [(resource.RLIMIT_AS, limits.memory_mb * mib), (resource.RLIMIT_CPU, int(limits.cpu_time_s) + 1),
              (resource.RLIMIT_FSIZE, limits.file_size_mb * mib), (resource.RLIMIT_CORE, 0),
              (resource.RLIMIT_NOFILE, MAX_OPEN_FILES)]
    if processes:
        values.append((resource.RLIMIT_NPROC, limits.max_processes))
    for which, value in values:
        try:
            _soft, hard = resource.getrlimit(which)
            if hard != resource.RLIM_INFINITY:
                value = min(value, hard)
            resource.setrlimit(which, (value, value))
        except (ValueError, OSError):
            pass


def _mount_points() -> list[tuple[str, int, str]]:
    """(mount point, flags that must be kept) for every mount, from /proc/self/mountinfo."""
    points = []
    with open("/proc/self/mountinfo", "rb") as handle:
        for line in handle.read().decode("utf-8", "replace").splitlines():
            fields = line.split(" ")
            if len(fields) < 6:
                continue
            point = fields[4].replace("\\040", " ").replace("\\011", "\t").replace("\\012", "\n").replace("\\134", "\\")
            flags = 0
            for option in fields[5].split(","):
                flags |= _MOUNT_OPTION_FLAGS.get(option, 0)
            fstype = fields[fields.index("-") + 1] if "-" in fields else ""
            points.append((point, flags, fstype))
    return points


def _write(path: str, text: str) -> None:
    with open(path, "w") as handle:
        handle.write(text)


def _map_ids(uid: int, gid: int) -> None:
    """In a new user namespace: the sandbox is uid 0 there, which is ``uid`` on the host (never 0)."""
    _write("/proc/self/setgroups", "deny")
    _write("/proc/self/uid_map", f"0 {uid} 1")
    _write("/proc/self/gid_map", f"0 {gid} 1")


def _unshare_optional(libc: ctypes.CDLL, flags: int, optional: int) -> None:
    """unshare ``flags``; the ``optional`` kinds (cgroup) are dropped where the kernel lacks them."""
    if libc.unshare(flags | optional) == 0:
        return
    _check(libc.unshare(flags), "unshare namespaces")


def drop_bounding_set(libc: ctypes.CDLL) -> None:
    """Empty the capability bounding set (needs CAP_SETPCAP, so before root leaves root)."""
    for capability in range(_last_capability() + 1):
        libc.prctl(PR_CAPBSET_DROP, capability, 0, 0, 0)


def drop_to(uid: int, gid: int) -> None:
    """Root leaves root on the host: no supplementary groups, then gid, then uid (which clears every capability).

    The uid change makes the process undumpable, which would leave its /proc files to root and
    its own uid_map unwritable: it is made dumpable again (``lock_down`` ends that)."""
    os.setgroups([])
    os.setresgid(gid, gid, gid)
    os.setresuid(uid, uid, uid)
    lib = libc()
    if lib is not None:
        lib.prctl(PR_SET_DUMPABLE, 1, 0, 0, 0)


def enter_sandbox(libc: ctypes.CDLL, plan: dict[str, Any]) -> None:
    """Steps 1-4 for a fresh sandbox process (a worker, a kernel or a fork server).

    ``plan["root"]``: the grader is root. The root is then built while still root on the
    host (the interpreter may live under /root, which only root can read), and only then does
    the process drop to the plan's unprivileged uid and create its user namespace, mapping that
    uid, never 0. An ordinary user creates the user namespace first, mapping its own uid.
    """
    shared = CLONE_NEWNS | CLONE_NEWNET | CLONE_NEWIPC | CLONE_NEWUTS
    if plan["root"]:
        _unshare_optional(libc, shared, CLONE_NEWCGROUP)
        build_root(libc, plan)
        drop_to(plan["uid"], plan["gid"])
        _check(libc.unshare(CLONE_NEWUSER | CLONE_NEWNS | CLONE_NEWPID), "unshare a user namespace as the sandbox user")
        _map_ids(plan["uid"], plan["gid"])
        become_pid_one(libc)
        _mount_proc(libc)  # over the host's, which the kernel requires to be visible first
    else:
        uid, gid = os.getuid(), os.getgid()
        _unshare_optional(libc, shared | CLONE_NEWUSER | CLONE_NEWPID, CLONE_NEWCGROUP)
        _map_ids(uid, gid)
        become_pid_one(libc)
        build_root(libc, plan)
    private_workdir(libc, plan["workdir_mb"])


def name_host(libc: ctypes.CDLL) -> None:
    """In the sandbox's own UTS namespace: a neutral host name instead of the grading machine's."""
    libc.sethostname(SANDBOX_HOSTNAME, len(SANDBOX_HOSTNAME))


def _make(path: str, kind: str) -> None:
    if kind == "file" or kind == "dev":
        os.makedirs(os.path.dirname(path), exist_ok=True)
        if not os.path.lexists(path):
            os.close(os.open(path, os.O_CREAT | os.O_WRONLY, 0o644))
    else:
        os.makedirs(path, exist_ok=True)


def build_root(libc: ctypes.CDLL, plan: dict[str, Any]) -> None:
    """Build the minimal root on a tmpfs mounted over ``plan["base"]`` and pivot into it.

    What is there is exactly what the plan lists; everything is read-only but the
    mounts made afterwards (the working directory and the plan's writable binds).
    """
    _check(libc.mount(None, b"/", None, MS_REC | MS_PRIVATE, None), "make mounts private")
    name_host(libc)
    new = plan["base"]
    _check(libc.mount(b"tmpfs", new.encode(), b"tmpfs", MS_NOSUID | MS_NODEV, b"size=1m,mode=755"),
           "mount the sandbox's root")
    for source, target, kind in plan["binds"]:
        inside = new + target
        _make(inside, kind)
        _check(libc.mount(source.encode(), inside.encode(), None, MS_BIND | MS_REC, None), f"bind {source}")
    for path in plan["writable"]:  # a kernel's socket directory, shared with the grader: the same path inside
        _make(new + path, "dir")
        _check(libc.mount(path.encode(), (new + path).encode(), None, MS_BIND, None), f"bind {path}")
        kept = os.statvfs(new + path).f_flag & (MS_NOATIME | MS_NODIRATIME | MS_RELATIME)
        _check(libc.mount(None, (new + path).encode(), None,
                          MS_REMOUNT | MS_BIND | MS_NOSUID | MS_NODEV | MS_NOEXEC | kept, None), f"restrict {path}")
    writable = {new + path for path in plan["writable"]}
    for path, text in plan["files"]:
        _make(new + path, "file")
        _write(new + path, text)
    for path in plan["covers"]:
        if os.path.isdir(new + path):
            _check(libc.mount(b"tmpfs", (new + path).encode(), b"tmpfs", MS_RDONLY | MS_NOSUID | MS_NODEV,
                              b"size=4k,mode=555"), f"cover {path}")
    for path in (SANDBOX_WORKDIR, "/proc"):
        os.makedirs(new + path, exist_ok=True)
    # Links last: a path built after them could run through one (an absolute target) out to the host.
    for target, link in plan["symlinks"]:
        if not os.path.lexists(new + link):
            os.makedirs(os.path.dirname(new + link), exist_ok=True)
            os.symlink(target, new + link)
    _check(libc.mount(b"proc", (new + "/proc").encode(), b"proc", MS_NOSUID | MS_NODEV | MS_NOEXEC, None),
           "mount /proc")
    for point, kept, fstype in _mount_points():
        if (point == new or point.startswith(new + "/")) and fstype != "proc" and point not in writable:
            # Every mount of the new root read-only, keeping the flags a user namespace may not clear.
            _check(libc.mount(None, point.encode(), None, MS_REMOUNT | MS_BIND | MS_RDONLY | MS_NOSUID | kept, None),
                   f"make {point[len(new):] or '/'} read-only")
    os.chdir(new)
    _check(libc.syscall(plan["pivot_root"], b".", b"."), "pivot_root")
    _check(libc.umount2(b".", MNT_DETACH), "detach the host's root")
    os.chdir("/")


def _mount_proc(libc: ctypes.CDLL) -> None:
    _check(libc.mount(b"proc", b"/proc", b"proc", MS_NOSUID | MS_NODEV | MS_NOEXEC, None), "mount /proc")


def private_workdir(libc: ctypes.CDLL, size_mb: int) -> None:
    """A fresh tmpfs at the working directory: nothing of another submission, bounded in size."""
    size = f"size={size_mb}m,mode=700".encode()
    _check(libc.mount(b"tmpfs", SANDBOX_WORKDIR.encode(), b"tmpfs", MS_NOSUID | MS_NODEV, size),
           "mount the work directory")
    os.chdir(SANDBOX_WORKDIR)


def become_pid_one(libc: ctypes.CDLL) -> None:
    """Fork into the new PID namespace; this process stays behind only to relay the exit status."""
    child = os.fork()
    if child == 0:
        libc.prctl(PR_SET_PDEATHSIG, signal.SIGKILL, 0, 0, 0)
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
        signum = os.WTERMSIG(status)
        signal.signal(signum, signal.SIG_DFL)
        signal.pthread_sigmask(signal.SIG_UNBLOCK, [signum])
        os.kill(os.getpid(), signum)
    os._exit(os.waitstatus_to_exitcode(status) & 0xFF)


def fork_into_own_pid_namespace(libc: ctypes.CDLL, home_namespace: int) -> int:
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


def enter_submission(libc: ctypes.CDLL, workdir_mb: int) -> None:
    """In a child of the fork server (already PID 1 of its own PID namespace, inside the server's
    user namespace and minimal root): mount, network, IPC and UTS namespaces of its own, so no
    submission sees what another left (a socket, shared memory, a host name); a fresh /proc; a
    private working directory."""
    libc.prctl(PR_SET_PDEATHSIG, signal.SIGKILL, 0, 0, 0)
    _check(libc.unshare(CLONE_NEWNS | CLONE_NEWNET | CLONE_NEWIPC | CLONE_NEWUTS), "unshare namespaces")
    _check(libc.mount(None, b"/", None, MS_REC | MS_PRIVATE, None), "make mounts private")
    _mount_proc(libc)
    name_host(libc)
    private_workdir(libc, workdir_mb)


class _CapHeader(ctypes.Structure):
    _fields_ = [("version", ctypes.c_uint32), ("pid", ctypes.c_int)]


class _CapData(ctypes.Structure):
    _fields_ = [("effective", ctypes.c_uint32), ("permitted", ctypes.c_uint32), ("inheritable", ctypes.c_uint32)]


class _SockFprog(ctypes.Structure):
    _fields_ = [("len", ctypes.c_ushort), ("filter", ctypes.c_void_p)]


def _last_capability() -> int:
    try:
        with open("/proc/sys/kernel/cap_last_cap") as handle:
            return int(handle.read())
    except (OSError, ValueError):
        return 63


def lock_down(libc: ctypes.CDLL, spec: dict[str, Any]) -> None:
    """Step 5, the last before student code: nothing the process could still do with privilege.

    ``spec``: ``bpf`` (the seccomp program as hex, compiled by libseccomp on the trusted side),
    ``keyctl`` (that system call's number here). Order matters: the keyring and securebits need
    the capabilities that the next steps drop; no_new_privs lets an unprivileged process load
    the filter, and the filter comes last because it refuses some of the calls before it.
    """
    number = spec.get("keyctl")
    if number is not None:
        # A new anonymous session keyring: nothing of the grader's, or a previous submission's, keys.
        libc.syscall(number, KEYCTL_JOIN_SESSION_KEYRING, None)
    libc.prctl(PR_SET_SECUREBITS, SECUREBITS_LOCKED, 0, 0, 0)  # refused without CAP_SETPCAP: then nothing to lock
    if spec.get("bounding", True):  # a fork server empties it once for all its children (0.5 ms each)
        drop_bounding_set(libc)  # refused without CAP_SETPCAP: a process without it cannot regain what it lacks
    libc.prctl(PR_CAP_AMBIENT, PR_CAP_AMBIENT_CLEAR_ALL, 0, 0, 0)
    header = _CapHeader(_LINUX_CAPABILITY_VERSION_3, 0)
    data = (_CapData * 2)()
    _check(libc.capset(ctypes.byref(header), ctypes.byref(data)), "drop capabilities")
    _check(libc.prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0), "set no_new_privs")
    libc.prctl(PR_SET_DUMPABLE, 0, 0, 0, 0)
    program = bytes.fromhex(spec.get("bpf") or "")
    if program:
        buffer = ctypes.create_string_buffer(program, len(program))
        fprog = _SockFprog(len(program) // 8, ctypes.addressof(buffer))
        _check(libc.prctl(PR_SET_SECCOMP, SECCOMP_MODE_FILTER, ctypes.addressof(fprog), 0, 0),
               "load the seccomp filter")
