# A notebook cell, written as a hostile student would (tests/test_sandbox_holds.py, issue 11).
#
# Not a test module: its text becomes a code cell of a probe notebook, after a first line
# ``_SBX = json.loads(...)`` that says what to look for. ``_sbx_probe(stage)`` looks at the
# sandbox from inside, tries every escape the issue lists, and writes one line
# ``SBXPROBE {json}`` straight to the process's output (fd 1, or the copy ipykernel keeps of
# it), which the grader keeps in the report's ``output_excerpt`` for the test to read back.
#
# Every attempt that could change the process itself (unshare, ptrace, chroot, clone...) runs in
# a forked child that reports (return value, errno) over a pipe; attempts on shared state (the
# mount namespace, keyrings, SysV IPC, the hostname) persist, as they would for an attacker.
# Arguments are chosen so that, without a seccomp filter, each call would succeed or fail with a
# *different* errno than EPERM/ENOSYS, yet change nothing on the host even when the sandbox is
# missing entirely (bad magic for reboot, nonexistent paths for swapon/acct/pivot_root, a
# handle that resolves to nothing). Mount-table attacks and sethostname are skipped outright
# when the probe finds itself in the test's own mount/UTS namespace: there they would hit the
# real machine.
import ctypes
import errno as _sbx_errno
import json
import os
import platform
import select
import socket
import sys

_SBX_STATE = {"called": False, "ref": None}
_SBX_LIBC = ctypes.CDLL(None, use_errno=True)
_SBX_LIBC.syscall.restype = ctypes.c_long
_SBX_NR = {
    "x86_64": dict(mount=165, umount2=166, unshare=272, setns=308, ptrace=101, keyctl=250, add_key=248,
                   request_key=249, bpf=321, perf_event_open=298, userfaultfd=323, io_uring_setup=425,
                   io_uring_enter=426, io_uring_register=427, chroot=161, pivot_root=155, process_vm_readv=310,
                   process_vm_writev=311, kexec_load=246, kexec_file_load=320, init_module=175, finit_module=313,
                   delete_module=176, reboot=169, swapon=167, swapoff=168, acct=163, open_by_handle_at=304,
                   clone=56, clone3=435, sethostname=170, shmget=29),
    "aarch64": dict(mount=40, umount2=39, unshare=97, setns=268, ptrace=117, keyctl=219, add_key=217,
                    request_key=218, bpf=280, perf_event_open=241, userfaultfd=282, io_uring_setup=425,
                    io_uring_enter=426, io_uring_register=427, chroot=51, pivot_root=41, process_vm_readv=270,
                    process_vm_writev=271, kexec_load=104, kexec_file_load=294, init_module=105, finit_module=273,
                    delete_module=106, reboot=142, swapon=224, swapoff=225, acct=89, open_by_handle_at=265,
                    clone=220, clone3=435, sethostname=161, shmget=194),
}.get(platform.machine(), {})
CLONE_NEWNS, CLONE_NEWUTS, CLONE_NEWUSER, CLONE_NEWNET = 0x20000, 0x4000000, 0x10000000, 0x40000000
MS_RDONLY, MS_NOSUID, MS_NODEV, MS_NOEXEC, MS_REMOUNT, MS_BIND = 0x1, 0x2, 0x4, 0x8, 0x20, 0x1000
MNT_DETACH, MNT_EXPIRE = 2, 4
KEY_SPEC_SESSION_KEYRING = -3
_SBX_KEPT_FLAGS = {"nosuid": MS_NOSUID, "nodev": MS_NODEV, "noexec": MS_NOEXEC}


def _sbx_arg(value):
    if isinstance(value, bool) or isinstance(value, int):
        return ctypes.c_long(int(value))
    if isinstance(value, bytes):
        return ctypes.c_char_p(value)
    if value is None:
        return ctypes.c_void_p(None)
    return value  # a ctypes buffer: passed by address


