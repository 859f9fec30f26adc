"""``grader gradescope --out autograder.zip``: a ready Gradescope autograder, and what it runs there.

Gradescope builds a Docker image from an uploaded zip (``setup.sh`` at its root, run once as
root on Ubuntu) and runs ``run_autograder`` for each submission, which must leave
``/autograder/results/results.json`` (gradescope/autograder_samples, ``docs/specs.md``). This
module makes that zip and is what ``run_autograder`` runs:

* **The grader travels as a wheel inside the zip**, built here from the grader that is running,
  without network or build tools: an installed grader's own files are packed again, a checkout
  (``pip install -e``) is packed from the packages its ``pyproject.toml`` declares. So
  Gradescope grades with exactly the code that was tested here, and nothing is fetched from
  the grader's repository. ``constraints.txt`` pins the grader's dependencies to the versions
  installed here (setup.sh installs them from PyPI: Gradescope's image build has network).
* **setup.sh installs Python >= 3.11 with apt**: the image's own ``python3`` when it is new
  enough (Ubuntu 24.04), else the ``python3.11`` package (Ubuntu 22.04, Gradescope's default,
  has it in universe), else deadsnakes' (older releases). The grader goes into a virtual
  environment, ``/autograder/grader-venv``, never into the system's Python. Then it grades the
  rubric's template once: that warms the caches and shows in the build log whether grading
  works on Gradescope's machine.
* **The rubric is baked in**: ``grader-autograder.json`` names it (and the assignment); a rubric
  or assignment given by path is copied under ``bundle/`` with its files in the same places
  relative to each other, so its relative references still resolve.
* **run_autograder always leaves a results.json.** The notebook is chosen as ``grader grade``
  chooses one submission's (``grader.batch.collect``). A report (graded, or status error: no
  notebook, not a notebook) is rendered by ``grader.render.gradescope``. When grading itself
  fails (an exception in the grader, a time limit, a Python that does not start), the page says
  so to the student and carries no top-level ``score``: a score would claim a grade was given
  (Gradescope then totals the tests, the failed ``grading`` test's 0), a hidden 0-point test
  tells the instructor why, and the traceback is on stdout, which only instructors see. The
  shell script copies a ``fallback/`` document when Python itself could not write one.

``GRADER_AUTOGRADER_ROOT`` (default ``/autograder``), ``GRADER_AUTOGRADER_VENV`` (default
``$ROOT/grader-venv``), ``GRADER_AUTOGRADER_PYTHON`` (default the venv's ``bin/python``),
``GRADER_AUTOGRADER_TIMEOUT`` and ``GRADER_AUTOGRADER_KILL_AFTER`` override where things are and
the time limits, so tests run the real scripts in a simulated tree.
"""
from __future__ import annotations

import argparse
import dataclasses
import json
import os
import signal
import sys
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from types import FrameType
from typing import TYPE_CHECKING, Any

from grader.arguments import bounded
from grader.errors import EXIT_CANNOT_GRADE, EXIT_GRADED, GraderError

if TYPE_CHECKING:
    from importlib.metadata import Distribution

    from grader.batch.collect import Submission
    from grader.grade import Options
    from grader.model import Report
    from grader.rubric import Rubric

#: The distribution whose wheel is bundled.
DISTRIBUTION = "numpy-nn-grader"
CONFIG_NAME = "grader-autograder.json"
CONFIG_SCHEMA = "grader.gradescope-autograder/1"
WHEELS = "wheels"
BUNDLE = "bundle"
FALLBACK = "fallback"
CONSTRAINTS = "constraints.txt"
SETUP = "setup.sh"
RUN = "run_autograder"

ROOT_ENV = "GRADER_AUTOGRADER_ROOT"
#: The time limit run_autograder enforces (it exports the one in force), for the sentences that name it.
TIMEOUT_ENV = "GRADER_AUTOGRADER_TIMEOUT"
DEFAULT_ROOT = "/autograder"
#: Just under Gradescope's default overall timeout (10 minutes), so that the page says what happened.
DEFAULT_TIME_LIMIT_S = 540
MIN_TIME_LIMIT_S, MAX_TIME_LIMIT_S = 10, 40 * 60
#: What one instructor's assignment folder may add to the zip (it is copied whole).
MAX_BUNDLE_BYTES = 100 * 1024 * 1024
#: Files of a submission looked at (Gradescope submissions are a few files; this bounds a hostile one).
MAX_SUBMISSION_FILES = 10_000
_SKIPPED_NAMES = frozenset({"__pycache__", ".git", ".ipynb_checkpoints", ".DS_Store"})

# ----------------------------------------------------------------------------- messages

OUT_IS_A_FOLDER = "--out {path} is a folder: give the path of the zip file to write, such as autograder.zip."
OUT_NOT_WRITABLE = "--out {path} cannot be written ({reason}); choose a folder you can write to."
NOT_INSTALLED = ("The grader running from {running} is not an installed {dist}, so its wheel cannot be built: install "
                 "it (pip install . or pip install -e .) and run grader gradescope again.")
STALE_INSTALL = ("The checkout at {root} is version {found} but its installed metadata says {installed}: reinstall it "
                 "(pip install -e {root}) and run grader gradescope again.")
NO_PYPROJECT = ("The grader is installed from {root}, which has no readable pyproject.toml ({reason}): reinstall it "
                "(pip install .) and run grader gradescope again.")
MISSING_FILE = "The grader's file {path} is missing, so its wheel cannot be built: reinstall the grader and try again."
BUNDLE_TOO_LARGE = ("The assignment folder {path} holds more than {limit} MB, too much to copy into the autograder zip: "
                    "move data it does not need out of it and try again.")
