"""The sandbox holds everywhere (issue 11): as root and as an unprivileged user, on every path.

Each (path, account) pair grades *one* probe notebook run (two submissions for the batch
paths) and every test below reads a different property from it, so the whole file costs one
grader run per pair:

* paths: ``grader check`` (a fresh sandbox process), ``grader check --backend kernel``,
  ``grader grade`` (forks of the fork server: one submission that begins with the template's
  opening cells, so it is forked from the *primed* server, one that changed them), and
  ``grader grade --backend kernel`` (a pre-started kernel per submission);
* accounts: root, and an unprivileged system user reached with ``setpriv`` (``tests/unprivileged.py``),
  both running the same private installed copy of the package.

The probe notebook is the seed template with one helper cell a hostile student might write
(``tests/sandbox_probe.py``): it reads ``/proc/self/status``, the id maps and namespaces, lists
what of the host it can see, tries every system call the issue says a filter must refuse,
unmounts and remounts what it can, overwrites canaries by path, and leaves SysV shared memory,
a key and a hostname behind for the next submission. It does all that in a cell *and* again
in the first graded function the grader calls (the call path), and prints one
``SBXPROBE {json}`` line each time, which the test reads back from the report's
``output_excerpt``. Its ``backward`` returns the reference's answer if the reference is
readable, so an escape shows up in the score as well.

The test also watches the host itself: canary files it planted (world-writable, so only the
sandbox's view of the file system protects them), files the notebook tries to create in /tmp,
a TCP and an abstract unix socket listener, the host's SysV IPC table, the hostname, and a key
in the operator's own session keyring.
"""
from __future__ import annotations

import glob
import hashlib
import json
import os
import re
import secrets
import socket
import threading
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterator

import pytest

from conftest import CORRECT_CELLS, REPO, SEED, notebook_json
from unprivileged import (ENV_ROOT, PACKAGE_CANARY_TEXT, Account, host_namespaces, libc,  # noqa: F401 (fixtures)
                          account, private_install, root_account, unprivileged_account)

pytestmark = pytest.mark.slow

PROBE_SOURCE = (Path(__file__).parent / "sandbox_probe.py").read_text()
#: path name -> (command, backend, submission labels).
PATHS: dict[str, tuple[str, str, tuple[str, ...]]] = {
    "check": ("check", "subprocess", ("solo",)),
    "check-kernel": ("check", "kernel", ("solo",)),
    "grade": ("grade", "subprocess", ("plain", "primed")),
    "grade-kernel": ("grade", "kernel", ("first", "second")),
}
BATCH_PATHS = [name for name, (command, _, _) in PATHS.items() if command == "grade"]
STAGES = ("cell", "call")
ZERO_CAPS = "0000000000000000"
REFUSED = {"EPERM", "ENOSYS"}
#: The seed template scores 50: its backward has the template's bug (README). The probe keeps it.
PROBE_SCORE = 50.0
#: bubblewrap's minimal /dev, of which null, zero and urandom are required.
ALLOWED_DEVICES = {"null", "zero", "full", "random", "urandom", "tty", "ptmx"}
GRADER_ARGS = ("--output-kb", "256")


# --- notebooks ---------------------------------------------------------------------------


def _template_code_cells() -> list[str]:
    notebook = json.loads(SEED.read_text())
    return ["".join(c["source"]) if isinstance(c["source"], list) else c["source"]
            for c in notebook["cells"] if c["cell_type"] == "code"]


def _opening() -> list[str]:
    """The template's opening cells as the grader computes them (what the primed server runs)."""
    from grader.rubric import load_rubric
    from grader.template import opening_cells

    return list(opening_cells(load_rubric(None), ("activation", "d_activation", "forward", "backward")))


def _with_probe_calls(source: str) -> str:
    """Every graded function starts by running the probe once (the grader's call path)."""
    return re.sub(r"(?m)^(def (activation|d_activation|forward|backward)\(.*\):\n)", r"\1    _sbx_on_call()\n", source)


