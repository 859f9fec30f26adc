"""Run the grader as root *and* as an unprivileged user, from a private installed copy (issue 11).

Why this exists:

* The sandbox must hold for both kinds of operator: graders really run as root
  (Gradescope, CI images, Docker) and as ordinary or service accounts. A test that
  only ever runs as root (as CI does) proves nothing about the second, so every
  sandbox test is parametrised over the two ``Account`` objects made here.
* The default ``python3`` on these machines lives under ``/root`` (mode 0700), which
  another user cannot even execute, so the unprivileged account's grader is built
  on the Debian system interpreter ``/usr/bin/python3.11``: a virtual environment in
  a world-readable directory, with a *copy* of the package installed into it (not
  editable), so hostile tests tamper with a private copy, never with the checkout.
* Root uses the very same installation, so the two variants differ only in who runs
  it, and whatever a hostile notebook manages to change lands in that private copy.
* Building costs ~15 s (dependencies) plus ~1 s (the package). The dependency layer is
  keyed by the dependency list, the package layer by a hash of the sources, so a
  session after an edit to ``grader/`` pays about a second; an installation whose
  files changed since it was built (a notebook that escaped) is rebuilt.

When the tests do not run as root, or ``setpriv``/``useradd``/the system interpreter
are missing, the fixtures skip with the reason (``.ci/run`` installs what is needed).
Set ``SANDBOX_TESTS_SOURCE`` to another source tree (with ``pyproject.toml``) to test
that tree instead of this checkout.
"""
from __future__ import annotations

import ctypes
import fcntl
import hashlib
import json
import os
import platform
import pwd
import shutil
import stat
import subprocess
import sys
import tempfile
import time
import tomllib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterator, Mapping, Sequence

import pytest

REPO = Path(__file__).resolve().parents[1]
#: The Debian system interpreter: readable and executable by every user (unlike the default python3 here).
SYSTEM_PYTHON = "/usr/bin/python3.11"
#: The system account the unprivileged variant runs as (created on first use, never removed).
TEST_USER = "grader-test"
#: Where the private installations live: world-readable, owned by root, reused across sessions.
ENV_ROOT = Path(tempfile.gettempdir()) / "sbx-testenv"
SOURCE_ENV = "SANDBOX_TESTS_SOURCE"
#: What a ``pip install`` of the project needs (and all the hash covers).
INSTALL_PARTS = ("pyproject.toml", "README.md", "grader", "reference", "rubrics")
#: A file planted in the private copy's package directory that a sandboxed notebook tries to overwrite.
PACKAGE_CANARY = "SANDBOX_CANARY.txt"
PACKAGE_CANARY_TEXT = "the grader's own file: no notebook may change it\n"
#: Bump to force every cached installation to be rebuilt (a change to how they are built).
LAYOUT_VERSION = "1"
ACCOUNTS = ("root", "unprivileged")
#: Environment both accounts get, on top of HOME/USER/LOGNAME: nothing of the test process leaks in.
BASE_ENVIRONMENT = {
    "PATH": "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin",
    "LANG": "C.UTF-8",
    "NO_COLOR": "1",
}

#: keyctl and add_key by architecture (the trampoline below plants a key in a fresh session keyring).
_KEY_SYSCALLS = {"x86_64": (250, 248), "aarch64": (219, 217)}

#: Runs first in every command: joins a fresh session keyring (so keys a sandbox adds never reach
#: the test session's), optionally adds the invoking operator's own key to it (a sandbox must not see
#: it), writes that key's id to a file, then execs the command. argv: keyctl add_key name report -- cmd...
_TRAMPOLINE = r"""
import ctypes, os, sys
keyctl, add_key, name, report = int(sys.argv[1]), int(sys.argv[2]), sys.argv[3], sys.argv[4]
argv = sys.argv[sys.argv.index("--") + 1:]
key = -1
if keyctl > 0:
    libc = ctypes.CDLL(None, use_errno=True)
    libc.syscall.restype = ctypes.c_long
    L = ctypes.c_long
    libc.syscall(L(keyctl), L(1), ctypes.c_char_p(None))  # KEYCTL_JOIN_SESSION_KEYRING, anonymous
    if name:
        secret = b"the operator's own secret"
        key = libc.syscall(L(add_key), ctypes.c_char_p(b"user"), ctypes.c_char_p(name.encode()),
                           ctypes.c_char_p(secret), L(len(secret)), L(-3))  # KEY_SPEC_SESSION_KEYRING
if report:
    with open(report, "w") as handle:
        handle.write(str(key))
os.execvp(argv[0], argv)
"""


