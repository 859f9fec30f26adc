"""Baseline: nbgrader's ``autograde`` wall time per notebook, to compare with ``grader``.

Run by hand; it prints figures and asserts nothing::

    python benchmarks/nbgrader_baseline.py NOTEBOOK... [--processes 2]
    python benchmarks/nbgrader_baseline.py --demo 10 --processes 2

or from another benchmark::

    sys.path.insert(0, "benchmarks")
    from nbgrader_baseline import ensure_nbgrader_venv, time_autograde
    figures = time_autograde(notebooks, processes=2)

Why a venv of its own. nbgrader pins much of the Jupyter stack (jupyter_server,
jupyterlab, SQLAlchemy, alembic, ...). It must never become a dependency of the
project nor change the versions the project's own environment resolves, so it
lives in a separate virtual environment (by default in the system temp dir,
``grader-bench-nbgrader``), created once and reused. Nothing here imports
nbgrader: every nbgrader step is a subprocess run with that venv's python.

What is measured. The notebooks are plain student notebooks, with no nbgrader
metadata (no grade cells), so nbgrader awards no points; what it still does for
each submission is the cost we compare with ``grader``: sanitize the notebook
(clear outputs, overwrite the kernelspec), start a kernel, execute every cell,
and write the autograded copy and the gradebook rows. The timed part is only
the ``nbgrader autograde`` command(s), from the first launch to the last exit;
the venv, the throwaway course, ``generate_assignment`` and the copying of
submissions are done before the clock starts.

The throwaway course (a fresh temp dir for every call)::

    TMP/course[-K]/nbgrader_config.py     course_id, CourseDirectory.root, Execute.timeout
    TMP/course[-K]/source/ps1/NAME.ipynb  the seed notebook (examples/simple_nn_seed.ipynb)
    TMP/course[-K]/release/ps1/...        made by `nbgrader generate_assignment ps1`
    TMP/course[-K]/submitted/pK_sIIII/ps1/NAME.ipynb   one student per input notebook
    TMP/course[-K]/gradebook.db           sqlite, the default db_url under the root
    TMP/jupyter/{config,data,runtime}     JUPYTER_CONFIG_DIR / _DATA_DIR / _RUNTIME_DIR
    TMP/home                              HOME, XDG_* for anything else

Every input notebook is copied under the *same* name NAME (the source
notebook's), whatever it was called: nbgrader only grades notebooks that the
gradebook knows from the source assignment, and skips others ("Skipping unknown
notebook"). Student ids carry the process they belong to (``p0_s0003``) so that
``--student`` (a file glob in nbgrader, not a list) can pick one process's
share.

Several processes. nbgrader has no parallel autograde of its own. With
``processes=P`` the students are split into P contiguous shares and P
``nbgrader autograde ps1 --student 'pK_*'`` commands run at once. By default each
command gets its own copy of the course (``shared_gradebook=False``): the
gradebook is one sqlite file and nbgrader opens a fresh SQLAlchemy session for
each small write, so concurrent writers can meet "database is locked" (the
driver waits up to 5 s for the lock, which would also stretch the wall time
being measured). ``shared_gradebook=True`` runs them against one course, as an
instructor naively would; a failed student then shows up in ``failures``.
(Tried: three shared runs of 10 notebooks had no lock error, and their times
were within the noise of the separate copies; nothing in nbgrader promises it.)

The kernel. The seed's kernelspec is ``python3``; a ``kernels/python3/kernel.json``
in the throwaway JUPYTER_DATA_DIR (also JUPYTER_PATH, so searched first) names
the venv's python by absolute path, so the kernel can never be some other
``python3`` kernelspec installed on the machine, which would not have the
venv's numpy and matplotlib (without JUPYTER_PATH, jupyter_core puts the venv's
own share/jupyter first, whose spec says just "python"); every run checks how
``python3`` resolves before timing. The kernel keeps IPython's inline
matplotlib backend, so the seed's plot is rendered to a PNG output as under a
stock nbgrader. matplotlib's and IPython's caches are kept in
the venv dir (``<venv>/cache``), filled once by ``ensure_nbgrader_venv``: a
fresh MPLCONFIGDIR per run would make the first kernel build matplotlib's font
cache inside the timed part, which is not a per-notebook cost.

Failures. A notebook counts as a failure when nbgrader left no autograded copy
of it, or one in which no code cell was executed (kernel never started). A
notebook whose cells raise is *not* a failure: nbgrader executed it, which is
what is timed. The commands' output goes to log files in the temp dir; their
last lines are in ``errors`` when a command exits non-zero.

Noise. Other processes on this 2-core machine inflate wall times a lot (the
same run measured 1.76 s and 2.71 s per notebook, with 0.01 and 1.4 "foreign"
cores busy); the result carries ``foreign_cpu_cores`` to tell the quiet runs,
and ``--repeat R`` prints every run. Measured here (nbgrader 0.9.6, 10 copies
of the seed, quiet runs): about 1.85-1.95 s per notebook serial, 1.1-1.3 s
with 2 processes; one notebook alone takes ~3.9 s, i.e. each command pays
~2 s of its own (nbgrader's start-up, gradebook, first kernel).

Home directory. HOME, XDG_*, IPYTHONDIR, MPLCONFIGDIR and the JUPYTER_* dirs all
point inside the temp dir or the venv dir, so nothing is written to the user's
home; the temp dir is removed afterwards unless ``keep=True`` (``--keep``).
Only pip, when it builds the venv, runs with the real HOME (so the user's
pip.conf applies) and ``--no-cache-dir``.
"""