def _sbx_sys(name, *args):
    """A raw system call by name: its return value (-1 and errno on failure)."""
    number = _SBX_NR.get(name)
    if number is None:
        raise OSError(_sbx_errno.ENOSYS, f"no syscall number for {name} on {platform.machine()}")
    return _SBX_LIBC.syscall(ctypes.c_long(number), *[_sbx_arg(a) for a in args])


def _sbx_in_child(attempt):
    """``attempt()`` in a forked child: [return value, errno name] (or [None, what went wrong])."""
    read_end, write_end = os.pipe()
    try:
        pid = os.fork()
    except OSError as error:
        os.close(read_end)
        os.close(write_end)
        return [None, f"fork: {_sbx_errno.errorcode.get(error.errno, error.errno)}"]
    if pid == 0:
        try:
            os.close(read_end)
            ctypes.set_errno(0)
            result = attempt()
            code = ctypes.get_errno() if result == -1 else 0
            message = json.dumps([int(result), _sbx_errno.errorcode.get(code, code) if code else 0])
        except BaseException as error:  # report, never fall back into the notebook's code
            message = json.dumps([None, repr(error)[:120]])
        try:
            os.write(write_end, message.encode())
        finally:
            os._exit(0)
    os.close(write_end)
    data = b""
    ready, _, _ = select.select([read_end], [], [], 3.0)
    if ready:
        while True:
            chunk = os.read(read_end, 4096)
            if not chunk:
                break
            data += chunk
    os.close(read_end)
    if not data:
        try:
            os.kill(pid, 9)
        except OSError:
            pass
    try:
        os.waitpid(pid, 0)
    except ChildProcessError:
        pass
    return json.loads(data) if data else [None, "no answer from the child"]


def _sbx_clone(flags_for):
    """A raw clone/clone3 that creates a new user namespace; the clone itself exits at once."""
    def attempt():
        result = flags_for()
        if result == 0:  # in the clone
            os._exit(0)
        if result > 0:
            os.waitpid(result, 0)
        return result
    return attempt


def _sbx_iovec(buffer):
    class IoVec(ctypes.Structure):
        _fields_ = [("base", ctypes.c_void_p), ("length", ctypes.c_size_t)]
    return IoVec(ctypes.cast(buffer, ctypes.c_void_p), len(buffer))


def _sbx_process_vm(name):
    def attempt():
        source, target = ctypes.create_string_buffer(b"x" * 16), ctypes.create_string_buffer(16)
        local, remote = _sbx_iovec(target), _sbx_iovec(source)
        return _sbx_sys(name, os.getpid(), ctypes.byref(local), 1, ctypes.byref(remote), 1, 0)
    return attempt


def _sbx_setns():
    fd = os.open("/proc/self/ns/net", os.O_RDONLY)
    return _sbx_sys("setns", fd, CLONE_NEWNET)


def _sbx_bpf():
    attr = ctypes.create_string_buffer(128)  # BPF_MAP_CREATE of a one-entry array map
    for offset, value in ((0, 2), (4, 4), (8, 4), (12, 1)):
        ctypes.c_uint32.from_buffer(attr, offset).value = value
    return _sbx_sys("bpf", 0, attr, 128)


def _sbx_perf():
    attr = ctypes.create_string_buffer(128)  # a software task-clock counter on this process, user space only
    ctypes.c_uint32.from_buffer(attr, 0).value = 1
    ctypes.c_uint32.from_buffer(attr, 4).value = 128
    ctypes.c_uint64.from_buffer(attr, 8).value = 1
    ctypes.c_uint64.from_buffer(attr, 40).value = 1 | 32 | 64  # disabled, exclude_kernel, exclude_hv
    return _sbx_sys("perf_event_open", attr, 0, -1, -1, 8)