def probe_notebook(config: dict[str, Any], primed: bool) -> str:
    """The seed template with the probe: unchanged opening (``primed``) or a student's edit of it."""
    cells = _template_code_cells()
    opening = _opening()
    assert cells[:len(opening)] == opening, "the seed template no longer begins with the rubric template's opening"
    head = list(opening) if primed else ["# my imports\n" + opening[0], *opening[1:]]
    helper = f"import json\n_SBX = json.loads({json.dumps(config)!r})\n" + PROBE_SOURCE
    rest = []
    for source in cells[len(opening):]:
        source = _with_probe_calls(source)
        if source.startswith("def backward"):
            source = source.replace(
                "    _sbx_on_call()\n",
                "    _sbx_on_call()\n"
                "    if _SBX_STATE['ref'] is not None:  # escaped: hand in the reference's answer\n"
                "        return _SBX_STATE['ref'].backward(x, y, y_hat, w1, w2, eta)\n", 1)
        rest.append(source)
    finish = "_SBX_STATE['cells_done'] = True  # from here on, only the grader calls the functions"
    return notebook_json([*head, helper, '_report = _sbx_probe("cell")', *rest, finish])


def correct_notebook(primed: bool) -> str:
    """A correct submission: the template's opening (or not) and correct functions."""
    return notebook_json([*_opening(), *CORRECT_CELLS[1:]] if primed else CORRECT_CELLS)


# --- what the host sees ----------------------------------------------------------------------


class Listener:
    """A TCP listener on 127.0.0.1 and an abstract unix socket, recording every connection."""

    def __init__(self, abstract_name: str) -> None:
        self.accepted: list[str] = []
        self.tcp = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self.tcp.bind(("127.0.0.1", 0))
        self.unix = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self.unix.bind("\0" + abstract_name)
        self.port = self.tcp.getsockname()[1]
        self._threads = [threading.Thread(target=self._serve, args=(s, kind), daemon=True)
                         for s, kind in ((self.tcp, "tcp"), (self.unix, "abstract unix"))]
        for sock in (self.tcp, self.unix):
            sock.listen(8)
            sock.settimeout(0.2)
        self._stop = threading.Event()
        for thread in self._threads:
            thread.start()

    def _serve(self, sock: socket.socket, kind: str) -> None:
        while not self._stop.is_set():
            try:
                conn, _ = sock.accept()
            except (socket.timeout, OSError):
                continue
            with conn:
                conn.settimeout(0.5)
                try:
                    data = conn.recv(200)
                except OSError:
                    data = b""
            self.accepted.append(f"{kind}: {data[:80]!r}")

    def close(self) -> None:
        self._stop.set()
        for thread in self._threads:
            thread.join(2)
        self.tcp.close()
        self.unix.close()


def _host_shm_with_keys(keys: set[int]) -> list[tuple[int, int]]:
    """(key, shmid) of SysV segments in the *test's* IPC namespace that carry one of ``keys``."""
    found = []
    try:
        lines = Path("/proc/sysvipc/shm").read_text().splitlines()[1:]
    except OSError:
        return found
    for line in lines:
        fields = line.split()
        if len(fields) > 2 and int(fields[0]) in keys:
            found.append((int(fields[0]), int(fields[1])))
    return found


def _remove_shm(ids: list[tuple[int, int]]) -> None:
    for _, shmid in ids:
        libc().shmctl(shmid, 0, None)  # IPC_RMID


# --- one run ---------------------------------------------------------------------------------


@dataclass
class ProbeRun:
    """One grader run of the probe notebook(s) on one path as one account, and what the host saw."""

    path: str
    account: str
    labels: tuple[str, ...]
    returncode: int
    stderr: str
    #: label -> the grader.report/1 document (None when none was produced).
    reports: dict[str, dict[str, Any] | None]
    #: label -> stage -> probe lines (a cell replayed after a restart reports again).
    probes: dict[str, dict[str, list[dict[str, Any]]]]
    host: dict[str, Any] = field(default_factory=dict)
    expected_host_uid: int = 0
    expected_host_gid: int = 0
    config: dict[str, Any] = field(default_factory=dict)

    def describe(self, label: str) -> str:
        report = self.reports.get(label)
        if report is None:
            return f"no report (exit {self.returncode}; stderr: {self.stderr.strip()[-600:]!r})"
        return (f"report status {report.get('status')!r}, error {report.get('error')!r}, "
                f"cells {[(c.get('index'), c.get('status'), c.get('error')) for c in report.get('cells', [])]}, "
                f"excerpt ends {report.get('output_excerpt', '')[-400:]!r}")

    def each(self) -> Iterator[tuple[str, str, dict[str, Any]]]:
        """Every probe line (label, stage, report); fails the test when a stage never reported."""
        missing = [f"{label}/{stage}: {self.describe(label)}" for label in self.labels for stage in STAGES
                   if not self.probes.get(label, {}).get(stage)]
        if missing:
            pytest.fail(f"[{self.path} as {self.account}] the probe did not report from inside the sandbox:\n"
                        + "\n".join(missing))
        for label in self.labels:
            for stage in STAGES:
                for line in self.probes[label][stage]:
                    yield label, stage, line