from __future__ import annotations

import argparse
import contextlib
import fcntl
import json
import os
import resource
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import textwrap
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
SEED = REPO / "examples" / "simple_nn_seed.ipynb"
DEFAULT_VENV = Path(tempfile.gettempdir()) / "grader-bench-nbgrader"
ASSIGNMENT = "ps1"
NOTEBOOK_NAME = "simple_nn"
COURSE_ID = "grader-bench"
# nbgrader itself and what the seed notebook imports; ipykernel is the kernel.
VENV_PACKAGES = ["nbgrader", "numpy", "matplotlib", "ipykernel"]
# Written after a successful install: a venv dir without it is half-made.
MARKER = ".grader-bench-ok"

_CHECK_IMPORTS = (
    "import nbgrader, numpy, matplotlib, ipykernel, nbconvert;"
    "print(nbgrader.__version__)"
)
# Fills the caches a kernel would otherwise build on its first start: the
# matplotlib font cache (the seed imports pyplot) and an IPython profile dir.
_WARM_CACHES = (
    "import matplotlib; matplotlib.use('Agg'); import matplotlib.pyplot as plt;"
    "plt.plot([0, 1]); plt.close('all');"
    "from IPython.paths import get_ipython_dir; from IPython.core.profiledir import ProfileDir;"
    "ProfileDir.create_profile_dir_by_name(get_ipython_dir(), 'default')"
)


# ---------------------------------------------------------------- the venv


def _venv_python(path: Path) -> Path:
    return path / "bin" / "python"


def _cache_env(venv: Path) -> dict[str, str]:
    """Matplotlib and IPython state kept with the venv (warm across runs), not in ~.

    No MPLBACKEND: the kernel keeps IPython's default inline backend, so the
    seed's ``plt.plot`` is rendered to a PNG output as it is under a stock
    nbgrader (``grader`` itself uses Agg and renders its own plot later).
    """
    cache = venv / "cache"
    return {
        "MPLCONFIGDIR": str(cache / "matplotlib"),
        "IPYTHONDIR": str(cache / "ipython"),
    }


def _base_env(home: Path) -> dict[str, str]:
    """An environment whose HOME and XDG dirs are ``home``, without the caller's venv.

    PYTHONPATH / PYTHONHOME / VIRTUAL_ENV of the project's environment would
    leak the project's packages into nbgrader's interpreter (and the other way
    round), so they are dropped; PYTHONNOUSERSITE keeps ~/.local out too.
    """
    env = {
        k: v
        for k, v in os.environ.items()
        if k not in {"PYTHONPATH", "PYTHONHOME", "VIRTUAL_ENV", "PYTHONSTARTUP"}
        and not k.startswith(("JUPYTER_", "IPYTHON", "MPL"))
    }
    env.update(
        HOME=str(home),
        XDG_CACHE_HOME=str(home / ".cache"),
        XDG_CONFIG_HOME=str(home / ".config"),
        XDG_DATA_HOME=str(home / ".local" / "share"),
        PYTHONNOUSERSITE="1",
        JUPYTER_PLATFORM_DIRS="1",  # silences jupyter_core's deprecation warning
        PYDEVD_DISABLE_FILE_VALIDATION="1",  # silences a debugpy warning on kernel start
    )
    return env