# --- the private installation --------------------------------------------------------------


@dataclass(frozen=True)
class PrivateInstall:
    """A world-readable virtual environment on the system interpreter with a copy of the package."""

    root: Path
    #: The copy of the source tree it was installed from (what a notebook would call "the checkout").
    source: Path
    venv: Path
    python: Path
    #: The installed ``grader`` package and its reference solution (``grader/reference``).
    package_dir: Path
    reference_dir: Path
    digest: str

    @property
    def canary(self) -> Path:
        return self.package_dir / PACKAGE_CANARY

    def reset_canary(self) -> None:
        """(Re)write the package canary, world-writable, so only the sandbox's view of files protects it."""
        self.canary.write_text(PACKAGE_CANARY_TEXT)
        os.chmod(self.canary, 0o666)


def _source_tree() -> Path:
    source = Path(os.environ.get(SOURCE_ENV) or REPO).resolve()
    if not (source / "pyproject.toml").is_file():
        raise RuntimeError(f"{SOURCE_ENV}={source} has no pyproject.toml")
    return source


def _install_files(source: Path) -> list[Path]:
    """The files a ``pip install`` of ``source`` reads, relative to it, in a stable order."""
    files: list[Path] = []
    for part in INSTALL_PARTS:
        path = source / part
        if path.is_file():
            files.append(Path(part))
        elif path.is_dir():
            for found in sorted(path.rglob("*")):
                relative = found.relative_to(source)
                if found.is_file() and not any(p == "__pycache__" or p == "build" or p.endswith(".egg-info")
                                               for p in relative.parts) and found.suffix != ".pyc":
                    files.append(relative)
    return files


def _digest(source: Path, files: Sequence[Path], salt: str) -> str:
    digest = hashlib.sha256(salt.encode())
    for relative in files:
        digest.update(str(relative).encode() + b"\0" + (source / relative).read_bytes() + b"\0")
    return digest.hexdigest()


def _run_quiet(argv: Sequence[str], what: str, timeout: float = 900) -> None:
    """Run a build step; on failure raise with its output (pip prints warnings even with -q)."""
    result = subprocess.run(list(argv), stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                            timeout=timeout, check=False)
    if result.returncode != 0:
        raise RuntimeError(f"{what} failed ({result.returncode}):\n{result.stdout[-4000:]}")


def _ensure_env_root() -> None:
    """/tmp/sbx-testenv, refused unless it is root's own directory (the files in it run as root)."""
    ENV_ROOT.mkdir(mode=0o755, exist_ok=True)
    info = ENV_ROOT.lstat()
    if not stat.S_ISDIR(info.st_mode) or info.st_uid != 0 or info.st_mode & 0o022:
        raise RuntimeError(f"{ENV_ROOT} is not a directory owned by root and writable only by it; remove it")
    os.chmod(ENV_ROOT, 0o755)


class _Lock:
    """An exclusive lock on ENV_ROOT/.lock: sessions running at once build each layer once."""

    def __enter__(self) -> "_Lock":
        self._handle = open(ENV_ROOT / ".lock", "a")
        fcntl.flock(self._handle, fcntl.LOCK_EX)
        return self

    def __exit__(self, *exc: object) -> None:
        fcntl.flock(self._handle, fcntl.LOCK_UN)
        self._handle.close()