def _sbx_open_by_handle():
    handle = ctypes.create_string_buffer(16)
    ctypes.c_uint32.from_buffer(handle, 0).value = 8
    ctypes.c_int32.from_buffer(handle, 4).value = 1
    return _sbx_sys("open_by_handle_at", os.open("/", os.O_RDONLY), handle, os.O_RDONLY)


def _sbx_clone3_args():
    args = ctypes.create_string_buffer(88)
    ctypes.c_uint64.from_buffer(args, 0).value = CLONE_NEWUSER
    ctypes.c_uint64.from_buffer(args, 32).value = 17  # SIGCHLD
    return _sbx_sys("clone3", args, 88)


_SBX_SYSCALLS = {
    "mount_remount_root": lambda: _sbx_sys("mount", None, b"/", None, MS_REMOUNT | MS_BIND, None),
    "unshare_user": lambda: _sbx_sys("unshare", CLONE_NEWUSER),
    "unshare_mount": lambda: _sbx_sys("unshare", CLONE_NEWNS),
    "setns": _sbx_setns,
    "ptrace_traceme": lambda: _sbx_sys("ptrace", 0, 0, None, None),
    "keyctl_session_id": lambda: _sbx_sys("keyctl", 0, KEY_SPEC_SESSION_KEYRING, 0),
    "add_key": lambda: _sbx_sys("add_key", b"user", ("sbxprobe-attempt-" + _SBX["name"]).encode(), b"x", 1,
                                KEY_SPEC_SESSION_KEYRING),
    "request_key": lambda: _sbx_sys("request_key", b"user", _SBX["host_key"].encode(), None, 0),
    "bpf": _sbx_bpf,
    "perf_event_open": _sbx_perf,
    "userfaultfd": lambda: _sbx_sys("userfaultfd", os.O_CLOEXEC | 1),  # UFFD_USER_MODE_ONLY
    "io_uring_setup": lambda: _sbx_sys("io_uring_setup", 1, ctypes.create_string_buffer(120)),
    "io_uring_enter": lambda: _sbx_sys("io_uring_enter", -1, 0, 0, 0, None, 0),
    "io_uring_register": lambda: _sbx_sys("io_uring_register", -1, 0, None, 0),
    "chroot": lambda: _sbx_sys("chroot", b"/"),
    "pivot_root": lambda: _sbx_sys("pivot_root", b"/sbxprobe-nonexistent", b"/sbxprobe-nonexistent"),
    "process_vm_readv": _sbx_process_vm("process_vm_readv"),
    "process_vm_writev": _sbx_process_vm("process_vm_writev"),
    "kexec_load": lambda: _sbx_sys("kexec_load", 0, 0, None, 0),
    "kexec_file_load": lambda: _sbx_sys("kexec_file_load", -1, -1, 0, b"", 0),
    "init_module": lambda: _sbx_sys("init_module", None, 0, b""),
    "finit_module": lambda: _sbx_sys("finit_module", -1, b"", 0),
    "delete_module": lambda: _sbx_sys("delete_module", b"sbxprobe_nonexistent", os.O_NONBLOCK),
    "reboot": lambda: _sbx_sys("reboot", 0, 0, 0, None),  # bad magic: EINVAL once permitted, never a reboot
    "swapon": lambda: _sbx_sys("swapon", b"/sbxprobe-nonexistent", 0),
    "swapoff": lambda: _sbx_sys("swapoff", b"/sbxprobe-nonexistent"),
    "acct": lambda: _sbx_sys("acct", b"/sbxprobe-nonexistent/acct"),
    "open_by_handle_at": _sbx_open_by_handle,
    "clone_newuser": _sbx_clone(lambda: _sbx_sys("clone", CLONE_NEWUSER | 17, 0, None, None, 0)),
    "clone3_newuser": _sbx_clone(_sbx_clone3_args),
}


def _sbx_read(path, limit=65536):
    try:
        with open(path, "rb") as handle:
            return handle.read(limit).decode("utf-8", "replace")
    except OSError as error:
        return None if error.errno == _sbx_errno.ENOENT else f"<{_sbx_errno.errorcode.get(error.errno, error.errno)}>"