BUNDLE_UNREADABLE = "{path} cannot be copied into the autograder zip ({reason}); check its permissions and try again."
BAKED_RUBRIC_FAILS = ("The rubric copied into the autograder zip does not load there ({reason}); keep the files it names "
                      "(template, assignment) beside it and try again.")
BUILT = ("grader: wrote {out}: rubric {rubric} ({checks} checks, {points} points), assignment {assignment}, "
         "{wheel}, {pins} pinned dependencies; upload it on the assignment's Configure Autograder page "
         "(base image Ubuntu 22.04 or later).")
HIDDEN_WITH_POINTS = ('grader: note: {checks} {verb} visibility "hidden" and {points} points: Gradescope shows students '
                      'their total score all the same, from which they can work out what those checks earned; '
                      '"after_due_date" or "after_published" keeps the total hidden until then.')
CONFIG_UNREADABLE = ("The autograder's {path} cannot be read ({reason}); build the zip again with grader gradescope "
                     "and upload it.")
NO_SUBMISSION = ("No notebook (.ipynb) was found in your submission{seen}: upload your notebook{named} and submit "
                 "again.")
#: How collect's sentences end (for the instructor), and what the student reads instead.
STUDENT_ASKED = "; ask the student to "
#: What the student reads when grading did not finish; one per failure kind (``failure_document``).
FAILURE_SENTENCES = {
    "timeout": ("Grading stopped after {limit} seconds, before it finished, so this submission has no score yet: "
                "if your notebook runs something for a long time (an endless loop, a long training run), shorten "
                "it and submit again; otherwise your instructor can see what happened and will regrade it."),
    "crash": ("The grader failed on this submission (a fault of the grading machine, not of your notebook), so it "
              "has no score yet: your instructor can see why and will regrade it, or you may submit again."),
}
#: What the instructor reads in the hidden test of a failure, by who wrote the document.
FAILURE_DETAIL_PYTHON = {
    "timeout": "{detail}\n\nThe autograder output (stdout) shows how far grading got.",
    "crash": "{detail}\n\nThe full traceback is in the autograder output (stdout).",
}
FAILURE_DETAIL_SHELL = {
    "timeout": ("run_autograder stopped the grader after its time limit ({limit} s; GRADER_AUTOGRADER_TIMEOUT, "
                "or grader gradescope --time-limit) and the grader could not write results.json itself. "
                "The autograder output (stdout) shows how far it got."),
    "crash": ("The grader's Python ended without writing results.json (run_autograder says its exit status in the "
              "autograder output, stdout, with any traceback). Check that setup.sh succeeded (the build log), then "
              "regrade."),
}
FAILURE_TEST = "grading"
FAILURE_DETAIL_TEST = "grading failure (for instructors)"


# ----------------------------------------------------------------------------- the command


def _whole(low: int, high: int) -> Callable[[str], int]:
    """A whole number within [low, high] (``grader.arguments.bounded``), the range said in the error."""
    return bounded(int, low, high, f"a whole number from {low} to {high}")