def _probe_lines(excerpt: str) -> dict[str, list[dict[str, Any]]]:
    stages: dict[str, list[dict[str, Any]]] = {}
    for line in excerpt.splitlines():
        if line.startswith("SBXPROBE "):
            try:
                data = json.loads(line[len("SBXPROBE "):])
            except ValueError:
                continue  # cut off by the output limit
            stages.setdefault(data.get("stage"), []).append(data)
    return stages


def _read_reports(account: Account, result, path: str, out: Path, notebooks: dict[str, Path]
                  ) -> dict[str, dict[str, Any] | None]:
    command = PATHS[path][0]
    if command == "check":
        try:
            return {label: json.loads(result.stdout) for label in notebooks}
        except ValueError:
            return {label: None for label in notebooks}
    found: dict[str, dict[str, Any] | None] = {label: None for label in notebooks}
    for report_file in sorted((out / "reports").glob("*.json")):
        report = json.loads(report_file.read_text())
        source = str((report.get("batch") or {}).get("source") or report.get("submission") or "")
        for label, notebook in notebooks.items():
            if source.endswith(notebook.name):
                found[label] = report
    return found


def run_grader(account: Account, path: str, notebooks: dict[str, str], workspace: Path,
               extra_env: dict[str, str] | None = None, host_key: str = "") -> tuple[Any, dict[str, Any | None]]:
    """Write ``notebooks`` (label -> JSON) into ``workspace`` as the account's files and grade them on ``path``."""
    command, backend, _ = PATHS[path]
    inbox = workspace / "in"
    inbox.mkdir()
    account.give(inbox)
    files = {}
    for label, text in notebooks.items():
        file = inbox / f"{label}.ipynb"
        file.write_text(text)
        account.give(file)
        files[label] = file
    out = workspace / "out"
    key_report = workspace / "host-key-id"
    if command == "check":
        (only,) = files.values()
        args = ["check", str(only), "--format", "json", "--backend", backend, *GRADER_ARGS]
    else:
        args = ["grade", str(inbox), "--out", str(out), "--jobs", "1", "--backend", backend, *GRADER_ARGS]
    result = account.grader(*args, cwd=workspace, env=extra_env, host_key=host_key, key_report=str(key_report),
                            timeout=600)
    return result, _read_reports(account, result, path, out, files)