def _system_python_version() -> str:
    return subprocess.run([SYSTEM_PYTHON, "-c", "import sys; print(sys.version)"], capture_output=True, text=True,
                          check=True).stdout.strip()


def _dependencies(source: Path) -> list[str]:
    project = tomllib.loads((source / "pyproject.toml").read_text())["project"]
    return sorted(project.get("dependencies", []))


def _base_venv(source: Path) -> Path:
    """The dependency layer: a venv with setuptools (to build the package) and the runtime dependencies."""
    requirements = ["setuptools>=68", "wheel", *_dependencies(source)]
    key = hashlib.sha256(json.dumps([LAYOUT_VERSION, _system_python_version(), requirements]).encode()).hexdigest()
    base = ENV_ROOT / f"base-{key[:16]}"
    if (base / "ready").is_file():
        os.utime(base)
        return base / "venv"
    staging = Path(tempfile.mkdtemp(prefix="staging-base-", dir=ENV_ROOT))
    try:
        _run_quiet([SYSTEM_PYTHON, "-m", "venv", str(staging / "venv")], "creating the base venv")
        _run_quiet([str(staging / "venv" / "bin" / "python"), "-m", "pip", "install", "-q", *requirements],
                   "installing the dependencies")
        (staging / "ready").write_text(json.dumps(requirements))
        os.chmod(staging, 0o755)
        shutil.rmtree(base, ignore_errors=True)
        os.rename(staging, base)
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    return base / "venv"


def _package_manifest(package_dir: Path) -> str:
    """A hash of the installed package's files (not its bytecode caches nor the canary): detects tampering."""
    digest = hashlib.sha256()
    for path in sorted(package_dir.rglob("*")):
        relative = path.relative_to(package_dir)
        if path.is_file() and "__pycache__" not in relative.parts and path.name != PACKAGE_CANARY:
            digest.update(str(relative).encode() + b"\0" + path.read_bytes() + b"\0")
    return digest.hexdigest()


def _describe_install(root: Path, digest: str) -> PrivateInstall:
    venv = root / "venv"
    package = Path(json.loads((root / "ready").read_text())["package_dir"])
    return PrivateInstall(root=root, source=root / "src", venv=venv, python=venv / "bin" / "python",
                          package_dir=package, reference_dir=package / "reference", digest=digest)


def build_private_install() -> PrivateInstall:
    """The installation for this source tree: reused when its sources and files are unchanged, else (re)built."""
    source = _source_tree()
    files = _install_files(source)
    digest = _digest(source, files, f"{LAYOUT_VERSION}\0{_system_python_version()}")
    _ensure_env_root()
    root = ENV_ROOT / f"env-{digest[:16]}"
    with _Lock():
        if (root / "ready").is_file():
            install = _describe_install(root, digest)
            recorded = json.loads((root / "ready").read_text())["manifest"]
            if install.package_dir.is_dir() and _package_manifest(install.package_dir) == recorded:
                os.utime(root)
                install.reset_canary()
                return install
            shutil.rmtree(root)  # a notebook changed the installed package: never reuse it
        base = _base_venv(source)
        staging = Path(tempfile.mkdtemp(prefix="staging-env-", dir=ENV_ROOT))
        try:
            for relative in files:
                target = staging / "src" / relative
                target.parent.mkdir(parents=True, exist_ok=True)
                shutil.copyfile(source / relative, target)
            # Hard links: the dependency layer costs nothing per source version; pip only adds files.
            _run_quiet(["cp", "-al", str(base), str(staging / "venv")], "cloning the base venv")
            python = staging / "venv" / "bin" / "python"
            _run_quiet([str(python), "-m", "pip", "install", "-q", "--no-deps", "--no-build-isolation",
                        str(staging / "src")], "installing the package copy")
            where = subprocess.run([str(python), "-I", "-c", "import grader, os; print(os.path.dirname(grader.__file__))"],
                                   capture_output=True, text=True, check=True, cwd="/").stdout.strip()
            package = Path(where.replace(str(staging), str(root), 1))
            manifest = _package_manifest(Path(where))
            (staging / "ready").write_text(json.dumps({"package_dir": str(package), "manifest": manifest}))
            _run_quiet(["chmod", "-R", "a+rX,go-w", str(staging)], "making the installation world-readable")
            os.rename(staging, root)
        finally:
            shutil.rmtree(staging, ignore_errors=True)
        _prune(keep=(root, base.parent))
        install = _describe_install(root, digest)
        install.reset_canary()
        return install