def _venv_version(python: Path, env: dict[str, str]) -> str | None:
    """nbgrader's version if ``python`` imports everything the benchmark needs, else None."""
    if not python.exists():
        return None
    try:
        r = subprocess.run(
            [str(python), "-c", _CHECK_IMPORTS],
            capture_output=True, text=True, timeout=120, env=env,
        )
    except (OSError, subprocess.TimeoutExpired):
        return None
    return r.stdout.strip().splitlines()[-1] if r.returncode == 0 and r.stdout.strip() else None


def _run_setup(cmd: list[str], what: str, env: dict[str, str], timeout: float, **kw) -> str:
    """Run a setup step; on failure raise with the step's own output, which says why."""
    try:
        r = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout, env=env, **kw)
    except subprocess.TimeoutExpired as e:
        raise RuntimeError(f"{what} timed out after {timeout:.0f} s: {' '.join(cmd)}") from e
    if r.returncode != 0:
        out = (r.stdout + "\n" + r.stderr).strip()
        tail = "\n".join(out.splitlines()[-40:])
        raise RuntimeError(
            f"{what} failed (exit {r.returncode}): {' '.join(cmd)}\n"
            f"--- last lines of its output ---\n{textwrap.indent(tail, '  ')}"
        )
    return r.stdout


def ensure_nbgrader_venv(path: Path = DEFAULT_VENV) -> Path:
    """Create (once, reused if present and working) a venv with nbgrader + numpy + matplotlib + ipykernel; return its python.

    Reused when ``path`` holds the marker of a finished install *and* its python
    still imports nbgrader, numpy, matplotlib, ipykernel and nbconvert (a temp
    dir can be half cleaned by the OS). Otherwise a venv there is (re)built:
    an existing dir is only removed if it is a venv (has ``pyvenv.cfg``), never
    some other dir that happens to have the name. A lock file beside it makes
    two benchmarks started together build it once. Then the matplotlib font
    cache and IPython profile under ``<path>/cache`` are filled so that no timed
    kernel builds them.

    Raises RuntimeError with pip's last output lines when the install fails
    (no route to PyPI, no wheel for this Python, a resolver conflict, ...).
    """
    path = Path(path).resolve()
    python = _venv_python(path)
    env = _base_env(path / "cache" / "home")
    env.update(_cache_env(path))
    path.parent.mkdir(parents=True, exist_ok=True)
    lock_path = path.parent / (path.name + ".lock")
    with open(lock_path, "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        if (path / MARKER).exists() and _venv_version(python, env):
            return python
        if path.exists():
            if not (path / "pyvenv.cfg").exists():
                raise RuntimeError(
                    f"{path} exists and is not a virtual environment; "
                    "remove it or pass another path to ensure_nbgrader_venv()"
                )
            print(f"nbgrader venv at {path} is incomplete or broken: rebuilding it", file=sys.stderr)
            shutil.rmtree(path)
        print(f"creating nbgrader venv at {path} (once; takes a minute) ...", file=sys.stderr)
        # The base interpreter, not the project's venv: `python -m venv` from a
        # venv python already creates a venv over the base one, but be explicit.
        base = getattr(sys, "_base_executable", None) or sys.executable
        # pip runs with the caller's HOME, so the user's pip.conf (index, find-links,
        # certificates) applies as to any pip; --no-cache-dir so it leaves no cache there.
        pip_env = {k: v for k, v in os.environ.items()
                   if k not in {"PYTHONPATH", "PYTHONHOME", "VIRTUAL_ENV"}}
        try:
            _run_setup([base, "-m", "venv", str(path)], "creating the venv", pip_env, 300)
            _run_setup([str(python), "-m", "pip", "install", "--disable-pip-version-check",
                        "--no-input", "--no-cache-dir", *VENV_PACKAGES],
                       f"pip install {' '.join(VENV_PACKAGES)} into {path}", pip_env, 1800)
        except RuntimeError as e:
            raise RuntimeError(
                f"{e}\nThe nbgrader baseline needs PyPI (or the configured pip index) to "
                f"install {', '.join(VENV_PACKAGES)} into its own venv at {path}. "
                "Check `pip config list` and the network, then run again."
            ) from None
        version = _venv_version(python, env)
        if not version:
            raise RuntimeError(f"pip install into {path} succeeded but its python cannot import nbgrader")
        (path / "cache" / "home").mkdir(parents=True, exist_ok=True)
        _run_setup([str(python), "-c", _WARM_CACHES], "warming matplotlib/IPython caches", env, 300)
        (path / MARKER).write_text(f"nbgrader {version}\n")
        print(f"nbgrader {version} installed in {path}", file=sys.stderr)
    return python


# ---------------------------------------------------------------- the course


def _write_config(course: Path, cell_timeout: int) -> None:
    """nbgrader_config.py for one course dir.

    root is absolute so nothing depends on the cwd; db_url is left to its
    default, ``sqlite:///<root>/gradebook.db``, so a copied course gets a
    gradebook of its own once its config names its own root. No header (so
    IncludeHeaderFooter is a no-op), no exchange (autograde does not use one).
    """
    (course / "nbgrader_config.py").write_text(textwrap.dedent(f"""\
        c = get_config()
        c.CourseDirectory.course_id = {COURSE_ID!r}
        c.CourseDirectory.root = {str(course)!r}
        # per cell; nbgrader's default is 30 s, made roomy for a loaded machine
        c.Execute.timeout = {int(cell_timeout)}
        c.NbGrader.logfile = ""
    """))


def _kernelspec(data_dir: Path, python: Path) -> None:
    """A ``python3`` kernelspec naming the venv's python, found before any other."""
    kdir = data_dir / "kernels" / "python3"
    kdir.mkdir(parents=True, exist_ok=True)
    (kdir / "kernel.json").write_text(json.dumps({
        "argv": [str(python), "-m", "ipykernel_launcher", "-f", "{connection_file}"],
        "display_name": "Python 3 (nbgrader baseline venv)",
        "language": "python",
        "metadata": {"debugger": False},
    }, indent=1))


def _nb_env(tmp: Path, python: Path) -> dict[str, str]:
    """The environment of every nbgrader command: all state inside ``tmp`` or the venv dir."""
    home = tmp / "home"
    jup = tmp / "jupyter"
    for d in (home, jup / "config", jup / "data", jup / "runtime"):
        d.mkdir(parents=True, exist_ok=True)
    env = _base_env(home)
    env.update(_cache_env(python.parent.parent))
    env.update(
        JUPYTER_CONFIG_DIR=str(jup / "config"),
        JUPYTER_DATA_DIR=str(jup / "data"),
        JUPYTER_RUNTIME_DIR=str(jup / "runtime"),
        # searched before everything, even the venv's own share/jupyter (which
        # jupyter_core otherwise puts first when it runs inside a venv)
        JUPYTER_PATH=str(jup / "data"),
        # PATH: the venv's bin first, so `jupyter`/`python` found by name are its own
        PATH=str(python.parent) + os.pathsep + os.environ.get("PATH", ""),
    )
    _kernelspec(jup / "data", python)
    return env


_WHICH_KERNEL = (
    "from jupyter_client.kernelspec import KernelSpecManager;"
    "print(KernelSpecManager().get_kernel_spec('python3').argv[0])"
)


def _check_kernel(python: Path, env: dict[str, str]) -> None:
    """Fail early unless ``python3`` resolves to our kernelspec, i.e. the venv's python."""
    argv0 = _run_setup([str(python), "-c", _WHICH_KERNEL], "resolving the python3 kernelspec",
                       env, 120).strip()
    if argv0 != str(python):
        raise RuntimeError(f"kernelspec python3 resolves to {argv0!r}, not {python}; "
                           "a JUPYTER_PATH entry may be shadowing the throwaway one")


def _split(n: int, parts: int) -> list[range]:
    """Contiguous shares of range(n), sizes differing by at most one."""
    q, r = divmod(n, parts)
    out, start = [], 0
    for k in range(parts):
        size = q + (1 if k < r else 0)
        out.append(range(start, start + size))
        start += size
    return out


def _student(k: int, i: int) -> str:
    return f"p{k}_s{i:04d}"


def _executed(nb_path: Path) -> bool:
    """True if at least one code cell of an autograded notebook was run by a kernel."""
    try:
        nb = json.loads(nb_path.read_text())
    except (OSError, ValueError):
        return False
    code = [c for c in nb.get("cells", []) if c.get("cell_type") == "code"]
    return not code or any(c.get("execution_count") for c in code)


_TICK = os.sysconf("SC_CLK_TCK")


def _busy_cpu() -> float | None:
    """CPU seconds every process of the machine has used since boot (None without /proc/stat)."""
    try:
        with open("/proc/stat") as f:
            values = [int(v) for v in f.readline().split()[1:9]]
    except (OSError, ValueError):
        return None
    return (sum(values) - values[3] - values[4]) / _TICK  # less idle and iowait


def _children_cpu() -> float:
    """CPU seconds of this process's reaped descendants (nbgrader and the kernels it reaped)."""
    ru = resource.getrusage(resource.RUSAGE_CHILDREN)
    return ru.ru_utime + ru.ru_stime


def _kill_group(proc: subprocess.Popen) -> None:
    """End one nbgrader command we started, and its kernels (its own process group)."""
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(proc.pid, signal.SIGKILL)
    proc.wait()


def time_autograde(
    notebooks: list[Path],
    processes: int = 1,
    python: Path | None = None,
    *,
    source: Path = SEED,
    shared_gradebook: bool = False,
    cell_timeout: int = 120,
    timeout: float | None = None,
    keep: bool = False,
) -> dict:
    """Set up a throwaway nbgrader course and time ``nbgrader autograde`` over ``notebooks``.

    The course (in a fresh temp dir) has ``source/ps1/<NOTEBOOK_NAME>.ipynb`` =
    ``source`` (the seed notebook), made into an assignment by ``nbgrader
    generate_assignment ps1``; each input notebook becomes
    ``submitted/p<K>_s<i>/ps1/<NOTEBOOK_NAME>.ipynb``. Then, clock running:
    processes=1 runs ``nbgrader autograde ps1 --create`` (students are created
    in the gradebook as they are met); processes=P>1 runs P ``nbgrader
    autograde ps1 --create --student 'p<K>_*'`` at once, each on its own copy
    of the course unless ``shared_gradebook`` (see the module docstring for
    why); P is capped at the number of notebooks. ``timeout`` (default 60 s per notebook + 120 s) bounds the timed
    part; commands still running then are killed and their notebooks count as
    failures.

    Returns {"notebooks": n, "processes": p, "wall_s", "per_notebook_s":
    wall/n, "nbgrader_version", "failures": notebooks without an executed
    autograded copy} plus "shared_gradebook", "cpu_s" (CPU time of the
    commands and the kernels they reaped), "foreign_cpu_cores" (CPU that other
    processes of the machine used meanwhile, in cores on average: above ~0.1
    the wall time is inflated by someone else), "returncodes" (one per command)
    and "errors" (last output lines of each command that exited non-zero or
    timed out), and "course_dir" when ``keep``.
    """
    notebooks = [Path(p).resolve() for p in notebooks]
    if not notebooks:
        raise ValueError("no notebooks to grade")
    for p in notebooks:
        if not p.is_file():
            raise FileNotFoundError(f"no such notebook: {p}")
    n = len(notebooks)
    processes = max(1, min(int(processes), n))
    python = Path(python) if python else ensure_nbgrader_venv()
    python = Path(os.path.abspath(python))  # keep the venv symlink: it is what makes it a venv
    if timeout is None:
        timeout = 120 + 60 * n

    tmp = Path(tempfile.mkdtemp(prefix="grader-bench-nbgrader-run-"))
    try:
        env = _nb_env(tmp, python)
        version = _run_setup([str(python), "-c", "import nbgrader; print(nbgrader.__version__)"],
                             "reading nbgrader's version", env, 120).strip()
        _check_kernel(python, env)
        nbgrader = [str(python), "-m", "nbgrader"]

        # -- setup, not timed
        course = tmp / "course"
        src = course / "source" / ASSIGNMENT
        src.mkdir(parents=True)
        shutil.copyfile(source, src / f"{NOTEBOOK_NAME}.ipynb")
        _write_config(course, cell_timeout)
        _run_setup([*nbgrader, "generate_assignment", ASSIGNMENT, "--force"],
                   "nbgrader generate_assignment", env, 300, cwd=course)

        shares = _split(n, processes)
        isolated = processes > 1 and not shared_gradebook
        courses = []
        for k, share in enumerate(shares):
            if isolated:
                ck = tmp / f"course-{k}"
                shutil.copytree(course, ck, symlinks=True)
                _write_config(ck, cell_timeout)
            else:
                ck = course
            courses.append(ck)
            for i in share:
                dest = ck / "submitted" / _student(k, i) / ASSIGNMENT
                dest.mkdir(parents=True)
                shutil.copyfile(notebooks[i], dest / f"{NOTEBOOK_NAME}.ipynb")

        cmds = []
        for k in range(processes):
            cmd = [*nbgrader, "autograde", ASSIGNMENT, "--create"]
            if processes > 1:
                cmd.append(f"--student=p{k}_*")  # a file glob over student ids
            cmds.append(cmd)
        logs = [tmp / f"autograde-{k}.log" for k in range(processes)]

        # -- timed: from the first launch to the last exit
        procs: list[subprocess.Popen] = []
        timed_out: set[int] = set()
        busy0, ours0 = _busy_cpu(), _children_cpu()
        t0 = time.perf_counter()
        try:
            for k, cmd in enumerate(cmds):
                with open(logs[k], "wb") as log:
                    procs.append(subprocess.Popen(
                        cmd, cwd=courses[k], env=env, stdin=subprocess.DEVNULL,
                        stdout=log, stderr=subprocess.STDOUT, start_new_session=True,
                    ))
            deadline = t0 + timeout
            for k, proc in enumerate(procs):
                try:
                    proc.wait(timeout=max(0.0, deadline - time.perf_counter()))
                except subprocess.TimeoutExpired:
                    timed_out.add(k)
                    _kill_group(proc)
            wall = time.perf_counter() - t0
            busy1, ours1 = _busy_cpu(), _children_cpu()
        finally:
            for proc in procs:
                if proc.poll() is None:
                    _kill_group(proc)

        # -- results, not timed
        failures = 0
        for k, share in enumerate(shares):
            for i in share:
                out = courses[k] / "autograded" / _student(k, i) / ASSIGNMENT / f"{NOTEBOOK_NAME}.ipynb"
                if not (out.exists() and _executed(out)):
                    failures += 1
        errors = []
        for k, proc in enumerate(procs):
            if proc.returncode != 0 or k in timed_out:
                lines = logs[k].read_text(errors="replace").strip().splitlines()
                why = f"timed out after {timeout:.0f} s" if k in timed_out else f"exit {proc.returncode}"
                errors.append(f"command {k} ({' '.join(cmds[k][2:])}) {why}:\n"
                              + "\n".join(lines[-15:]))
        result = {
            "notebooks": n,
            "processes": processes,
            "wall_s": wall,
            "per_notebook_s": wall / n,
            "nbgrader_version": version,
            "failures": failures,
            "shared_gradebook": processes > 1 and not isolated,
            "cpu_s": ours1 - ours0,
            "foreign_cpu_cores": (None if busy0 is None or busy1 is None
                                  else max(0.0, (busy1 - busy0) - (ours1 - ours0)) / wall),
            "returncodes": [p.returncode for p in procs],
            "errors": errors,
        }
        if keep:
            result["course_dir"] = str(tmp)
        return result
    finally:
        if not keep:
            shutil.rmtree(tmp, ignore_errors=True)


# ---------------------------------------------------------------- script


def _demo_notebooks(count: int, where: Path) -> list[Path]:
    """``count`` copies of the seed notebook, as the input of ``--demo``."""
    where.mkdir(parents=True, exist_ok=True)
    out = []
    for i in range(count):
        p = where / f"student_{i:03d}.ipynb"
        shutil.copyfile(SEED, p)
        out.append(p)
    return out


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(
        description="Time nbgrader autograde per notebook, in nbgrader's own venv.")
    ap.add_argument("notebooks", nargs="*", type=Path, help="student notebooks to grade")
    ap.add_argument("--demo", type=int, metavar="N",
                    help="grade N copies of examples/simple_nn_seed.ipynb instead")
    ap.add_argument("--processes", "-p", type=int, default=1,
                    help="concurrent autograde commands (default 1)")
    ap.add_argument("--shared-gradebook", action="store_true",
                    help="with -p > 1, run all commands on one course (one sqlite gradebook)")
    ap.add_argument("--venv", type=Path, default=DEFAULT_VENV,
                    help=f"nbgrader's venv (created if missing; default {DEFAULT_VENV})")
    ap.add_argument("--warmup", action="store_true",
                    help="autograde one notebook first, untimed (page cache, pyc files)")
    ap.add_argument("--cell-timeout", type=int, default=120, help="Execute.timeout per cell, s")
    ap.add_argument("--repeat", type=int, default=1, metavar="R",
                    help="measure R times (a fresh course each), print each and the median")
    ap.add_argument("--keep", action="store_true", help="keep the temp course dir and print it")
    ap.add_argument("--json", action="store_true", help="print the result dict as JSON")
    args = ap.parse_args(argv)
    if bool(args.notebooks) == (args.demo is not None):
        ap.error("give NOTEBOOK... or --demo N (not both)")
    if args.demo is not None and args.demo < 1:
        ap.error("--demo N needs N >= 1")
    if args.repeat < 1 or args.processes < 1:
        ap.error("--repeat and --processes need values >= 1")

    try:
        python = ensure_nbgrader_venv(args.venv)
    except RuntimeError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2

    results = []
    with tempfile.TemporaryDirectory(prefix="grader-bench-demo-") as d:
        notebooks = _demo_notebooks(args.demo, Path(d)) if args.demo else args.notebooks
        try:
            if args.warmup:
                time_autograde(notebooks[:1], 1, python, cell_timeout=args.cell_timeout)
            for _ in range(args.repeat):
                results.append(time_autograde(
                    notebooks, args.processes, python, shared_gradebook=args.shared_gradebook,
                    cell_timeout=args.cell_timeout, keep=args.keep))
        except (RuntimeError, FileNotFoundError, ValueError) as e:
            print(f"error: {e}", file=sys.stderr)
            return 2

    if args.json:
        print(json.dumps(results[0] if len(results) == 1 else results, indent=1))
    else:
        r = results[0]
        mode = ""
        if r["processes"] > 1:
            mode = " (one shared gradebook)" if r["shared_gradebook"] else " (a course copy each)"
        print(f"nbgrader {r['nbgrader_version']} autograde: {r['notebooks']} notebooks, "
              f"{r['processes']} process(es){mode}")
        for k, r in enumerate(results, 1):
            foreign = r["foreign_cpu_cores"]
            noise = "" if foreign is None else f"   foreign CPU {foreign:.2f} cores" + (
                "  (noisy)" if foreign > 0.1 else "")
            label = f"run {k}: " if len(results) > 1 else ""
            print(f"  {label}wall {r['wall_s']:.2f} s   per notebook {r['per_notebook_s']:.3f} s   "
                  f"CPU {r['cpu_s']:.1f} s   failures {r['failures']}{noise}")
            if r.get("course_dir"):
                print(f"  kept {r['course_dir']}")
            for e in r["errors"]:
                print(textwrap.indent(e, "  ! "), file=sys.stderr)
        if len(results) > 1:
            per = sorted(r["per_notebook_s"] for r in results)
            print(f"  per notebook: min {per[0]:.3f} s   median {statistics.median(per):.3f} s")
    return 1 if any(r["failures"] for r in results) else 0


if __name__ == "__main__":
    sys.exit(main())