def run_probe(account: Account, path: str) -> ProbeRun:
    _, _, labels = PATHS[path]
    token = secrets.token_hex(6)
    workspace = account.workspace()
    canary = Path(f"/tmp/sbx-canary-{token}")
    canary_text = f"the operator's file {token}: no notebook may change it\n"
    canary.write_text(canary_text)
    os.chmod(canary, 0o666)
    home_secret = account.home / f"sbx-secret-{token}.txt"
    if not account.privileged:  # an ordinary user's own files (root's home is /root: nothing is planted there)
        home_secret.write_text("the grading account's own notes")
        account.give(home_secret)
    install = account.install
    install.reset_canary()
    listener = Listener(f"sbxprobe-{token}")
    notebook_paths = [str(workspace / "in" / f"{label}.ipynb") for label in labels]
    config = {
        "token": token,
        "host_key": f"sbxhost-{token}",
        "tcp_port": listener.port,
        "abstract_name": f"sbxprobe-{token}",
        "tmp_canary": str(canary),
        "package_canary": str(install.canary),
        "marker_prefix": f"/tmp/sbxprobe-{token}-",
        "roots": sorted({"/tmp", "/home", "/root", "/srv", "/var", "/mnt", str(REPO), str(REPO.parent),
                         str(ENV_ROOT), str(install.root), str(install.source), str(account.home)}),
        "must_not_exist": sorted({str(install.package_dir), str(install.reference_dir), str(install.source),
                                  str(REPO / "grader"), str(REPO / "reference"), str(REPO / "pyproject.toml")}),
        "secret_files": sorted({str(canary), "/etc/shadow", *notebook_paths,
                                *([str(home_secret)] if not account.privileged else [])}),
        "reference_dirs": [str(install.reference_dir), str(REPO / "reference")],
        "shm_keys": {label: int(hashlib.sha256(f"{token}/{label}".encode()).hexdigest()[:7], 16) for label in labels},
        "host_namespaces": host_namespaces(),
    }
    config["host_dirs"] = {root: [os.stat(root).st_dev, os.stat(root).st_ino] for root in config["roots"]
                           if os.path.isdir(root)}
    notebooks = {label: probe_notebook({**config, "name": label}, primed=label != "plain") for label in labels}
    hostname = socket.gethostname()
    try:
        result, reports = run_grader(account, path, notebooks, workspace, host_key=config["host_key"])
    finally:
        listener.close()
    key_file = workspace / "host-key-id"
    leftover_shm = _host_shm_with_keys(set(config["shm_keys"].values()))
    _remove_shm(leftover_shm)
    markers = sorted(glob.glob(f"/tmp/sbxprobe-{token}-*"))
    host = {
        "tmp_canary_unchanged": canary.read_text() == canary_text,
        "tmp_canary_text": canary.read_text()[:200],
        "package_canary_unchanged": install.canary.read_text() == PACKAGE_CANARY_TEXT,
        "package_canary_text": install.canary.read_text()[:200],
        "new_tmp_files": [(m, os.lstat(m).st_uid) for m in markers],
        "listener_accepted": list(listener.accepted),
        "hostname_before": hostname,
        "hostname_after": socket.gethostname(),
        "shm_left_in_host": leftover_shm,
        "host_key_id": int(key_file.read_text()) if key_file.is_file() else -1,
    }
    for marker in markers:
        os.unlink(marker)
    canary.unlink()
    install.reset_canary()
    if home_secret.exists():
        home_secret.unlink()
    expected_uid = 65534 if account.privileged else account.uid
    expected_gid = 65534 if account.privileged else account.gid
    return ProbeRun(path, account.name, labels, result.returncode, result.stderr, reports,
                    {label: _probe_lines((reports[label] or {}).get("output_excerpt") or "") for label in labels},
                    host, expected_uid, expected_gid, config)


_RUNS: dict[tuple[str, str], ProbeRun] = {}


@pytest.fixture(params=list(PATHS))
def probed(request: pytest.FixtureRequest, account: Account) -> ProbeRun:
    """The probe's run on this path as this account (made once, shared by every property test)."""
    key = (request.param, account.name)
    if key not in _RUNS:
        _RUNS[key] = run_probe(account, request.param)
    return _RUNS[key]


@pytest.fixture(params=BATCH_PATHS)
def batch_probed(request: pytest.FixtureRequest, account: Account) -> ProbeRun:
    key = (request.param, account.name)
    if key not in _RUNS:
        _RUNS[key] = run_probe(account, request.param)
    return _RUNS[key]


def _where(run: ProbeRun, label: str, stage: str) -> str:
    return f"[{run.path} as {run.account}, submission {label}, {stage}]"


# --- the harness works: a correct notebook scores full marks everywhere ---------------------------


@pytest.mark.parametrize("path", list(PATHS))
def test_correct_notebook_scores_full_marks(account: Account, path: str) -> None:
    """The harness itself (private install, dropping to the user, reading reports) on each path: a correct
    notebook scores 100. On ``grade`` both fork paths are used: one submission primed, one not."""
    labels = PATHS[path][2]
    notebooks = {label: correct_notebook(primed=label != "plain") for label in labels}
    result, reports = run_grader(account, path, notebooks, account.workspace())
    for label in labels:
        report = reports[label]
        assert report is not None, f"no report for {label} (exit {result.returncode}): {result.stderr[-1500:]}"
        assert (report["status"], report["score"]) == ("graded", 100.0), (
            f"{label}: {report.get('error')!r} {[(c['id'], c['message']) for c in report['checks'] if not c['passed']]}"
            f"\nstderr: {result.stderr[-800:]}")
    assert result.returncode == 0, result.stderr[-1500:]