def add_parser(commands: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """The ``gradescope`` subcommand (registered by ``grader.cli.build_parser``)."""
    parser = commands.add_parser("gradescope", help="build a ready Gradescope autograder zip (setup.sh, run_autograder, "
                                                    "the grader's wheel and the rubric)",
                                 description="Build a Gradescope autograder: upload the zip as the assignment's "
                                             "autograder; run_autograder always writes results.json.")
    parser.add_argument("--out", required=True, metavar="ZIP", help="the zip to write, such as autograder.zip (required)")
    parser.add_argument("--assignment", default=None, metavar="NAME|PATH",
                        help="bundled assignment name or path to an assignment's folder, copied into the zip "
                             "(default: the one the rubric names, else simple_nn)")
    parser.add_argument("--rubric", default=None, metavar="NAME|PATH",
                        help="bundled rubric name or path to a rubric .toml, copied into the zip with its template "
                             "(default: the assignment's own)")
    parser.add_argument("--seed", type=_whole(0, 2**63 - 1), default=0, help="seed for the random probes (default: 0)")
    parser.add_argument("--time-limit", type=_whole(MIN_TIME_LIMIT_S, MAX_TIME_LIMIT_S), default=DEFAULT_TIME_LIMIT_S,
                        metavar="S", help="seconds run_autograder lets one submission take before it writes a "
                                          "timeout result; keep it under the assignment's Gradescope timeout "
                                          f"(default: {DEFAULT_TIME_LIMIT_S}, for Gradescope's 10 minutes)")


def main(args: argparse.Namespace) -> int:
    """``grader gradescope``: build the zip; a GraderError (exit 2) names what is wrong."""
    built = build_autograder(Path(args.out), rubric=args.rubric, assignment=args.assignment, seed=args.seed,
                             time_limit_s=args.time_limit)
    for line in built.notes:
        print(line, file=sys.stderr)
    print(built.summary, file=sys.stderr)
    return EXIT_GRADED


# ----------------------------------------------------------------------------- building the zip


@dataclass(frozen=True)
class Config:
    """``grader-autograder.json``: what run_autograder grades with. Paths are relative to ``source/``."""

    #: A bundled rubric's name, ``bundle/…`` for one copied into the zip, or None: the assignment's own.
    rubric: str | None
    #: A bundled assignment's name, ``bundle/…``, or None: the one the rubric names.
    assignment: str | None
    seed: int
    #: The rubric's total, for a failure document written without loading it.
    max_score: float
    time_limit_s: int
    grader_version: str

    def to_json(self) -> str:
        return json.dumps({"schema": CONFIG_SCHEMA, **dataclasses.asdict(self)}, indent=2) + "\n"

    @classmethod
    def read(cls, source: Path) -> Config:
        path = source / CONFIG_NAME
        try:
            data = json.loads(path.read_text(encoding="utf-8"))
            if data.get("schema") != CONFIG_SCHEMA:
                raise ValueError(f"schema is {data.get('schema')!r}, not {CONFIG_SCHEMA}")
            return cls(rubric=data["rubric"], assignment=data["assignment"], seed=int(data["seed"]),
                       max_score=float(data["max_score"]), time_limit_s=int(data["time_limit_s"]),
                       grader_version=str(data["grader_version"]))
        except (OSError, ValueError, KeyError, TypeError, AttributeError) as exc:
            reason = getattr(exc, "strerror", None) or f"{type(exc).__name__}: {exc}"
            raise GraderError(CONFIG_UNREADABLE.format(path=path, reason=reason)) from exc

    def load_rubric(self, source: Path) -> Rubric:
        """The rubric as baked in, its copied files found under ``source``."""
        from grader.rubric import load_rubric

        return load_rubric(_located(self.rubric, source), _located(self.assignment, source))


def _located(value: str | None, source: Path) -> str | None:
    """A config value: a bundled name as it is, a copied file or folder as a path under ``source``."""
    if value is None or not value.startswith(BUNDLE + "/"):
        return value
    return str(source / value)


@dataclass(frozen=True)
class Built:
    """What ``build_autograder`` wrote: the zip's entries, and what to tell the instructor."""

    out: Path
    entries: tuple[str, ...]
    summary: str
    notes: tuple[str, ...]


def build_autograder(out: Path, *, rubric: str | None = None, assignment: str | None = None, seed: int = 0,
                     time_limit_s: int = DEFAULT_TIME_LIMIT_S) -> Built:
    """Write the autograder zip to ``out`` (atomically) for the rubric and assignment given as on the command line."""
    from grader import __version__
    from grader.files import write_atomic
    from grader.rubric import load_rubric

    if out.is_dir():
        raise GraderError(OUT_IS_A_FOLDER.format(path=out))
    loaded = load_rubric(rubric, assignment)
    bundle, config_rubric, config_assignment = _bundle(loaded, rubric, assignment)
    config = Config(rubric=config_rubric, assignment=config_assignment, seed=seed, max_score=loaded.max_score,
                    time_limit_s=time_limit_s, grader_version=__version__)
    _check_baked(config, bundle)
    wheel_name, wheel = build_wheel()
    pins = pinned_requirements()
    files = {**_entries(config, pins), f"{WHEELS}/{wheel_name}": wheel, **bundle}
    data = _zip_bytes(files, executable={SETUP, RUN})
    try:
        write_atomic(out, data)
    except OSError as exc:
        raise GraderError(OUT_NOT_WRITABLE.format(path=out, reason=exc.strerror or type(exc).__name__)) from exc
    summary = BUILT.format(out=out, rubric=loaded.name, checks=len(loaded.checks), points=_points(loaded.max_score),
                           assignment=loaded.assignment.name, wheel=wheel_name, pins=len(pins))
    return Built(out=out, entries=tuple(sorted(files)), summary=summary, notes=tuple(_hidden_notes(loaded)))


def _entries(config: Config, pins: Sequence[str]) -> dict[str, bytes]:
    """The zip's own files: the scripts, the config, the constraints and the fallback documents."""
    from grader import __version__

    return {
        SETUP: SETUP_SH.format(version=__version__, wheels=WHEELS, constraints=CONSTRAINTS).encode(),
        RUN: _run_autograder_script(config).encode(),
        CONFIG_NAME: config.to_json().encode(),
        CONSTRAINTS: _constraints_text(pins).encode(),
        **{f"{FALLBACK}/{kind}.json": _json_bytes(failure_document(kind, config.max_score, shell=True,
                                                                   limit=config.time_limit_s))
           for kind in FAILURE_SENTENCES},
    }


def _points(value: float) -> str:
    from grader.render._common import points

    return points(value)


def _hidden_notes(rubric: Rubric) -> list[str]:
    """The instructor's warning when "hidden" checks carry points (Gradescope still shows the total)."""
    hidden = [(check, weight.points) for check, weight in rubric.checks.items()
              if weight.visibility == "hidden" and weight.points > 0]
    if not hidden:
        return []
    return [HIDDEN_WITH_POINTS.format(checks=", ".join(check for check, _ in hidden),
                                      verb="has" if len(hidden) == 1 else "have",
                                      points=_points(sum(p for _, p in hidden)))]


def _json_bytes(document: dict[str, Any]) -> bytes:
    return (json.dumps(document, indent=2, ensure_ascii=False, allow_nan=False) + "\n").encode()


def _zip_bytes(files: dict[str, bytes], executable: set[str]) -> bytes:
    """The zip, reproducible (``grader.pack.wheel.reproducible_zip``) with Unix permissions kept: Gradescope
    runs ``run_autograder`` as it is unpacked, so it must be executable in the zip itself."""
    from grader.pack.wheel import reproducible_zip

    return reproducible_zip(files, executable)


# -- the rubric and assignment


#: What ``_bundle`` gives: the files under ``bundle/``, and the config's rubric and assignment.
_Baked = tuple[dict[str, bytes], str | None, str | None]


def _bundle(rubric: Rubric, rubric_arg: str | None, assignment_arg: str | None) -> _Baked:
    """The files to copy under ``bundle/`` and the config's rubric and assignment values.

    A bundled rubric or assignment is named (the wheel holds it); one given by path is copied with the
    files it refers to (its template, the assignment folder), all kept at the same places relative to
    each other, below their common folder.
    """
    from grader.rubric import builtin_rubrics

    rubric_bundled = rubric_arg is None or (rubric_arg in builtin_rubrics() and not _path_like(rubric_arg))
    assignment_bundled = _is_bundled(rubric)
    sources: list[Path] = []
    if not rubric_bundled or (rubric_arg is None and not assignment_bundled):
        sources.append(Path(rubric.path).resolve())
        if rubric.template:
            sources.append(Path(rubric.template).resolve())
    folder = None if assignment_bundled else Path(rubric.assignment.path).resolve()
    if not sources and folder is None:
        return {}, rubric_arg, assignment_arg
    anchors = [p.parent for p in sources] + ([folder.parent] if folder is not None else [])
    common = Path(os.path.commonpath([str(a) for a in anchors]))
    files: dict[str, bytes] = {}
    for path in sources:
        files[_bundled_name(path, common)] = _read(path)
    if folder is not None:
        files.update(_folder_files(folder, common))
    config_rubric = _bundled_name(sources[0], common) if sources and not rubric_bundled else rubric_arg
    if rubric_arg is None and not assignment_bundled:
        config_rubric = None  # the assignment's own rubric.toml, copied with its folder
    config_assignment = assignment_arg
    if assignment_arg is not None and folder is not None:
        config_assignment = _bundled_name(folder, common)
    return files, config_rubric, config_assignment


def _path_like(name: str) -> bool:
    return name.endswith(".toml") or "/" in name or "\\" in name


def _is_bundled(rubric: Rubric) -> bool:
    """Whether the rubric's assignment is one the grader ships (the wheel carries it)."""
    from grader.assignment import bundled, load_assignment

    assignment = rubric.assignment
    if assignment.name not in bundled():
        return False
    try:
        return load_assignment(assignment.name).path == assignment.path
    except GraderError:
        return False


def _bundled_name(path: Path, common: Path) -> str:
    return f"{BUNDLE}/{path.relative_to(common).as_posix()}"


def _read(path: Path) -> bytes:
    try:
        return path.read_bytes()
    except OSError as exc:
        raise GraderError(BUNDLE_UNREADABLE.format(path=path, reason=exc.strerror or type(exc).__name__)) from exc


def _folder_files(folder: Path, common: Path) -> dict[str, bytes]:
    """An assignment folder's files (caches and hidden files left out), bounded in size."""
    files: dict[str, bytes] = {}
    total = 0
    for path in sorted(_walk(folder)):
        data = _read(path)
        total += len(data)
        if total > MAX_BUNDLE_BYTES:
            raise GraderError(BUNDLE_TOO_LARGE.format(path=folder, limit=MAX_BUNDLE_BYTES // (1024 * 1024)))
        files[_bundled_name(path, common)] = data
    return files


def _walk(folder: Path) -> Iterator[Path]:
    for entry in folder.iterdir():
        if entry.name in _SKIPPED_NAMES or entry.name.startswith(".") or entry.suffix == ".pyc":
            continue
        if entry.is_dir() and not entry.is_symlink():
            yield from _walk(entry)
        elif entry.is_file():
            yield entry


def _check_baked(config: Config, bundle: dict[str, bytes]) -> None:
    """Load the rubric from a copy of what the zip carries, as run_autograder will: a rubric that names a file
    that was not copied fails here, not on every submission."""
    import tempfile

    if not bundle:
        return
    with tempfile.TemporaryDirectory(prefix="grader-gradescope-check-") as tmp:
        source = Path(tmp)
        for name, data in bundle.items():
            target = source / name
            target.parent.mkdir(parents=True, exist_ok=True)
            target.write_bytes(data)
        try:
            config.load_rubric(source)
        except GraderError as exc:
            raise GraderError(BAKED_RUBRIC_FAILS.format(reason=exc.message.rstrip("."))) from exc


# -- the grader's wheel


def build_wheel() -> tuple[str, bytes]:
    """The running grader as a wheel (file name, bytes): its installed files packed again, or for a checkout
    installed with ``pip install -e``, the packages its ``pyproject.toml`` declares. The metadata
    (``METADATA``, ``entry_points.txt``) is the installed distribution's; ``WHEEL`` and ``RECORD`` are written
    here (PEP 427)."""
    dist, checkout = _distribution()
    files = _checkout_files(checkout, dist.version) if checkout is not None else _installed_files(dist)
    from grader import __version__
    from grader.pack.wheel import normalized, wheel_bytes

    stem = f"{normalized(dist.metadata['Name'])}-{dist.version}"
    info = f"{stem}.dist-info"
    contents: dict[str, bytes] = {name: _read(path) for name, path in sorted(files.items())}
    for meta in ("METADATA", "entry_points.txt", "top_level.txt"):
        text = dist.read_text(meta)
        if text is not None:
            contents[f"{info}/{meta}"] = text.encode()
    return wheel_bytes(stem, contents, f"grader-gradescope ({__version__})")


def _distribution() -> tuple[Distribution, Path | None]:
    """The installed distribution of the grader that is running, and its checkout when it is an editable install.

    Several may be found (a checkout's ``*.egg-info`` left by an in-tree build is on ``sys.path`` when the
    working directory is the checkout): only a ``.dist-info`` with a RECORD counts (an egg-info's file list
    is whatever it was when it was made), and only the one whose files are the running package."""
    from importlib.metadata import distributions

    import grader

    running = Path(grader.__file__).resolve().parent
    for dist in distributions(name=DISTRIBUTION):
        if dist.read_text("RECORD") is None:
            continue
        root = _editable_root(dist)
        if root is not None:
            if running.is_relative_to(root.resolve()):
                return dist, root
        elif Path(str(dist.locate_file("grader/__init__.py"))).resolve().parent == running:
            return dist, None
    # A checkout run beside an installed copy of itself (its tests, run from the checkout after pip install .):
    # the running files are the checkout's, the metadata the installed copy's (the version is checked against it).
    checkout = running.parent
    if (checkout / "pyproject.toml").is_file():
        for dist in distributions(name=DISTRIBUTION):
            if dist.read_text("RECORD") is not None:
                return dist, checkout
    raise GraderError(NOT_INSTALLED.format(dist=DISTRIBUTION, running=running))


def _editable_root(dist: Distribution) -> Path | None:
    """The checkout an editable install points at (PEP 610 ``direct_url.json``), or None."""
    from urllib.parse import unquote, urlparse

    text = dist.read_text("direct_url.json")
    if not text:
        return None
    try:
        data = json.loads(text)
    except ValueError:
        return None
    if not (isinstance(data, dict) and data.get("dir_info", {}).get("editable")):
        return None
    url = urlparse(str(data.get("url", "")))
    return Path(unquote(url.path)) if url.scheme == "file" else None


def _installed_files(dist: Distribution) -> dict[str, Path]:
    """Wheel member name → file: the installed grader's packages as its RECORD lists them (no metadata, no caches)."""
    top = set((dist.read_text("top_level.txt") or "grader").split())
    files: dict[str, Path] = {}
    for entry in dist.files or ():
        parts = entry.parts
        if not parts or parts[0] not in top or "__pycache__" in parts or entry.suffix == ".pyc":
            continue
        path = Path(str(dist.locate_file(entry)))
        if not path.is_file():
            raise GraderError(MISSING_FILE.format(path=path))
        files[entry.as_posix()] = path
    return files


def _checkout_files(root: Path, installed: str) -> dict[str, Path]:
    """What setuptools packs from this checkout: every ``.py`` of each declared package plus its package data,
    each package found through ``package-dir`` (``grader.reference`` is the checkout's ``reference/``)."""
    import tomllib

    try:
        pyproject = tomllib.loads((root / "pyproject.toml").read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        raise GraderError(NO_PYPROJECT.format(root=root, reason=getattr(exc, "strerror", None) or exc)) from exc
    found = str(pyproject.get("project", {}).get("version", ""))
    if found != installed:
        raise GraderError(STALE_INSTALL.format(root=root, found=found or "unknown", installed=installed))
    config = pyproject.get("tool", {}).get("setuptools", {})
    package_dir: dict[str, str] = config.get("package-dir", {})
    data: dict[str, list[str]] = config.get("package-data", {})
    files: dict[str, Path] = {}
    for package in config.get("packages", []):
        folder = _package_folder(root, package, package_dir)
        prefix = package.replace(".", "/")
        patterns = ["*.py", *data.get(package, []), *data.get("*", [])]
        for pattern in patterns:
            for path in sorted(folder.glob(pattern)):
                if path.is_file() and "__pycache__" not in path.parts:
                    files[f"{prefix}/{path.relative_to(folder).as_posix()}"] = path
    return files


def _package_folder(root: Path, package: str, package_dir: dict[str, str]) -> Path:
    """The folder of ``package`` under setuptools' ``package-dir`` rule: the longest mapped prefix wins."""
    parts = package.split(".")
    for end in range(len(parts), 0, -1):
        mapped = package_dir.get(".".join(parts[:end]))
        if mapped is not None:
            return root.joinpath(mapped, *parts[end:])
    return root.joinpath(package_dir.get("", ""), *parts)


def pinned_requirements() -> list[str]:
    """``name==version`` for every runtime dependency of the grader, transitively, as installed here: setup.sh
    installs what was tested. Installs that are not from an index (a local folder, a VCS) are left unpinned."""
    try:
        from packaging.requirements import InvalidRequirement, Requirement
        from packaging.utils import canonicalize_name
    except ImportError:  # pragma: no cover - packaging comes with ipykernel and matplotlib
        return []
    from importlib.metadata import PackageNotFoundError, distribution

    pins: dict[str, str] = {}
    queue = list(_distribution()[0].requires or [])
    while queue:
        try:
            requirement = Requirement(queue.pop())
        except InvalidRequirement:
            continue
        if requirement.marker is not None and not requirement.marker.evaluate({"extra": ""}):
            continue
        name = canonicalize_name(requirement.name)
        if name in pins:
            continue
        try:
            dist = distribution(requirement.name)
        except PackageNotFoundError:
            continue
        pins[name] = "" if dist.read_text("direct_url.json") else dist.version
        queue.extend(dist.requires or [])
    return sorted(f"{name}=={version}" for name, version in pins.items() if version)


def _constraints_text(pins: Sequence[str]) -> str:
    header = ("# The grader's dependencies as installed where this autograder was built (grader gradescope);\n"
              "# setup.sh installs these versions. Delete a line to let pip choose.\n")
    return header + "".join(f"{pin}\n" for pin in pins)


# ----------------------------------------------------------------------------- failure documents


def failure_document(kind: str, max_score: float, *, detail: str = "", shell: bool = False,
                     limit: int = DEFAULT_TIME_LIMIT_S) -> dict[str, Any]:
    """The results.json of a run that could not grade: ``kind`` is ``"timeout"`` or ``"crash"``.

    No top-level ``score``: nothing was graded, and a score would claim a grade (per Gradescope's
    specification the total is then the tests', here the failed ``grading`` test's 0 of the rubric's
    points, until the instructor regrades). The student reads one sentence at the top and in that
    test; a ``hidden`` 0-point test, which only instructors see, says what happened (``detail``, or
    for the shell's copy what its exit status means).
    """
    from grader.untrusted_text import safe_text

    sentence = FAILURE_SENTENCES[kind].format(limit=limit)
    instructor = FAILURE_DETAIL_SHELL[kind].format(limit=limit) if shell else FAILURE_DETAIL_PYTHON[kind].format(
        detail=safe_text(detail or kind, multiline=True, limit=4000))
    from grader import __version__

    return {
        "output": f"**Not graded:** {sentence}",
        "output_format": "md",
        "visibility": "visible",
        "stdout_visibility": "hidden",
        "tests": [
            {"name": FAILURE_TEST, "number": "1", "score": 0.0, "max_score": float(max_score), "status": "failed",
             "output": f"**Not graded:** {sentence}", "output_format": "md", "tags": [FAILURE_TEST],
             "visibility": "visible"},
            {"name": FAILURE_DETAIL_TEST, "number": "2", "score": 0.0, "max_score": 0.0, "status": "failed",
             "output": instructor, "output_format": "text", "tags": [FAILURE_TEST], "visibility": "hidden"},
        ],
        "extra_data": {"status": "failure", "failure": kind, "grader": __version__},
    }


# ----------------------------------------------------------------------------- running on Gradescope


class _Deadline(BaseException):
    """run_autograder's time limit (SIGTERM from ``timeout``): unwinds grading, closing its sandbox, so that
    results.json is still written. A BaseException, so no ``except Exception`` in the grader swallows it."""


def _on_term(signum: int, frame: FrameType | None) -> None:
    raise _Deadline


def root_dir() -> Path:
    return Path(os.environ.get(ROOT_ENV) or DEFAULT_ROOT)


@dataclass
class _Attempt:
    """What one run knows so far: enough to write a failure document at any point."""

    started: float = dataclasses.field(default_factory=time.perf_counter)
    max_score: float = 0.0
    limit: int = DEFAULT_TIME_LIMIT_S


def run(root: Path) -> int:
    """Grade ``root/submission`` and write ``root/results/results.json``, whatever happens (see the module
    docstring); exit 0 when a report was written, 2 when a failure document was."""
    attempt = _Attempt()
    previous = signal.signal(signal.SIGTERM, _on_term)
    try:
        try:
            text, code = _graded(root, attempt)
        except _Deadline:
            signal.signal(signal.SIGTERM, signal.SIG_IGN)
            spent = time.perf_counter() - attempt.started
            print(f"grader: stopped by the time limit ({attempt.limit} s) after {spent:.1f} s")
            text = _json_bytes(failure_document("timeout", attempt.max_score, limit=attempt.limit,
                                                detail=f"Stopped by the time limit ({attempt.limit} s) after "
                                                       f"{spent:.1f} s.")).decode()
            code = EXIT_CANNOT_GRADE
        _write_text(root / "results" / "results.json", text)
    finally:
        signal.signal(signal.SIGTERM, previous)
        _tell_operator()
    return code


def _graded(root: Path, attempt: _Attempt) -> tuple[str, int]:
    """The results.json text and exit code: the report's, or a crash document when the grader itself failed."""
    from grader import __version__
    from grader.cache import matplotlib_config_default
    from grader.render import gradescope

    source = root / "source"
    try:
        config = Config.read(source)
        attempt.max_score, attempt.limit = config.max_score, _time_limit(config.time_limit_s)
        matplotlib_config_default()
        rubric = config.load_rubric(source)
        print(f"grader {__version__}: rubric {rubric.name}, assignment {rubric.assignment.name}, seed {config.seed}")
        report = grade_submission(root / "submission", rubric, config.seed, _submission_id(root))
        text = gradescope.render(report)
        signal.signal(signal.SIGTERM, signal.SIG_IGN)  # the report is ready: nothing may cut its writing short
    except Exception as exc:  # noqa: BLE001 - whatever breaks, Gradescope must get a results.json saying so
        signal.signal(signal.SIGTERM, signal.SIG_IGN)
        import traceback

        traceback.print_exc(file=sys.stdout)
        detail = exc.message if isinstance(exc, GraderError) else f"{type(exc).__name__}: {exc}"
        document = failure_document("crash", attempt.max_score, detail=detail, limit=attempt.limit)
        return _json_bytes(document).decode(), EXIT_CANNOT_GRADE
    print(f"grader: {report.submission}: {report.status}, {_points(report.score)}/{_points(report.max_score)} "
          f"in {time.perf_counter() - attempt.started:.2f} s" + (f" ({report.error})" if report.error else ""))
    return text, EXIT_GRADED


def _time_limit(baked: int) -> int:
    """The limit run_autograder enforces: ``GRADER_AUTOGRADER_TIMEOUT`` when it overrides the baked one."""
    try:
        return int(os.environ[TIMEOUT_ENV])
    except (KeyError, ValueError):
        return baked


def _tell_operator() -> None:
    """Operator notices (what this machine did not enforce) go to stdout, which only instructors see."""
    from grader.sandbox import environment

    for notice in environment.notices():
        print(environment.stderr_line(notice))


def _write_text(path: Path, text: str) -> None:
    from grader.files import write_atomic

    write_atomic(path, text)


def _submission_id(root: Path) -> str:
    """Gradescope's submission id (``submission_metadata.json``), or ``"0"``: it names the folder collect sees."""
    try:
        data = json.loads((root / "submission_metadata.json").read_text(encoding="utf-8"))
        value = str(int(data["id"]))
    except (OSError, ValueError, KeyError, TypeError):
        return "0"
    return value


def grade_submission(submission: Path, rubric: Rubric, seed: int = 0, submission_id: str = "0") -> Report:
    """Grade the notebook of one Gradescope submission folder, chosen as ``grader grade`` chooses one
    submission's notebook (the one defining the most graded functions, then the template's name);
    a status "error" report when there is none to grade (never raises for a student's files)."""
    import tempfile

    from grader.batch.collect import collect
    from grader.grade import Options, error_report

    started = time.perf_counter()
    with tempfile.TemporaryDirectory(prefix="grader-gradescope-") as tmp:
        unit = Path(tmp) / f"submission_{submission_id}"
        seen = _mirror(submission, unit)
        collection = collect([tmp], template=rubric.template, names=rubric.assignment.names)
        if collection.submissions:
            return _grade_one(collection.submissions[0], str(unit) + os.sep, rubric, Options(seed=seed))
    if collection.problems and any(name.lower().endswith((".ipynb", ".zip")) for name in seen):
        return error_report("submission", rubric, _for_the_student(collection.problems[0].message, str(unit)),
                            started)
    return error_report("submission", rubric, _no_notebook(seen, rubric), started)


def _for_the_student(message: str, unit: str) -> str:
    """A collect sentence (written for whoever runs ``grader grade``) as the student reads it on Gradescope:
    without the mirror's folder, and asking them rather than about them."""
    message = message.replace(unit + os.sep + " ", "Your submission ").replace(unit + os.sep, "")
    return message.replace(STUDENT_ASKED, "; please ")


def _grade_one(submission: Submission, prefix: str, rubric: Rubric, options: Options) -> Report:
    """Grade the collected submission from its bytes, named as the student named it (without the mirror's
    folder), with the ``.py`` files beside it that its cells may import."""
    from grader.grade import companion_files, error_report, grade_notebook

    started = time.perf_counter()
    ref = submission.ref
    name = submission.source.replace(prefix, "", 1)
    try:
        data = ref.read()
    except GraderError as exc:  # changed or gone since it was collected, a moment ago
        return error_report(name, rubric, exc.message.replace(prefix, ""), started)
    files = ref.read_companions() if ref.members else companion_files(os.path.realpath(ref.path))
    report = grade_notebook(name, rubric, options, data=data, files=files)
    if submission.note:  # which of the submission's notebooks was graded, and why
        report.warnings.append(submission.note.replace(prefix, ""))
    return report


def _mirror(submission: Path, unit: Path) -> list[str]:
    """``unit`` made a copy of the submission folder's tree, its files symbolic links to the student's:
    collect then sees one Gradescope submission (``submission_<id>/``) and chooses its notebook.
    Returns the names of the files seen (for the sentence when none is a notebook)."""
    seen: list[str] = []
    unit.mkdir(parents=True)
    if not submission.is_dir():
        return seen
    for folder, dirnames, filenames in os.walk(submission):
        dirnames[:] = sorted(d for d in dirnames if not os.path.islink(os.path.join(folder, d)))
        relative = Path(folder).relative_to(submission)
        (unit / relative).mkdir(parents=True, exist_ok=True)
        for name in sorted(filenames):
            if len(seen) >= MAX_SUBMISSION_FILES:
                return seen
            real = Path(folder) / name
            if real.is_symlink() or not real.is_file():
                continue
            seen.append((relative / name).as_posix())
            (unit / relative / name).symlink_to(real)
    return seen


def _no_notebook(seen: list[str], rubric: Rubric) -> str:
    from grader.untrusted_text import safe_text

    shown = ", ".join(safe_text(name) for name in seen[:5]) + (f" and {len(seen) - 5} more" if len(seen) > 5 else "")
    template = os.path.basename(rubric.template) if rubric.template else ""
    return NO_SUBMISSION.format(seen=f" (it holds {shown})" if seen else " (it is empty)",
                                named=f", such as {template}," if template else "")


def self_test(root: Path) -> int:
    """setup.sh's check: grade the rubric's template once (warming the caches) and say how it went."""
    from grader.cache import matplotlib_config_default
    from grader.grade import Options, grade_notebook

    config = Config.read(root / "source")
    matplotlib_config_default()
    rubric = config.load_rubric(root / "source")
    if not rubric.template:
        print("self-test: the rubric names no template notebook; nothing to grade before the first submission")
        return EXIT_GRADED
    started = time.perf_counter()
    report = grade_notebook(rubric.template, rubric, Options(seed=config.seed))
    print(f"self-test: {os.path.basename(rubric.template)}: {report.status}, {_points(report.score)}/"
          f"{_points(report.max_score)} in {time.perf_counter() - started:.2f} s"
          + (f" ({report.error})" if report.error else ""))
    _tell_operator()
    return EXIT_GRADED if report.status == "graded" else EXIT_CANNOT_GRADE


def _entry(argv: Sequence[str] | None = None) -> int:
    """``python -m grader.integrations.gradescope_autograder run|self-test`` (what the scripts call)."""
    parser = argparse.ArgumentParser(prog="python -m grader.integrations.gradescope_autograder")
    parser.add_argument("action", choices=("run", "self-test"))
    args = parser.parse_args(argv)
    root = root_dir()
    if args.action == "run":
        return run(root)
    try:
        return self_test(root)
    except GraderError as exc:
        print(f"self-test: {exc.message}")
        return exc.exit_code


# ----------------------------------------------------------------------------- the scripts

#: Run once by Gradescope, as root, while it builds the image. ``{{`` and ``}}`` are literal braces.
SETUP_SH = """\
#!/usr/bin/env bash
# Gradescope runs this once, as root, while it builds the autograder image (Ubuntu; its default base
# image is 22.04). It installs a Python >= 3.11 and the grader bundled in this zip (wheels/, grader
# {version}) into a virtual environment, which run_autograder uses. Written by `grader gradescope`.
set -euo pipefail

ROOT="${{GRADER_AUTOGRADER_ROOT:-/autograder}}"
SOURCE="$ROOT/source"
VENV="${{GRADER_AUTOGRADER_VENV:-$ROOT/grader-venv}}"
export DEBIAN_FRONTEND=noninteractive

# A Python >= 3.11 that can make a virtual environment with pip in it.
usable() {{
  "$1" -c 'import sys, ensurepip, venv; sys.exit(sys.version_info < (3, 11))' >/dev/null 2>&1
}}
pick_python() {{
  for candidate in python3 python3.11; do
    if command -v "$candidate" >/dev/null 2>&1 && usable "$candidate"; then
      command -v "$candidate"
      return 0
    fi
  done
  return 1
}}

apt-get update -q
apt-get install -y -q --no-install-recommends ca-certificates libseccomp2
PYTHON="$(pick_python || true)"
if [ -z "$PYTHON" ] && command -v python3 >/dev/null 2>&1 \\
    && python3 -c 'import sys; sys.exit(sys.version_info < (3, 11))'; then
  # The image's own Python is new enough (Ubuntu 24.04: 3.12) but comes without venv.
  apt-get install -y -q --no-install-recommends python3-venv
  PYTHON="$(pick_python || true)"
fi
if [ -z "$PYTHON" ]; then
  # Ubuntu 22.04 has python3.11 in universe; older releases get it from the deadsnakes PPA.
  if ! apt-get install -y -q --no-install-recommends python3.11 python3.11-venv; then
    apt-get install -y -q --no-install-recommends software-properties-common gnupg
    add-apt-repository -y ppa:deadsnakes/ppa
    apt-get update -q
    apt-get install -y -q --no-install-recommends python3.11 python3.11-venv
  fi
  PYTHON="$(pick_python)"
fi
echo "setup.sh: $("$PYTHON" --version) from $PYTHON"

rm -rf "$VENV"
"$PYTHON" -m venv "$VENV"
"$VENV/bin/python" -m pip install --quiet --no-cache-dir --upgrade pip
"$VENV/bin/python" -m pip install --no-cache-dir --constraint "$SOURCE/{constraints}" "$SOURCE"/{wheels}/*.whl

# Grade the rubric's template once: warms the grader's caches, and this log shows whether grading works here.
if ! "$VENV/bin/python" -m grader.integrations.gradescope_autograder self-test; then
  echo "setup.sh: the self-test above did not grade; each submission's page will say why it was not graded."
fi
"""

#: Run by Gradescope for every submission. ``{{`` and ``}}`` are literal braces.
RUN_AUTOGRADER = """\
#!/usr/bin/env bash
# Gradescope runs this for every submission: it grades the notebook in submission/ and writes
# results/results.json, on every path (a grader that crashes, times out or does not start still
# leaves one saying so). Written by `grader gradescope` (grader {version}); the rubric is in
# source/{config}.
set -uo pipefail  # not -e: every failure below must still end in a results.json

ROOT="${{GRADER_AUTOGRADER_ROOT:-/autograder}}"
SOURCE="$ROOT/source"
PYTHON="${{GRADER_AUTOGRADER_PYTHON:-${{GRADER_AUTOGRADER_VENV:-$ROOT/grader-venv}}/bin/python}}"
export GRADER_AUTOGRADER_TIMEOUT="${{GRADER_AUTOGRADER_TIMEOUT:-{time_limit}}}"
TIME_LIMIT="$GRADER_AUTOGRADER_TIMEOUT"
KILL_AFTER="${{GRADER_AUTOGRADER_KILL_AFTER:-10}}"  # then a grader that ignores the time limit is killed
RESULTS="$ROOT/results/results.json"
status=0

finish() {{
  if [ ! -s "$RESULTS" ]; then
    case "$status" in
      124|137|143) kind=timeout ;;
      *) kind=crash ;;
    esac
    echo "run_autograder: the grader wrote no results.json (exit status $status); writing the $kind result"
    mkdir -p "$ROOT/results"
    cp "$SOURCE/{fallback}/$kind.json" "$RESULTS" 2>/dev/null || printf '%s\\n' '{minimal}' >"$RESULTS"
  fi
}}
trap finish EXIT
trap 'status=143; exit 0' TERM INT HUP

mkdir -p "$ROOT/results"
rm -f "$RESULTS"
cd "$ROOT"
export GRADER_AUTOGRADER_ROOT="$ROOT"
timeout --kill-after="$KILL_AFTER" "$TIME_LIMIT" "$PYTHON" -m grader.integrations.gradescope_autograder run
status=$?
exit 0
"""


def _run_autograder_script(config: Config) -> str:
    """run_autograder with its time limit and, for a results.json the fallback files cannot give, a last one."""
    minimal = json.dumps(failure_document("crash", config.max_score, shell=True, limit=config.time_limit_s),
                         ensure_ascii=True, separators=(",", ":")).replace("'", "\\u0027")
    return RUN_AUTOGRADER.format(version=config.grader_version, config=CONFIG_NAME, time_limit=config.time_limit_s,
                                 fallback=FALLBACK, minimal=minimal)


if __name__ == "__main__":  # pragma: no cover - what run_autograder and setup.sh run
    sys.exit(_entry())
