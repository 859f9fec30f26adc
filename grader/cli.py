"""Command line: ``grader check`` (one notebook), ``grader grade`` (a class), ``grader calibrate`` and
``grader doctor`` (what this machine enforces; exit 0 all of it, 1 not all, 2 cannot grade here).

``main(argv) -> int`` in the manner of pypa/build: every domain error is one
sentence on stderr and a documented exit code, never a traceback.
  0  graded (and at or above --fail-under)
  1  graded, but under --fail-under
  2  cannot grade (the report, with status "error", is still printed)
"""
from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, TypeVar

from grader.errors import EXIT_CANNOT_GRADE, EXIT_GRADED, EXIT_UNDER_THRESHOLD, GraderError, SettingError
from grader.sandbox import environment
from grader.sandbox.limits import Limits, Setting, settings

if TYPE_CHECKING:
    from grader.rubric import Rubric

N = TypeVar("N", int, float)

FORMATS = ("text", "json", "md", "html", "junit", "gradescope", "classroom")


def _bounded(convert: Callable[[str], N], low: float, high: float, expected: str) -> Callable[[str], N]:
    """An argparse type: ``convert(text)`` within [low, high], else an error naming the value and what was expected."""
    def parse(text: str) -> N:
        try:
            value = convert(text)
        except ValueError:
            value = None
        if value is None or not low <= value <= high:
            raise argparse.ArgumentTypeError(f"expected {expected}, got {text!r}")
        return value
    return parse


_jobs = _bounded(int, 1, 256, "a whole number of processes from 1 to 256")
_percentage = _bounded(float, 0, 100, "a number from 0 to 100")


#: Where a limit given as a flag came from, in a SettingError (``Limits.merged``, ``Setting.check``).
COMMAND_LINE = "the command line"


def _limit_type(setting: Setting) -> Callable[[str], float]:
    """The argparse type of a limit's flag: its own rule (``Setting.check``), its own message, naming the flag."""
    def parse(text: str) -> float:
        try:
            return setting.parse(text, f"{COMMAND_LINE} ({setting.flag})")
        except SettingError as exc:
            raise argparse.ArgumentTypeError(exc.message) from None
    return parse


def add_limit_options(parser: argparse.ArgumentParser) -> None:
    """One flag per limit of ``grader.sandbox.limits`` (``--cell-timeout S``, ...), stored under the limit's
    name (``args.cell_timeout_s``); None when not given."""
    group = parser.add_argument_group("limits (override the rubric's [limits])")
    for setting in settings():
        group.add_argument(setting.flag, type=_limit_type(setting), metavar=setting.metavar, dest=setting.name,
                           default=None, help=setting.help_text())


def _add_grading_options(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--assignment", default=None, metavar="NAME|PATH",
                        help="bundled assignment name or path to an assignment's folder (default: the one the "
                             "rubric names, else simple_nn)")
    parser.add_argument("--rubric", default=None, metavar="NAME|PATH",
                        help="bundled rubric name or path to a rubric .toml (default: the assignment's own)")
    parser.add_argument("--seed", type=_bounded(int, 0, 2**63 - 1, "a whole number >= 0"), default=0,
                        help="seed for the random probes (default: 0)")
    parser.add_argument("--backend", choices=("subprocess", "kernel"), default="subprocess",
                        help="run the notebook in a confined Python (default) or, as Jupyter's 'Restart & Run All' "
                             "does, in an ipykernel driven by nbclient")
    add_limit_options(parser)


def _pack_note() -> str:
    """`` (student pack of NAME)`` when this installation is a student pack (its assignment is tables)."""
    from grader.assignment import bundled, load_assignment
    from grader.pack.installed import public_seed

    try:
        names = bundled()
        packed = [n for n in names if public_seed(load_assignment(n)) is not None] if len(names) == 1 else []
    except GraderError:
        return ""
    return f" (student pack of {packed[0]})" if packed else ""