def test_primed_submission_begins_with_the_opening() -> None:
    """The precondition of the primed path (the grader picks it by comparing sources): the probe and the
    correct notebook named ``primed`` begin with exactly the template's opening cells, the others do not."""
    from grader.load import load_notebook_bytes

    opening = tuple(_opening())
    assert len(opening) >= 2
    for primed in (True, False):
        for text in (correct_notebook(primed), probe_notebook({"name": "x"}, primed)):
            sources = tuple(c.source for c in load_notebook_bytes(text.encode(), "nb.ipynb").code_cells)
            assert (sources[:len(opening)] == opening) is primed


# --- the properties, from inside -------------------------------------------------------------


def test_probe_reports_from_cells_and_calls(probed: ProbeRun) -> None:
    """Both stages of every submission reported (the rest of the file depends on it)."""
    seen = {(label, stage) for label, stage, _ in probed.each()}
    assert seen == {(label, stage) for label in probed.labels for stage in STAGES}
    for label, stage, line in probed.each():
        assert line["token"] == probed.config["token"]


def test_no_capabilities(probed: ProbeRun) -> None:
    for label, stage, line in probed.each():
        status = line.get("status", {})
        caps = {k: status.get(k) for k in ("CapInh", "CapPrm", "CapEff", "CapBnd", "CapAmb")}
        assert caps == dict.fromkeys(caps, ZERO_CAPS), f"{_where(probed, label, stage)} {caps}"


def test_no_new_privs_and_seccomp_filter(probed: ProbeRun) -> None:
    for label, stage, line in probed.each():
        status = line.get("status", {})
        got = (status.get("NoNewPrivs"), status.get("Seccomp"))
        assert got == ("1", "2"), f"{_where(probed, label, stage)} NoNewPrivs, Seccomp = {got}"


def test_dangerous_system_calls_refused(probed: ProbeRun) -> None:
    """Every call the issue lists fails with EPERM or ENOSYS (never succeeds, never reaches the kernel's
    own checks: the arguments are such that an unfiltered call returns something else)."""
    for label, stage, line in probed.each():
        calls = line.get("syscalls", {})
        assert len(calls) >= 30, f"{_where(probed, label, stage)} only {sorted(calls)} attempted"
        wrong = {name: result for name, result in calls.items() if result[0] != -1 or result[1] not in REFUSED}
        assert not wrong, (f"{_where(probed, label, stage)} not refused ([return value, errno]): {wrong}"
                           f"; probe notes: {line['problems']}")


def test_mount_table_attacks_refused(probed: ProbeRun) -> None:
    """umount2 of every mount point in /proc/self/mountinfo and a writable remount of each fail."""
    for label, stage, line in probed.each():
        for kind in ("umount", "remount"):
            attempts = line.get(kind) or {}
            assert attempts.get("attempted"), f"{_where(probed, label, stage)} no {kind} attempted: {line['problems']}"
            assert not attempts["not_refused"], (f"{_where(probed, label, stage)} {kind} not refused "
                                                 f"([return value, errno]): {attempts['not_refused']}")


def _host_id(mapping: str, inside: int) -> int | None:
    for row in mapping.strip().splitlines():
        start, host, count = (int(v) for v in row.split())
        if start <= inside < start + count:
            return host + inside - start
    return None