def _sbx_secret(path):
    """"read" when the file's content came back, else why not (ENOENT, EACCES...)."""
    content = _sbx_read(path)
    if content is None:
        return "ENOENT"
    return content[1:-1] if content.startswith("<") and content.endswith(">") else "read"


def _sbx_error(error):
    return _sbx_errno.errorcode.get(getattr(error, "errno", None), type(error).__name__)


def _sbx_status():
    text = _sbx_read("/proc/self/status") or ""
    wanted = ("CapInh", "CapPrm", "CapEff", "CapBnd", "CapAmb", "NoNewPrivs", "Seccomp")
    return {k.strip(): v.strip() for k, _, v in (line.partition(":") for line in text.splitlines()) if k in wanted}


def _sbx_namespaces():
    found = {}
    for kind in ("user", "mnt", "pid", "net", "ipc", "uts", "cgroup"):
        try:
            found[kind] = os.readlink(f"/proc/self/ns/{kind}")
        except OSError as error:
            found[kind] = f"<{_sbx_error(error)}>"
    return found


def _sbx_mounts():
    """(mount point, root within its file system, fs type, source, options) for every mount."""
    mounts = []
    for line in (_sbx_read("/proc/self/mountinfo") or "").splitlines():
        fields = line.split(" ")
        if " - " not in line or len(fields) < 6:
            continue
        after = line.split(" - ", 1)[1].split(" ")
        unescape = lambda s: s.replace("\\040", " ").replace("\\011", "\t").replace("\\012", "\n").replace("\\134", "\\")
        mounts.append([unescape(fields[4]), unescape(fields[3]), after[0], unescape(after[1]) if len(after) > 1 else "",
                       fields[5]])  # (the options are only used here, to keep nosuid/nodev in a remount)
    return mounts


def _sbx_needed():
    """Paths Python itself needs here (its prefix, its path, the site view's targets), and the work dir."""
    needed = {os.getcwd(), sys.prefix, sys.base_prefix, sys.exec_prefix, os.path.dirname(os.path.realpath(sys.executable))}
    for entry in sys.path:
        if entry and os.path.isdir(entry):
            needed.update({entry, os.path.realpath(entry)})
            if "site-view" in entry:
                for name in os.listdir(entry):
                    needed.add(os.path.dirname(os.path.realpath(os.path.join(entry, name))))
    own = _sbx_own_connection_file()
    if own:
        needed.add(os.path.dirname(own))
    return {os.path.normpath(p) for p in needed if p}


def _sbx_own_connection_file():
    """A kernel's own connection file (``-f PATH`` on its command line): the one it may read."""
    args = (_sbx_read("/proc/self/cmdline") or "").split("\0")
    return args[args.index("-f") + 1] if "-f" in args[:-1] else None


def _sbx_visible(roots, allowed):
    """Per root: the entries that are neither needed paths nor on the way to one (a host path showing).

    A root that is not the host's directory (another device or inode than the test saw outside, such
    as a fresh tmpfs at /tmp) is the sandbox's own: "private", whatever it holds."""
    result = {}
    for root in roots:
        if not os.path.isdir(root):
            result[root] = "absent" if not os.path.lexists(root) else "not a directory"
            continue
        info, host = os.stat(root), _SBX["host_dirs"].get(root)
        if host is None or [info.st_dev, info.st_ino] != host:
            result[root] = "private"
            continue
        try:
            names = sorted(os.listdir(root))
        except OSError as error:
            result[root] = f"<{_sbx_error(error)}>"
            continue
        leaked = []
        for name in names:
            path = os.path.join(root, name)
            if not any(a == path or a.startswith(path + "/") or path.startswith(a + "/") for a in allowed):
                leaked.append(name)
        result[root] = leaked[:25] + ([f"... {len(leaked) - 25} more"] if len(leaked) > 25 else [])
    return result