def _prune(keep: tuple[Path, ...], max_age_s: float = 24 * 3600) -> None:
    """Drop installations and dependency layers not used for a day (a clone holds hard links, so
    removing the layer it came from costs it nothing)."""
    now = time.time()
    for old in [*ENV_ROOT.glob("env-*"), *ENV_ROOT.glob("base-*"), *ENV_ROOT.glob("staging-*")]:
        if old not in keep and now - old.stat().st_mtime > max_age_s:
            shutil.rmtree(old, ignore_errors=True)


# --- accounts ------------------------------------------------------------------------------


#: Where system tools live even when PATH leaves the sbin directories out (a service's environment).
_SYSTEM_PATH = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"


def _tool(name: str) -> str | None:
    return shutil.which(name) or shutil.which(name, path=_SYSTEM_PATH)


def _missing_requirements() -> str | None:
    """Why the two-account tests cannot run here, or None."""
    if not sys.platform.startswith("linux"):
        return "the sandbox tests need Linux"
    if os.geteuid() != 0:
        return "creating the unprivileged test user and dropping to it needs root (CI runs as root)"
    for tool in ("setpriv", "useradd"):
        if _tool(tool) is None:
            return f"{tool} is missing (Debian: apt-get install util-linux passwd)"
    if not os.access(SYSTEM_PYTHON, os.X_OK):
        return f"{SYSTEM_PYTHON} is missing (Debian: apt-get install python3.11-venv)"
    probe = subprocess.run([SYSTEM_PYTHON, "-c", "import venv, ensurepip"], capture_output=True, check=False)
    if probe.returncode != 0:
        return f"{SYSTEM_PYTHON} cannot make a venv (Debian: apt-get install python3.11-venv)"
    return None


def ensure_test_user() -> pwd.struct_passwd:
    """The unprivileged system account (created without a home on first use, then reused)."""
    try:
        return pwd.getpwnam(TEST_USER)
    except KeyError:
        pass
    result = subprocess.run([_tool("useradd") or "useradd", "--system", "--no-create-home", "--home-dir", "/nonexistent",
                             "--shell", "/usr/sbin/nologin", "--user-group", TEST_USER],
                            capture_output=True, text=True, check=False)
    try:
        entry = pwd.getpwnam(TEST_USER)  # also when another session created it meanwhile
    except KeyError:
        raise RuntimeError(f"useradd {TEST_USER} failed: {result.stderr.strip()}") from None
    if entry.pw_uid == 0:
        raise RuntimeError(f"{TEST_USER} has uid 0")
    return entry