def test_unprivileged_host_ids(probed: ProbeRun) -> None:
    """The sandbox's user namespace never maps anything to host uid/gid 0; its own ids map to 65534 when
    the grader is root, to the grader's own ids otherwise; a file it creates is its own (seen from inside)."""
    problems = []
    for label, stage, line in probed.each():
        where = _where(probed, label, stage)
        for kind, inside, expected in (("uid_map", line["uid"], probed.expected_host_uid),
                                       ("gid_map", line["gid"], probed.expected_host_gid)):
            mapping = line.get(kind) or ""
            try:
                rows = [tuple(int(v) for v in row.split()) for row in mapping.strip().splitlines()]
            except ValueError:
                rows = []
            if not rows:
                problems.append(f"{where} {kind} unreadable: {mapping!r}")
                continue
            if any(host <= 0 < host + count for _, host, count in rows):
                problems.append(f"{where} {kind} maps host 0: {rows}")
            if _host_id(mapping, inside) != expected:
                problems.append(f"{where} {kind} {rows}: own id {inside} is host {_host_id(mapping, inside)}, "
                                f"not {expected}")
        work = line.get("workfile", {})
        if (work.get("st_uid"), work.get("st_gid")) != (line["uid"], line["gid"]) or line["euid"] != line["uid"]:
            problems.append(f"{where} ids {line['uid']}/{line['euid']}, its file {work}")
    assert not problems, "\n".join(problems)


def test_own_namespaces(probed: ProbeRun) -> None:
    """User, mount, PID, network, IPC, UTS (and cgroup where the host has it) differ from the operator's.

    (Not compared between two submissions of a batch: they run one after the other, and the kernel
    reuses a freed namespace's inode number, so equal numbers prove nothing; what one submission
    leaves for the next is tested directly in ``test_no_state_between_submissions``.)"""
    host = probed.config["host_namespaces"]
    for label, stage, line in probed.each():
        namespaces = line.get("namespaces", {})
        shared = {k: v for k, v in namespaces.items() if k in host and host[k] == v}
        assert not shared, f"{_where(probed, label, stage)} shares the operator's namespaces: {shared}"
        missing = [k for k in host if not str(namespaces.get(k, "")).startswith(k + ":")]
        assert not missing, f"{_where(probed, label, stage)} unreadable: {missing}"


def _names_the_grader(path: str, forbidden: list[str]) -> bool:
    return any(path == f or path.startswith(f.rstrip("/") + "/") for f in forbidden) or "reference" in path


def test_minimal_root_file_system(probed: ProbeRun) -> None:
    """No host /tmp, /home, /root, /srv, /var, /mnt, checkout or installation beyond what Python needs, before
    and after the mount attacks; no grader, reference or mount naming them; a /dev of null, zero, urandom;
    a /proc of its own PID namespace; nothing secret readable by path."""
    forbidden = probed.config["must_not_exist"]
    problems = []
    for label, stage, line in probed.each():
        where = _where(probed, label, stage)
        for key in ("visible", "visible_after"):
            shown = {root: names for root, names in line.get(key, {}).items()
                     if names not in ("absent", "private", []) and not (isinstance(names, str) and names.startswith("<"))}
            if shown:
                problems.append(f"{where} host entries visible ({key}): {shown}")
        for key in ("exists", "exists_after"):
            present = [p for p, there in line.get(key, {}).items() if there]
            if present:
                problems.append(f"{where} ({key}) these exist: {present}")
        named = [m[:4] for m in line.get("mounts", [])
                 if any(_names_the_grader(p, forbidden) for p in (m[0], m[1], m[3]))]
        if named:
            problems.append(f"{where} mounts that name the grader or the reference: {named}")
        readable = sorted(p for p, r in line.get("secrets", {}).items() if r == "read")
        if readable:
            problems.append(f"{where} readable by path: {readable}")
        kernel_files = sorted(p for p, r in line.get("kernel_files", {}).items() if r)
        if kernel_files:
            problems.append(f"{where} another kernel's connection file is readable: {kernel_files}")
        devices, works = line.get("devices", [{}, {}])
        if works != {"null": True, "zero": True, "urandom": True}:
            problems.append(f"{where} /dev: {works}")
        extra = sorted(n for n, t in devices.items() if t in ("chr", "blk") and n not in ALLOWED_DEVICES)
        if extra:
            problems.append(f"{where} host devices in /dev: {extra[:20]}{' ...' if len(extra) > 20 else ''}")
        processes = line.get("processes", [])
        foreign = [p for p in processes if re.search(r"pytest|setpriv|-m grader|forkserver|trampoline", p[1])]
        if len(processes) > 8 or foreign:
            problems.append(f"{where} /proc shows {len(processes)} processes, e.g. {(foreign or processes)[:5]}")
    assert not problems, "\n".join(problems)