class _Version(argparse.Action):
    """``--version``, worked out only when asked (a pack's note reads its assignment)."""

    def __call__(self, parser: argparse.ArgumentParser, namespace: argparse.Namespace, values: object,
                 option_string: str | None = None) -> None:
        from grader import __version__
        print(f"grader {__version__}{_pack_note()}")
        parser.exit()


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="grader", description="Grade students' numpy notebooks against an "
                                                                "assignment's reference (default: simple_nn).")
    parser.add_argument("--version", action=_Version, nargs=0, help="show the version (and the pack's assignment) and exit")
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    check = commands.add_parser("check", help="grade one notebook and print its report")
    check.add_argument("notebook", metavar="NOTEBOOK", help="path to the .ipynb file")
    check.add_argument("--format", choices=FORMATS, default="text", help="report format (default: text)")
    check.add_argument("--fail-under", type=_percentage, metavar="N",
                       help="exit 1 when the score is under N percent of the maximum")
    check.add_argument("--no-color", action="store_true", help="never colour the text report")
    _add_grading_options(check)

    grade = commands.add_parser("grade", help="grade a whole class into an output folder (resumable)")
    grade.add_argument("paths", nargs="+", metavar="PATH", help="notebooks, folders or LMS zip exports")
    grade.add_argument("--out", required=True, metavar="DIR", help="output folder (re-runs reuse what is there)")
    grade.add_argument("--jobs", type=_jobs, default=os.cpu_count() or 1,
                       help="grading processes (default: the number of CPUs)")
    grade.add_argument("--force", action="store_true", help="regrade even submissions whose stored report is current")
    grade.add_argument("--lms", action="append", choices=("canvas", "moodle", "blackboard", "gradescope"),
                       help="also write that LMS's grade import file into DIR (repeatable)")
    _add_grading_options(grade)

    calibrate = commands.add_parser("calibrate", help="grade the reference and every mutant; exit 1 on a rubric gap")
    calibrate.add_argument("--format", choices=("text", "json"), default="text")
    _add_grading_options(calibrate)

    pack = commands.add_parser("pack", help="write the student pack: a wheel students install to self-check, "
                                            "with no reference or bug catalogue in it")
    pack.add_argument("--out", required=True, metavar="DIR", help="folder the wheel is written to")
    pack.add_argument("--assignment", default=None, metavar="NAME|PATH",
                      help="bundled assignment name or path to an assignment's folder (default: simple_nn)")
    pack.add_argument("--rubric", default=None, metavar="NAME|PATH",
                      help="bundled rubric name or path to a rubric .toml (default: the assignment's own)")
    pack.add_argument("--public-seed", type=_bounded(int, 0, 2**63 - 1, "a whole number >= 0"), default=1,
                      help="seed of the public probes the pack holds answers for (default: 1)")
    pack.add_argument("--seed", type=_bounded(int, 0, 2**63 - 1, "a whole number >= 0"), default=0,
                      help="the seed you grade with, which the public seed must differ from (default: 0)")
    pack.add_argument("--release", action="append", default=[], metavar="VISIBILITY",
                      choices=("after_due_date", "after_published"),
                      help="also release checks of this visibility (after_due_date, after_published); "
                           "visible checks are always in, hidden ones never")

    doctor = commands.add_parser("doctor", help="say what this machine enforces for student code "
                                                "(exit 0 all of it, 1 not all, 2 cannot grade here)")
    doctor.add_argument("--format", choices=("text", "json"), default="text")
    doctor.add_argument("--no-sandbox", action="store_true",
                        help="only look at this process and the kernel; do not start a sandbox to look inside it")

    from grader.integrations import gradescope_autograder
    gradescope_autograder.add_parser(commands)
    return parser