@dataclass
class Account:
    """Who runs the grader in a test: ``root``, or ``unprivileged`` (``TEST_USER`` via ``setpriv``).

    Both run the same private installation with a clean environment; ``run`` takes the same
    arguments for both, so a test body never cares which one it has.
    """

    name: str
    uid: int
    gid: int
    user: str
    home: Path
    install: PrivateInstall
    #: Directories made by ``workspace`` (removed by ``cleanup``).
    _made: list[Path] = field(default_factory=list)

    @property
    def privileged(self) -> bool:
        return self.uid == 0

    def environment(self, extra: Mapping[str, str] | None = None) -> dict[str, str]:
        env = {**BASE_ENVIRONMENT, "HOME": str(self.home), "USER": self.user, "LOGNAME": self.user}
        env.update(extra or {})
        return env

    def command(self, argv: Sequence[str], env: Mapping[str, str] | None = None, host_key: str = "",
                key_report: str = "") -> list[str]:
        """The full command line: keyring trampoline, then (unprivileged) setpriv, then ``env`` and ``argv``."""
        keyctl, add_key = _KEY_SYSCALLS.get(platform.machine(), (0, 0))
        inner = ["/usr/bin/env", "-i", *[f"{k}={v}" for k, v in self.environment(env).items()], *argv]
        if not self.privileged:
            inner = [_tool("setpriv") or "setpriv", f"--reuid={self.uid}", f"--regid={self.gid}", "--init-groups", "--reset-env",
                     "--", *inner]
        return [str(self.install.python), "-I", "-c", _TRAMPOLINE, str(keyctl), str(add_key), host_key, key_report,
                "--", *inner]

    def run(self, argv: Sequence[str], *, cwd: str | Path | None = None, env: Mapping[str, str] | None = None,
            timeout: float = 300, host_key: str = "", key_report: str = "",
            input: str | None = None) -> subprocess.CompletedProcess[str]:
        """Run ``argv`` as this account, in a fresh session keyring, with text output captured.

        ``host_key``: the name of a key the operator holds in that keyring (no sandbox may see it);
        its id (or -1 when keys are unavailable) is written to ``key_report``.
        """
        return subprocess.run(self.command(argv, env, host_key, key_report), cwd=str(cwd or self.home),
                              stdin=subprocess.DEVNULL if input is None else None, input=input,
                              capture_output=True, text=True, timeout=timeout, check=False)

    def grader(self, *args: str, **kwargs: Any) -> subprocess.CompletedProcess[str]:
        """``python -m grader ARGS`` from the private installation, as this account."""
        return self.run([str(self.install.python), "-m", "grader", *args], **kwargs)

    def workspace(self, prefix: str = "sbx-run-") -> Path:
        """A fresh directory under /tmp owned by this account (notebooks in, reports out)."""
        path = Path(tempfile.mkdtemp(prefix=prefix))
        os.chown(path, self.uid, self.gid)
        os.chmod(path, 0o755)
        self._made.append(path)
        return path

    def give(self, path: Path) -> None:
        """Hand a file the test wrote over to this account (it must be able to read and replace it)."""
        os.chown(path, self.uid, self.gid)

    def cleanup(self) -> None:
        for path in self._made:
            shutil.rmtree(path, ignore_errors=True)
        self._made.clear()


def run_as_user(account: Account, argv: Sequence[str], **kwargs: Any) -> subprocess.CompletedProcess[str]:
    """The brief's interface: run ``argv`` as ``account`` (root or the unprivileged test user)."""
    return account.run(argv, **kwargs)


@pytest.fixture(scope="session")
def private_install() -> PrivateInstall:
    """The private installation both accounts run (built or reused; skips where it cannot be)."""
    reason = _missing_requirements()
    if reason and os.environ.get("CI") and os.geteuid() == 0:
        # CI runs as root and .ci/run installs what these tests need: a skip there would hide that the
        # sandbox was never tested as an ordinary user.
        pytest.fail(f"the unprivileged sandbox tests cannot run in CI: {reason}")
    if reason:
        pytest.skip(reason)
    return build_private_install()


@pytest.fixture(scope="session")
def unprivileged_account(private_install: PrivateInstall) -> Iterator[Account]:
    """``TEST_USER`` with a private, writable home of its own for this session (an ordinary user's
    situation; a home that is not writable is a separate case of the issue and tested as such)."""
    entry = ensure_test_user()
    home = Path(tempfile.mkdtemp(prefix="sbx-home-"))
    os.chown(home, entry.pw_uid, entry.pw_gid)
    os.chmod(home, 0o700)
    account = Account("unprivileged", entry.pw_uid, entry.pw_gid, entry.pw_name, home, private_install)
    yield account
    account.cleanup()
    shutil.rmtree(home, ignore_errors=True)