def test_no_host_file_created_or_changed(probed: ProbeRun) -> None:
    """The canaries the test planted are unchanged, no file appeared in /tmp, and every write by path failed."""
    host, problems = probed.host, []
    if not host["tmp_canary_unchanged"]:
        problems.append(f"the /tmp canary now reads {host['tmp_canary_text']!r}")
    if not host["package_canary_unchanged"]:
        problems.append(f"the installed package's canary now reads {host['package_canary_text']!r}")
    if host["new_tmp_files"]:
        problems.append(f"created on the host (path, owner uid): {host['new_tmp_files']}")
    for label, stage, line in probed.each():
        # The canaries are opened without O_CREAT: "written" means the host's file was reachable and writable.
        # (A new file under /tmp counts only if the host sees it: the sandbox may have a /tmp of its own.)
        written = {k: v for k, v in line.get("writes", {}).items() if v == "written" and k != "new_tmp_file"}
        if written:
            problems.append(f"{_where(probed, label, stage)} wrote {sorted(written)}")
    assert not problems, f"[{probed.path} as {probed.account}]\n" + "\n".join(problems)


def test_no_network(probed: ProbeRun) -> None:
    """Neither 127.0.0.1 nor an abstract unix socket of the host is reachable."""
    assert not probed.host["listener_accepted"], probed.host["listener_accepted"]
    for label, stage, line in probed.each():
        network = line.get("network", {})
        assert set(network) == {"tcp", "abstract"} and "connected" not in network.values(), (
            f"{_where(probed, label, stage)} {network}")


def test_nothing_left_on_the_host(probed: ProbeRun) -> None:
    """SysV shared memory the notebook created is not in the host's IPC namespace; the hostname is unchanged."""
    planted = {(label, stage): line.get("plant", {}).get("shmget") for label, stage, line in probed.each()}
    assert not probed.host["shm_left_in_host"], (f"[{probed.path} as {probed.account}] segments (key, id) the notebook "
                                                 f"made are in the host's IPC namespace: {probed.host['shm_left_in_host']}"
                                                 f" (its shmget results: {planted})")
    assert probed.host["hostname_after"] == probed.host["hostname_before"]


def test_operator_keys_invisible(probed: ProbeRun) -> None:
    """A key in the operator's session keyring is neither listed in /proc/keys nor found by request_key."""
    if probed.host["host_key_id"] < 0:
        pytest.skip("the kernel here gives the test no session keyring to plant a key in")
    for label, stage, line in probed.each():
        listed = [k for k in line.get("keys", []) if "sbxhost" in k]
        found = line.get("syscalls", {}).get("request_key")
        assert not listed and found and found[0] == -1, (
            f"{_where(probed, label, stage)} /proc/keys: {listed}; request_key: {found}")


def test_no_unearned_credit(probed: ProbeRun) -> None:
    """The probe earns exactly what the template's functions earn (50): escaping to the reference gains nothing."""
    for label in probed.labels:
        report = probed.reports[label]
        assert report is not None and report["status"] == "graded", probed.describe(label)
        failed = sorted(c["id"] for c in report["checks"] if not c["passed"])
        loaded = sorted({str(line.get("reference")) for stage in STAGES
                         for line in probed.probes.get(label, {}).get(stage, []) if line.get("reference")})
        assert (report["score"], failed) == (PROBE_SCORE, ["backward.gradient", "backward.values", "training.converges"]), (
            f"[{probed.path} as {probed.account}, {label}] score {report['score']}, failed {failed}; "
            f"the notebook loaded the reference from {loaded}")
    for label, stage, line in probed.each():
        assert line.get("reference") is None, f"{_where(probed, label, stage)} loaded the reference from {line['reference']}"


def test_no_state_between_submissions(batch_probed: ProbeRun) -> None:
    """Shared memory, keys, files and the hostname one submission leaves are not there for the other."""
    run, problems = batch_probed, []
    for label, stage, line in run.each():
        where = _where(run, label, stage)
        others = [o for o in run.labels if o != label]
        found = {other: result for other, result in line.get("other_shm", {}).items() if result[0] != -1}
        if found:
            problems.append(f"{where} found the other submission's shared memory: {found}")
        keys = [k for k in line.get("keys", []) if any(re.search(rf"sbxprobe-(attempt-)?{o}:", k) for o in others)]
        if keys:
            problems.append(f"{where} sees the other submission's keys: {keys}")
        markers = {o: paths for o, paths in line.get("other_markers", {}).items() if paths and o != label}
        if markers:
            problems.append(f"{where} sees files the other submission left: {markers}")
        if any(line.get("hostname") == f"sbxprobe-{o}" for o in others):
            problems.append(f"{where} has the other submission's hostname {line['hostname']!r}")
    assert not problems, "\n".join(problems)