def _limit_overrides(args: argparse.Namespace) -> dict[str, float]:
    """The limits given as flags, by name (what ``Limits.merged`` and ``BatchOptions.limit_overrides`` take)."""
    given = {setting.name: getattr(args, setting.name, None) for setting in settings()}
    return {name: value for name, value in given.items() if value is not None}


def _limits(args: argparse.Namespace, rubric: Rubric) -> Limits:
    return rubric.limits.merged(_limit_overrides(args), COMMAND_LINE)


def _colour(args: argparse.Namespace) -> bool:
    return not args.no_color and "NO_COLOR" not in os.environ and sys.stdout.isatty()


def _write_report(text: str) -> None:
    """Write ``text`` to stdout in whatever encoding it has, escaping what that encoding cannot hold.

    Renderers give safe text, but a terminal in a legacy encoding (``LANG=C``
    on an old system, a Windows console) must still get its report rather than
    a ``UnicodeEncodeError`` and nothing.
    """
    encoding = getattr(sys.stdout, "encoding", None) or "utf-8"
    sys.stdout.write(text.encode(encoding, "backslashreplace").decode(encoding, "replace"))


#: ``grader check`` given what ``grader grade`` takes.
NOT_ONE_NOTEBOOK = ("{path} is a {what}: grader check grades one notebook; to grade every notebook in it, run "
                    "grader grade {path} --out DIR.")
OUT_IS_A_FILE = "--out {path} is a file, not a folder: give a folder (it is created when missing)."
OUT_NOT_WRITABLE = "--out {path} cannot be written ({reason}); choose a folder you can write to."


def _one_notebook(path: str) -> None:
    """A folder or an archive given to ``grader check`` is one sentence pointing at ``grader grade``."""
    from pathlib import Path

    target = Path(path)
    if target.is_dir():
        raise GraderError(NOT_ONE_NOTEBOOK.format(path=path, what="folder"))
    if target.suffix.lower() == ".zip":
        raise GraderError(NOT_ONE_NOTEBOOK.format(path=path, what="zip archive"))


def _writable_out(path: str) -> None:
    """``--out`` must be a folder the grader can write, said before any grading starts."""
    import tempfile
    from pathlib import Path

    target = Path(path)
    if target.exists() and not target.is_dir():
        raise GraderError(OUT_IS_A_FILE.format(path=path))
    if target.is_dir():  # written into: try it
        try:
            with tempfile.TemporaryFile(dir=target):
                pass
        except OSError as exc:
            raise GraderError(OUT_NOT_WRITABLE.format(path=path, reason=exc.strerror or type(exc).__name__)) from exc
        return
    # Created by the batch when its work starts (nothing is made before every other check passed): its nearest
    # existing ancestor must be a folder this user can create it in.
    ancestor = target.absolute().parent
    while not ancestor.exists():
        ancestor = ancestor.parent
    if not ancestor.is_dir():
        raise GraderError(OUT_NOT_WRITABLE.format(path=path, reason=f"{ancestor} is a file"))
    if not os.access(ancestor, os.W_OK | os.X_OK):
        raise GraderError(OUT_NOT_WRITABLE.format(path=path, reason="Permission denied"))


def _check(args: argparse.Namespace) -> int:
    from grader.grade import Options, grade_notebook
    from grader.rubric import load_rubric

    _one_notebook(args.notebook)
    rubric = load_rubric(args.rubric, args.assignment)
    report = grade_notebook(args.notebook, rubric,
                            Options(seed=args.seed, limits=_limits(args, rubric), backend=args.backend))
    if args.format == "text":
        from grader.render import text
        output = text.render(report, colour=_colour(args))
    else:
        from grader.render import render
        output = render(report, args.format)
    _write_report(output if output.endswith("\n") else output + "\n")
    sys.stdout.flush()
    for notice in environment.notices():  # the operator's, on stderr; the report is the student's
        print(environment.stderr_line(notice), file=sys.stderr)
    if report.status != "graded":
        return EXIT_CANNOT_GRADE
    if (args.fail_under is not None and report.max_score > 0
            and 100.0 * report.score / report.max_score < args.fail_under):
        return EXIT_UNDER_THRESHOLD
    return EXIT_GRADED