def _sbx_allowed(roots, mounts):
    needed = _sbx_needed()
    for point, *_ in mounts:  # what was mounted in on purpose, except a whole root (that is the host's)
        if point != "/" and not any(point == r or r.startswith(point + "/") for r in roots):
            needed.add(point)
    return sorted(needed)


def _sbx_umount_all(mounts, vital_too):
    """umount2 every mount point, deepest first: detach the ordinary ones (the attack), and only mark
    the ones this process needs to keep running (``MNT_EXPIRE``: a first call never unmounts)."""
    needed = _sbx_needed() | {"/", "/proc", "/dev", "/dev/null", "/dev/zero", "/dev/urandom", "/dev/random"}
    results = {}
    for point in dict.fromkeys(m[0] for m in reversed(mounts)):  # a stacked mount point once: the top one
        vital = point in needed or point.startswith("/proc/") or any(n.startswith(point.rstrip("/") + "/") for n in needed)
        if vital and not vital_too:
            continue
        flag = MNT_EXPIRE if vital else MNT_DETACH
        results[point] = _sbx_in_child(lambda p=point, f=flag: _sbx_sys("umount2", p.encode(), f))
    return results


def _sbx_summary(results):
    """How many attempts there were and which were not refused (EPERM/ENOSYS): short enough to print."""
    other = {k: v for k, v in results.items() if v[0] != -1 or v[1] not in ("EPERM", "ENOSYS")}
    return {"attempted": len(results), "not_refused": other}


def _sbx_remount_all(mounts):
    """Make every mount writable again (what the issue's escape did first)."""
    results = {}
    for point, _, _, _, options in reversed(mounts):
        if point in results:
            continue  # stacked: only the top one is reachable by path
        flags = MS_REMOUNT | MS_BIND
        for option in options.split(","):
            flags |= _SBX_KEPT_FLAGS.get(option, 0)
        results[point] = _sbx_in_child(lambda p=point, f=flags: _sbx_sys("mount", None, p.encode(), None, f, None))
    return results


def _sbx_try_write(path, text, create=False):
    try:
        with open(path, "x" if create else "r+") as handle:
            handle.write(text)
        return "written"
    except OSError as error:
        return _sbx_error(error)


def _sbx_load_reference():
    """If the reference solution is readable anywhere, load it (the issue's 100/100 escape)."""
    import importlib
    import importlib.util

    for base in _SBX["reference_dirs"]:
        init = os.path.join(base, "__init__.py")
        if not os.path.isfile(init):
            continue
        try:
            spec = importlib.util.spec_from_file_location("_sbxref", init, submodule_search_locations=[base])
            module = importlib.util.module_from_spec(spec)
            sys.modules["_sbxref"] = module
            spec.loader.exec_module(module)
            _SBX_STATE["ref"] = importlib.import_module("_sbxref.simple_nn")
            return base
        except Exception as error:
            return f"<{type(error).__name__}: {str(error)[:80]}>"
    return None


def _sbx_connect(family, address):
    try:
        with socket.socket(family, socket.SOCK_STREAM) as sock:
            sock.settimeout(1.0)
            sock.connect(address)
            sock.sendall(b"sbxprobe " + _SBX["name"].encode())
        return "connected"
    except OSError as error:
        return _sbx_error(error)


def _sbx_shm_lookup(key):
    _SBX_LIBC.shmget.argtypes = [ctypes.c_int, ctypes.c_size_t, ctypes.c_int]
    result = _SBX_LIBC.shmget(key, 0, 0)
    return [result, _sbx_errno.errorcode.get(ctypes.get_errno(), 0) if result == -1 else 0]


def _sbx_processes():
    found = []
    for name in sorted(os.listdir("/proc"), key=lambda n: (len(n), n)):
        if name.isdigit():
            cmdline = (_sbx_read(f"/proc/{name}/cmdline") or "").replace("\0", " ").strip()
            found.append([int(name), cmdline[:80]])
    return found[:40]