# --- root that cannot drop its privileges ------------------------------------------------------

#: The least a notebook can do to show whom it runs as: print its ids and capabilities, leave a file in /tmp.
_WHOAMI = ("import os\nstatus = open('/proc/self/status').read().splitlines()\n"
           "print('SBXWHO', os.getuid(), [l for l in status if l.startswith(('CapEff', 'NoNewPrivs', 'Seccomp'))])\n"
           "open({marker!r}, 'w').write('ran')")


def _run_whoami(account: Account, extra_env: dict[str, str]) -> tuple[Any, dict[str, Any] | None, int | None]:
    """Grade the whoami notebook with ``extra_env``: (result, report, owner uid of its /tmp file or None)."""
    marker = f"/tmp/sbxprobe-{secrets.token_hex(6)}-whoami"
    notebook = notebook_json([_WHOAMI.format(marker=marker), *CORRECT_CELLS])
    try:
        result, reports = run_grader(account, "check", {"solo": notebook}, account.workspace(), extra_env=extra_env)
        owner = os.lstat(marker).st_uid if os.path.lexists(marker) else None
    finally:
        if os.path.lexists(marker):
            os.unlink(marker)
    return result, reports["solo"], owner


def _refusal(result: Any, report: dict[str, Any] | None) -> str:
    """The sentence a refusal gave: the report's error (``check`` still prints the report), else stderr's line."""
    if report is not None and report.get("status") == "error":
        return str(report.get("error") or "")
    lines = [line for line in result.stderr.strip().splitlines() if not line.startswith("grader: note for the operator")]
    return lines[0] if len(lines) == 1 and lines[0].startswith("grader: ") and "Traceback" not in result.stderr else ""


def test_root_without_namespaces_never_runs_student_code_as_root(root_account: Account) -> None:
    """Root with namespaces turned off (``GRADER_NO_NAMESPACES=1``): the notebook runs as an unprivileged uid with
    no capabilities, or the grader refuses with one sentence about root that says what to do (exit 2)."""
    result, report, owner = _run_whoami(root_account, {"GRADER_NO_NAMESPACES": "1"})
    who = re.search(r"SBXWHO (\d+) (.*)", (report or {}).get("output_excerpt", ""))
    if who or owner is not None:
        assert owner != 0, "the notebook created its file in /tmp as host root"
        assert who and int(who.group(1)) != 0 and f"CapEff:\\t{ZERO_CAPS}" in who.group(2), (
            f"ran as {who.group(0) if who else '?'}")
        return
    sentence = _refusal(result, report)
    assert result.returncode == 2 and re.search(r"\broot\b|unprivileged|\buid\b|privilege", sentence), (
        f"the notebook did not run, but this is no refusal that says why (exit {result.returncode}): "
        f"{sentence or result.stderr[-600:]!r}")


def test_root_that_cannot_drop_refuses(root_account: Account) -> None:
    """Root that cannot map the sandbox to an unprivileged uid refuses to run student code: one sentence, exit 2.

    Simulated with ``GRADER_SANDBOX_UID=0`` (a configured sandbox uid that is root itself)."""
    sources = " ".join(p.read_text() for p in root_account.install.package_dir.rglob("*.py"))
    if "GRADER_SANDBOX_UID" not in sources:
        pytest.skip("no hook to make dropping privileges fail (GRADER_SANDBOX_UID) in this grader yet")
    result, report, owner = _run_whoami(root_account, {"GRADER_SANDBOX_UID": "0"})
    sentence = _refusal(result, report)
    assert owner is None and "SBXWHO" not in result.stdout, "the notebook ran"
    assert result.returncode == 2 and sentence and "\n" not in sentence, (result.returncode, result.stderr, sentence)