def _grade(args: argparse.Namespace) -> int:
    from pathlib import Path

    from grader.batch.run import BatchOptions, run_batch

    _writable_out(args.out)
    options = BatchOptions(out=Path(args.out), jobs=args.jobs, force=args.force, seed=args.seed, rubric=args.rubric,
                           limit_overrides=tuple(_limit_overrides(args).items()), backend=args.backend,
                           assignment=args.assignment, lms=tuple(dict.fromkeys(args.lms or ())))
    interrupted = (f"grader: interrupted; every report finished so far is in {args.out}. "
                   "Run the same command again to grade the rest.")
    try:
        result = run_batch(args.paths, options)
    except KeyboardInterrupt:
        print(interrupted, file=sys.stderr)
        return 130
    if result.interrupted:
        print(interrupted, file=sys.stderr)
        return 130
    rate = (result.graded / result.seconds) if result.seconds > 0 else 0.0
    print(f"grader: {len(result.rows)} submissions in {args.out}: {result.graded} graded now "
          f"({rate:.1f}/s), {result.reused} unchanged and reused, {result.errors} with status error; "
          f"gradebook: {Path(args.out) / 'gradebook.csv'}", file=sys.stderr)
    return EXIT_GRADED


def _calibrate(args: argparse.Namespace) -> int:
    from grader.calibrate import main as calibrate_main
    return calibrate_main(args)


def _pack(args: argparse.Namespace) -> int:
    """``grader pack``: the wheel students install; what it holds and leaves out, on stderr."""
    from pathlib import Path

    from grader.pack.build import RELEASED_BY_DEFAULT, build_pack
    from grader.rubric import load_rubric

    _writable_out(args.out)
    rubric = load_rubric(args.rubric, args.assignment)
    pack = build_pack(rubric, Path(args.out), args.public_seed, args.seed,
                      RELEASED_BY_DEFAULT | frozenset(args.release))
    left_out = f"; left out: {', '.join(pack.left_out)}" if pack.left_out else ""
    print(f"grader: student pack of {pack.assignment} written to {pack.wheel} ({len(pack.checks)} checks on "
          f"public probes, seed {pack.public_seed}{left_out}); students install it with pip install {pack.wheel.name}",
          file=sys.stderr)
    print(pack.wheel)
    return EXIT_GRADED


def _doctor(args: argparse.Namespace) -> int:
    """``grader doctor``: what this machine enforces for student code; the exit code is the verdict."""
    import json

    result = environment.survey(sandbox=not args.no_sandbox)
    if args.format == "json":
        _write_report(json.dumps(environment.to_dict(result), indent=1) + "\n")
    else:
        _write_report(environment.render_text(result))
    return result.exit_code


def _gradescope(args: argparse.Namespace) -> int:
    from grader.integrations import gradescope_autograder
    return gradescope_autograder.main(args)


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    try:
        args = parser.parse_args(argv)
    except SystemExit as exit_:
        return EXIT_CANNOT_GRADE if exit_.code else EXIT_GRADED
    try:
        if args.command in ("check", "grade", "doctor"):
            from grader.cache import matplotlib_config_default
            environment.forget()  # this command's operator notices only (main() may run many times in a process)
            matplotlib_config_default()  # a service account's home is not writable: keep matplotlib quiet and fast
        return {"check": _check, "grade": _grade, "calibrate": _calibrate, "doctor": _doctor,
                "pack": _pack, "gradescope": _gradescope}[args.command](args)
    except GraderError as exc:
        print(f"grader: {exc.message}", file=sys.stderr)
        return exc.exit_code
    except KeyboardInterrupt:
        print("grader: interrupted.", file=sys.stderr)
        return 130


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