def _sbx_devices():
    import stat as _stat

    entries = {}
    try:
        for name in sorted(os.listdir("/dev")):
            try:
                mode = os.lstat(os.path.join("/dev", name)).st_mode
            except OSError:
                continue
            entries[name] = ("chr" if _stat.S_ISCHR(mode) else "blk" if _stat.S_ISBLK(mode) else
                             "dir" if _stat.S_ISDIR(mode) else "lnk" if _stat.S_ISLNK(mode) else "other")
    except OSError as error:
        entries["<error>"] = _sbx_error(error)
    works = {}
    for name, check in (("null", lambda: open("/dev/null", "wb").write(b"x") == 1),
                        ("zero", lambda: open("/dev/zero", "rb").read(4) == b"\0" * 4),
                        ("urandom", lambda: len(open("/dev/urandom", "rb").read(8)) == 8)):
        try:
            works[name] = bool(check())
        except OSError as error:
            works[name] = _sbx_error(error)
    return entries, works


def _sbx_workfile():
    path = os.path.join(os.getcwd(), f"sbxprobe-{_SBX['name']}.txt")
    with open(path, "w") as handle:
        handle.write("mine")
    info = os.stat(path)
    return {"path": path, "st_uid": info.st_uid, "st_gid": info.st_gid, "uid": os.getuid(), "gid": os.getgid()}


def _sbx_emit(report):
    line = "\nSBXPROBE " + json.dumps(report, sort_keys=True) + "\n"
    try:
        sys.stdout.flush()
    except Exception:
        pass
    fd = getattr(sys.stdout, "_original_stdstream_copy", None)  # ipykernel captures fd 1 (lost during calls)
    data = line.encode()
    while data:
        data = data[os.write(fd if isinstance(fd, int) else 1, data):]