@pytest.fixture(scope="session")
def root_account(private_install: PrivateInstall) -> Iterator[Account]:
    """root, with root's own home, as a grader in a container or on CI runs."""
    entry = pwd.getpwuid(0)
    account = Account("root", 0, 0, entry.pw_name, Path(entry.pw_dir), private_install)
    yield account
    account.cleanup()


@pytest.fixture(scope="session", params=ACCOUNTS)
def account(request: pytest.FixtureRequest) -> Account:
    """Each test that takes it runs twice: as root and as the unprivileged user."""
    return request.getfixturevalue(f"{request.param}_account")


def host_namespaces() -> dict[str, str]:
    """The test process's own namespaces (``mnt:[4026531832]`` …), to compare with a sandbox's."""
    found = {}
    for kind in ("user", "mnt", "pid", "net", "ipc", "uts", "cgroup"):
        try:
            found[kind] = os.readlink(f"/proc/self/ns/{kind}")
        except OSError:
            pass
    return found


def libc() -> ctypes.CDLL:
    library = ctypes.CDLL(None, use_errno=True)
    library.shmctl.argtypes = [ctypes.c_int, ctypes.c_int, ctypes.c_void_p]
    return library


def pack_environment(wheel: Path) -> Path:
    """A world-readable environment on the system interpreter holding a student pack and its dependencies,
    and nothing else of the grader (a student's machine); its interpreter. Removed with ``ENV_ROOT``'s pruning."""
    _ensure_env_root()
    base = _base_venv(_source_tree())
    root = Path(tempfile.mkdtemp(prefix="pack-", dir=ENV_ROOT))
    _run_quiet(["cp", "-al", str(base), str(root / "venv")], "cloning the base venv")
    python = root / "venv" / "bin" / "python"
    _run_quiet([str(python), "-m", "pip", "install", "-q", "--no-deps", str(wheel)], "installing the student pack")
    _run_quiet(["chmod", "-R", "a+rX,go-w", str(root)], "making the pack's environment world-readable")
    return python


def grade_as(account: Account, notebooks: Mapping[str, str], *args: str, batch: bool = False,
             env: Mapping[str, str] | None = None, timeout: float = 600
             ) -> tuple[subprocess.CompletedProcess[str], dict[str, dict[str, Any] | None]]:
    """Grade ``notebooks`` (label -> notebook JSON) as ``account`` and read each one's ``grader.report/1`` back.

    The notebooks are written into a fresh workspace as the account's files, ``<label>.ipynb``. Without
    ``batch``, the one notebook goes through ``grader check NOTEBOOK --format json ARGS`` (a freshly started
    sandbox process); with it, their folder through ``grader grade DIR --out OUT --jobs 1 ARGS`` (one grading
    process: each submission is a fork of its fork server). A label maps to None when no report was produced.
    """
    workspace = account.workspace()
    inbox = workspace / "in"
    inbox.mkdir()
    account.give(inbox)
    files: dict[str, Path] = {}
    for label, text in notebooks.items():
        files[label] = inbox / f"{label}.ipynb"
        files[label].write_text(text)
        account.give(files[label])
    out = workspace / "out"
    if batch:
        command = ["grade", str(inbox), "--out", str(out), "--jobs", "1", *args]
    else:
        if len(files) != 1:
            raise ValueError(f"grader check grades one notebook, not {len(files)}: pass batch=True")
        command = ["check", str(*files.values()), "--format", "json", *args]
    result = account.grader(*command, cwd=workspace, env=env, timeout=timeout)
    reports: dict[str, dict[str, Any] | None] = dict.fromkeys(files)
    if not batch:
        try:
            reports = dict.fromkeys(files, json.loads(result.stdout))
        except ValueError:
            pass
        return result, reports
    for report_file in sorted((out / "reports").glob("*.json")):
        report = json.loads(report_file.read_text())
        source = str((report.get("batch") or {}).get("source") or report.get("submission") or "")
        for label, notebook in files.items():
            if Path(source).name == notebook.name:
                reports[label] = report
    return result, reports
