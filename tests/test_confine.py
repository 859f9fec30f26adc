"""Which directories the sandbox's mount namespace covers, for the ways the grader is installed."""
import os
from pathlib import Path

import pytest

from grader.sandbox import confine


@pytest.fixture
def checkout(tmp_path, monkeypatch):
    """A source checkout laid out like this repository, with the grader package inside it."""
    for name in ("grader", "reference", "rubrics", "tests", ".git", ".venv/bin"):
        (tmp_path / name).mkdir(parents=True)
    (tmp_path / "pyproject.toml").write_text("[project]\nname = 'grader'\n")
    monkeypatch.setattr(confine, "_PACKAGE_DIR", tmp_path / "grader")
    return tmp_path


def test_an_interpreter_outside_the_checkout_gets_the_whole_checkout_covered(checkout, tmp_path_factory):
    elsewhere = tmp_path_factory.mktemp("venv")
    assert confine._grader_directories(str(elsewhere)) == (str(checkout),)


def test_a_venv_inside_the_checkout_stays_visible_and_every_other_folder_is_covered(checkout):
    hidden = confine._grader_directories(str(checkout / ".venv"))
    assert str(checkout / ".venv") not in hidden
    assert {Path(p).name for p in hidden} == {"grader", "reference", "rubrics", "tests", ".git"}


def test_an_installed_package_covers_only_itself(tmp_path, monkeypatch):
    package = tmp_path / "site-packages" / "grader"
    package.mkdir(parents=True)
    monkeypatch.setattr(confine, "_PACKAGE_DIR", package)
    assert confine._grader_directories(str(tmp_path)) == (str(package),)


# --- the plan of the minimal root and the lock-down ---------------------------------------


def test_every_site_packages_inside_a_bound_tree_is_covered_and_packages_come_only_through_site():
    plan = confine.build_plan({"numpy": "/nonexistent/site-packages/numpy"}, ())
    bound = {target: source for source, target, _ in plan["binds"]}
    assert bound["/site/numpy"] == "/nonexistent/site-packages/numpy"
    trees = [target for source, target, kind in plan["binds"] if kind == "dir" and not target.startswith("/site/")]
    assert "/usr" in trees
    for covered in plan["covers"]:
        assert any(covered.startswith(tree + "/") for tree in trees)
    import sysconfig
    base_site = sysconfig.get_paths(vars={"base": __import__("sys").base_prefix,
                                          "platbase": __import__("sys").base_exec_prefix})["purelib"]
    if Path(base_site).is_dir() and any(base_site.startswith(tree + "/") for tree in trees):
        assert str(Path(base_site).resolve()) in plan["covers"]
    # Nothing of the host's private places is bound.
    assert not any(target.startswith(("/home", "/tmp", "/var", "/srv", "/mnt")) for target in bound)
    assert plan["root"] == (os.geteuid() == 0)


def test_a_sandbox_uid_of_root_is_refused_naming_the_setting(monkeypatch):
    from grader.errors import SettingError

    monkeypatch.setenv(confine.SANDBOX_UID_ENV, "0")
    with pytest.raises(SettingError, match="GRADER_SANDBOX_UID.*'0'.*other than 0"):
        confine._sandbox_ids()
    monkeypatch.setenv(confine.SANDBOX_UID_ENV, "1234")
    monkeypatch.setenv(confine.SANDBOX_GID_ENV, "4321")
    assert confine._sandbox_ids() == (1234, 4321)


def _in_locked_child(code: str) -> dict:
    """Run ``code`` (which sets ``result``) in a forked child after ``jail.lock_down``; return ``result``."""
    import json

    from grader.sandbox import jail

    program, why = confine._seccomp_program()
    if not program:
        pytest.skip(f"no seccomp filter here: {why}")
    lib = jail.libc()
    read_end, write_end = os.pipe()
    pid = os.fork()
    if pid == 0:  # pragma: no cover - child
        try:
            jail.lock_down(lib, {"bpf": program, "keyctl": confine._syscall_number("keyctl")})
            scope: dict = {"lib": lib}
            exec(code, scope)
            os.write(write_end, json.dumps(scope["result"]).encode())
        finally:
            os._exit(0)
    os.close(write_end)
    data = b""
    while chunk := os.read(read_end, 65536):
        data += chunk
    os.close(read_end)
    os.waitpid(pid, 0)
    return json.loads(data)


def test_the_filter_refuses_what_would_change_the_sandbox_and_allows_ordinary_work():
    result = _in_locked_child(
        "import ctypes, os\n"
        "def errno_of(value):\n    return 0 if value == 0 else ctypes.get_errno()\n"
        "result = {\n"
        " 'mount': errno_of(lib.mount(None, b'/', None, 0x20 | 0x1000, None)),\n"
        " 'umount2': errno_of(lib.umount2(b'/proc', 2)),\n"
        " 'unshare': errno_of(lib.unshare(0x10000000)),\n"
        " 'clone_newuser': errno_of(0 if lib.syscall(%d, 0x10000000 | 17, 0, 0, 0, 0) == 0 else -1),\n"
        " 'clone3': errno_of(lib.syscall(%d, 0, 0) and -1),\n"
        " 'keyctl': errno_of(lib.syscall(%d, 0, -3, 0) and -1),\n"
        " 'status': [l for l in open('/proc/self/status') if l.startswith(('Cap', 'NoNewPrivs', 'Seccomp:'))],\n"
        " 'pid': os.getpid() > 0, 'pipe': len(os.pipe()) == 2,\n"
        "}\n" % (confine._syscall_number("clone"), confine._syscall_number("clone3"), confine._syscall_number("keyctl")))
    import errno

    assert result["mount"] == result["umount2"] == result["unshare"] == errno.EPERM
    assert result["clone_newuser"] == errno.EPERM
    assert result["clone3"] == errno.ENOSYS
    assert result["keyctl"] == errno.EPERM
    assert result["pid"] and result["pipe"]
    status = dict(line.strip().split(":\t") for line in result["status"])
    assert status["NoNewPrivs"] == "1" and status["Seccomp"] == "2"
    assert status["CapEff"] == status["CapPrm"] == status["CapAmb"] == status["CapInh"] == "0000000000000000"