def _sbx_probe(stage):
    """Look, attack, plant (``cell`` stage only), and report one line."""
    report = {"stage": stage, "name": _SBX["name"], "token": _SBX["token"], "arch": platform.machine(),
              "uid": os.getuid(), "gid": os.getgid(), "euid": os.geteuid(), "cwd": os.getcwd()}
    problems = report["problems"] = []

    def step(key, function, *args):
        try:
            report[key] = function(*args)
        except BaseException as error:  # one failed look must not hide the rest
            problems.append(f"{key}: {type(error).__name__}: {str(error)[:160]}")

    step("status", _sbx_status)
    step("uid_map", _sbx_read, "/proc/self/uid_map")
    step("gid_map", _sbx_read, "/proc/self/gid_map")
    step("namespaces", _sbx_namespaces)
    step("hostname", socket.gethostname)
    step("processes", _sbx_processes)
    step("devices", _sbx_devices)
    mounts = []
    step("mounts", lambda: [m[:4] for m in mounts.extend(_sbx_mounts()) or mounts])
    roots = _SBX["roots"]
    allowed = []
    step("allowed", lambda: allowed.extend(_sbx_allowed(roots, mounts)) or allowed[:40])
    step("visible", _sbx_visible, roots, allowed)
    step("exists", lambda: {p: os.path.lexists(p) for p in _SBX["must_not_exist"]})
    step("secrets", lambda: {p: _sbx_secret(p) for p in _SBX["secret_files"]})
    connection = _sbx_own_connection_file()
    step("kernel_files", lambda: {p: _sbx_read(p) is not None and not _sbx_read(p).startswith("<")
                                  for d in (os.listdir("/tmp") if os.path.isdir("/tmp") else [])
                                  if d.startswith("grader-kernel-")
                                  for p in [os.path.join("/tmp", d, "connection.json")] if p != connection})
    # What other submissions (or the operator) left behind, looked for before this one plants anything.
    step("other_shm", lambda: {n: _sbx_shm_lookup(k) for n, k in _SBX["shm_keys"].items() if n != _SBX["name"]})
    step("keys", lambda: [l for l in (_sbx_read("/proc/keys") or "").splitlines() if "sbx" in l])
    step("other_markers", lambda: {n: [p for p in (_SBX["marker_prefix"] + n, os.path.join(os.getcwd(), f"sbxprobe-{n}.txt"))
                                       if os.path.lexists(p)] for n in _SBX["shm_keys"] if n != _SBX["name"]})
    step("network", lambda: {"tcp": _sbx_connect(socket.AF_INET, ("127.0.0.1", _SBX["tcp_port"])),
                             "abstract": _sbx_connect(socket.AF_UNIX, "\0" + _SBX["abstract_name"])})
    step("workfile", _sbx_workfile)

    # Unknown (no /proc/self/ns) counts as the host's: never risk the machine's mount table or name.
    own = report.get("namespaces") or {}
    in_host_mounts = not str(own.get("mnt")).startswith("mnt:[") or own["mnt"] == _SBX["host_namespaces"].get("mnt")
    in_host_uts = not str(own.get("uts")).startswith("uts:[") or own["uts"] == _SBX["host_namespaces"].get("uts")
    skipped = {"mount_remount_root"} if in_host_mounts else set()
    if in_host_mounts:
        problems.append("in the host's mount namespace: mount-table attacks skipped (they would hit the machine)")
    if _SBX_NR:
        step("syscalls", lambda: {n: _sbx_in_child(f) for n, f in _SBX_SYSCALLS.items() if n not in skipped})
    else:
        problems.append(f"no syscall table for {platform.machine()}")

    # The escape: unmount what hides the grader, make everything writable, then write on the host.
    if not in_host_mounts and _SBX_NR:
        step("umount", lambda: _sbx_summary(_sbx_umount_all(mounts, stage == "cell")))
        step("remount", lambda: _sbx_summary(_sbx_remount_all(_sbx_mounts())))
    after = _sbx_mounts()
    step("visible_after", _sbx_visible, roots, _sbx_allowed(roots, after))
    step("exists_after", lambda: {p: os.path.lexists(p) for p in _SBX["must_not_exist"]})
    step("writes", lambda: {
        "tmp_canary": _sbx_try_write(_SBX["tmp_canary"], "PWNED by " + _SBX["name"]),
        "package_canary": _sbx_try_write(_SBX["package_canary"], "PWNED by " + _SBX["name"]),
        "new_tmp_file": _sbx_try_write(_SBX["marker_prefix"] + _SBX["name"], "left by " + _SBX["name"], create=True),
    })
    step("reference", _sbx_load_reference)

    if stage == "cell":  # leave state behind for the next submission to find (it must not)
        _SBX_LIBC.shmget.argtypes = [ctypes.c_int, ctypes.c_size_t, ctypes.c_int]
        plant = report["plant"] = {}
        plant["shmget"] = _sbx_in_child(lambda: _SBX_LIBC.shmget(_SBX["shm_keys"][_SBX["name"]], 4096, 0o1000 | 0o666))
        plant["add_key"] = _sbx_in_child(lambda: _sbx_sys("add_key", b"user", ("sbxprobe-" + _SBX["name"]).encode(),
                                                          b"left behind", 11, KEY_SPEC_SESSION_KEYRING))
        if in_host_uts:
            problems.append("in the host's UTS namespace: sethostname skipped (it would rename the machine)")
        elif _SBX_NR:
            wanted = ("sbxprobe-" + _SBX["name"]).encode()
            plant["sethostname"] = _sbx_in_child(lambda: _sbx_sys("sethostname", wanted, len(wanted)))
    _sbx_emit(report)
    return report


def _sbx_on_call():
    """Run the probe once from inside the first graded function the grader calls (after the last cell):
    the call path must be as confined as the cells."""
    if _SBX_STATE.get("cells_done") and not _SBX_STATE["called"]:
        _SBX_STATE["called"] = True
        _sbx_probe("call")
