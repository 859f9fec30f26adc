"""Command line: ``grader check`` (one notebook), ``grader grade`` (a class), ``grader calibrate``,
``grader doctor`` (what this machine enforces), ``grader pack`` (the students' wheel) and
``grader gradescope`` (an autograder zip).

``main(argv) -> int`` in the manner of pypa/build: every domain error is one
sentence on stderr and a documented exit code, never a traceback. What each
command's exit codes mean, and the files it writes, are said once, here
(:data:`EXIT_CODES`, :func:`output_files`), and shown at the end of its ``--help``:
  0  graded (and at or above --fail-under)
  1  graded, but under --fail-under
  2  cannot grade (the report, with status "error", is still printed)
  130  interrupted
"""
from __future__ import annotations

import argparse
import atexit
import os
import re
import sys
import textwrap
import threading
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, Any, NoReturn

from grader.arguments import bounded
from grader.errors import EXIT_CANNOT_GRADE, EXIT_GRADED, EXIT_UNDER_THRESHOLD, GraderError, SettingError
from grader.integrations.lms import LMS_NAMES
from grader.sandbox import environment
from grader.sandbox.limits import Limits, Setting, settings

if TYPE_CHECKING:
    from grader.model import Report
    from grader.rubric import Rubric
    from grader.sandbox.process import SubprocessSandbox


FORMATS = ("text", "json", "md", "html", "junit", "gradescope", "classroom")
#: What ``grader check`` prints when no ``--format`` is given, and on stdout when several are.
DEFAULT_FORMAT = "text"

#: Ctrl-C: every command stops; ``grader grade`` keeps every report finished so far.
EXIT_INTERRUPTED = 130
_INTERRUPTED = (EXIT_INTERRUPTED, "interrupted (Ctrl-C)")
#: What each exit code means, per command (``grader`` itself: the codes all commands share), in the order
#: ``--help`` lists them.
EXIT_CODES: dict[str, tuple[tuple[int, str], ...]] = {
    "grader": (
        (EXIT_GRADED, "done: graded, written, or everything enforced"),
        (EXIT_UNDER_THRESHOLD, "check: under --fail-under; calibrate: a rubric gap; doctor: something not "
                               "enforced"),
        (EXIT_CANNOT_GRADE, "cannot do it: one sentence on stderr says what is wrong and what to do (a usage "
                            "error too)"),
        _INTERRUPTED,
    ),
    "check": (
        (EXIT_GRADED, "graded, at or above --fail-under"),
        (EXIT_UNDER_THRESHOLD, "graded, but the score is under --fail-under percent of the maximum"),
        (EXIT_CANNOT_GRADE, "cannot grade: not a notebook, unreadable, a bad option, assignment, rubric or "
                            "setting, or a sandbox that cannot start; when the notebook was the problem, the "
                            "report (status \"error\") is still printed and written"),
        _INTERRUPTED,
    ),
    "grade": (
        (EXIT_GRADED, "the run finished: the gradebook is written, error rows included"),
        (EXIT_CANNOT_GRADE, "nothing graded: a bad option, assignment, rubric or setting, an --out that cannot "
                            "be written, or a machine that may not run student code"),
        (EXIT_INTERRUPTED, "interrupted: every report finished so far is kept; the same command grades the rest"),
    ),
    "calibrate": (
        (EXIT_GRADED, "the reference scores full marks and every mutant is penalised and named"),
        (EXIT_UNDER_THRESHOLD, "a rubric gap (the matrix says which)"),
        (EXIT_CANNOT_GRADE, "a bad option, assignment, rubric or setting"),
        _INTERRUPTED,
    ),
    "doctor": (
        (EXIT_GRADED, "everything is enforced"),
        (EXIT_UNDER_THRESHOLD, "grading works, but something is not enforced (the lines marked NO)"),
        (EXIT_CANNOT_GRADE, "student code cannot run here (the sentence says why), or a bad option"),
        _INTERRUPTED,
    ),
    "pack": (
        (EXIT_GRADED, "the wheel is written (its path on stdout)"),
        (EXIT_CANNOT_GRADE, "no pack: a bad option, assignment or rubric, --public-seed equal to --seed, no "
                            "check released, or an --out that cannot be written"),
        _INTERRUPTED,
    ),
    "gradescope": (
        (EXIT_GRADED, "the zip is written"),
        (EXIT_CANNOT_GRADE, "no zip: a bad option, assignment or rubric, a grader that cannot be packed, or an "
                            "--out that cannot be written"),
        _INTERRUPTED,
    ),
}
#: What ``--release`` may add to the checks students see (``visible`` always are; ``hidden`` never, for them).
RELEASABLE = ("after_due_date", "after_published")
#: The commands, in the order ``grader --help`` lists them.
COMMANDS = ("check", "grade", "calibrate", "pack", "doctor", "gradescope")


_jobs = bounded(int, 1, 256, "a whole number of processes from 1 to 256")
_percentage = bounded(float, 0, 100, "a number from 0 to 100")
_SEED = bounded(int, 0, 2**63 - 1, "a whole number >= 0")

#: ``--format`` naming a format that does not exist (argparse puts "argument --format: " before it).
UNKNOWN_FORMAT = "unknown format {value!r} in {given!r}; use one or more of {choices}, separated by commas"


def _format_list(text: str) -> tuple[str, ...]:
    """An argparse type: ``json,html`` as ``("json", "html")``, each one of :data:`FORMATS`."""
    names = tuple(part.strip() for part in text.split(","))
    for name in names:
        if name not in FORMATS:
            raise argparse.ArgumentTypeError(UNKNOWN_FORMAT.format(value=name, given=text, choices=", ".join(FORMATS)))
    return names


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
    parser.add_argument("--seed", type=_SEED, default=0, metavar="N", help="seed for the random probes (default: %(default)s)")
    parser.add_argument("--backend", choices=("subprocess", "kernel"), default="subprocess",
                        help="run the notebook in a confined Python (subprocess) or, as Jupyter's 'Restart & Run "
                             "All' does, in an ipykernel driven by nbclient (kernel) (default: %(default)s)")
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


#: Where ``grader check --out DIR`` writes a report, shown in its --help (``<stem>`` of ``hw.ipynb`` is ``hw``).
REPORT_STEM = "<notebook stem>"
#: A submission's stable id in ``grader grade``'s file names, as its --help shows it.
SUBMISSION_ID = "<id>"


def output_files(command: str) -> tuple[str, tuple[tuple[str, str], ...]] | None:
    """What ``command`` writes, for the end of its --help: a heading and (file, what) rows, each file named
    by the constants the code that writes it uses; None for a command that writes no file.

    Worked out only when help is shown (``grader grade``'s names live in the batch module, slow to import)."""
    from grader.render import file_name

    if command == "check":
        def what(fmt: str) -> str:
            sharing = [other for other in FORMATS if file_name(REPORT_STEM, other) == file_name(REPORT_STEM, fmt)]
            return f"--format {fmt}" + (f" (one of {', '.join(sharing)} per run)" if len(sharing) > 1 else "")

        rows = tuple((f"DIR/{file_name(REPORT_STEM, fmt)}", what(fmt)) for fmt in FORMATS)
        return (f"files written with --out DIR, one per --format ({REPORT_STEM} of hw.ipynb is hw; stdout still "
                "gets the report):", rows)
    if command == "grade":
        from pathlib import Path

        from grader.batch.run import CLASS_FILES, CLASS_STAMP_FILE, Output
        from grader.integrations.lms import IMPORT_FILES

        sid = SUBMISSION_ID
        class_files = {"gradebook.csv": "one row per submission, one column per check",
                       "summary.json": "the class: scores, pass rates, named mistakes, files not graded",
                       "summary.html": "the same for people, linking every feedback page",
                       file_name("junit", "junit"): "JUnit: one test case per check per submission"}
        rows = (
            (Output(Path()).report(sid).as_posix(), "each submission's grader.report/1 report (written last)"),
            (f"feedback/{file_name(sid, 'md')}", "its feedback for the student, Markdown"),
            (f"feedback/{file_name(sid, 'html')}", "the same as a self-contained page"),
            (f"results/{sid}/{file_name('results', 'gradescope')}", "Gradescope's results.json"),
            *((name, class_files.get(name, "a class file")) for name in CLASS_FILES),
            (CLASS_STAMP_FILE, "what the class files were made from (a re-run compares it)"),
            *((IMPORT_FILES[lms], f"with --lms {lms}: its grade import file") for lms in LMS_NAMES),
        )
        return "files written into DIR (--out):", rows
    if command == "pack":
        from grader.pack.wheel import TAG, wheel_prefix

        wheel = f"DIR/{wheel_prefix()}-<version>-{TAG}.whl"
        return "file written (its path is printed on stdout):", (
            (wheel, "the student pack; an older pack in DIR is replaced"),)
    if command == "gradescope":
        from grader.integrations.gradescope_autograder import (
            BUNDLE,
            CONFIG_NAME,
            CONSTRAINTS,
            FALLBACK,
            RUN,
            SETUP,
            WHEELS,
        )

        return "file written: ZIP (--out), to upload on Configure Autograder, holding:", (
            (SETUP, "run once while Gradescope builds the image"),
            (RUN, "run for each submission; writes results.json"),
            (CONFIG_NAME, "the rubric, assignment, seed and time limit"),
            (f"{WHEELS}/<grader wheel>", "this grader, packed"),
            (CONSTRAINTS, "its dependencies, pinned"),
            (f"{BUNDLE}/...", "a rubric or assignment given by path"),
            (f"{FALLBACK}/...", "the pages shown when the grader writes none"),
        )
    return None


def _section(heading: str, rows: Sequence[tuple[str, str]]) -> str:
    """A heading and two aligned columns, wrapped to the terminal as argparse wraps the options (a long first
    column puts the second on the lines below it)."""
    import shutil

    total = max(60, shutil.get_terminal_size().columns - 2)
    width = max(len(left) for left, _ in rows)
    lines = textwrap.wrap(heading, width=total, subsequent_indent="  ")
    for left, right in rows:
        if width > 32:
            lines.append(f"  {left}")
            lines.extend(textwrap.wrap(right, width=total, initial_indent=" " * 6, subsequent_indent=" " * 6))
            continue
        wrapped = textwrap.wrap(right, width=max(30, total - width - 4)) or [""]
        lines.append(f"  {left.ljust(width)}  {wrapped[0]}")
        lines.extend(f"  {'':{width}}  {more}" for more in wrapped[1:])
    return "\n".join(lines)


def epilog(command: str) -> str:
    """The end of ``command``'s --help: the files it writes, then its exit codes (``grader``: every command's)."""
    sections = []
    files = output_files(command)
    if files is not None:
        sections.append(_section(*files))
    sections.append(_section("exit codes:", [(str(code), meaning) for code, meaning in EXIT_CODES[command]]))
    if command == "grader":
        sections.append("grader COMMAND --help says what each command writes and what its exit codes mean.")
    return "\n\n".join(sections)


class _Parser(argparse.ArgumentParser):
    """An ArgumentParser whose help keeps its epilog's layout (file and exit-code tables) and works it out only
    when the help is shown. ``add_subparsers`` makes the commands of this class too."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        kwargs.setdefault("formatter_class", argparse.RawDescriptionHelpFormatter)
        super().__init__(*args, **kwargs)
        self.epilog_of: str | None = None

    def format_help(self) -> str:
        if self.epilog_of is not None:
            self.epilog = epilog(self.epilog_of)
        return super().format_help()


def build_parser() -> argparse.ArgumentParser:
    top = _Parser(prog="grader", description="Grade students' numpy notebooks against an assignment's "
                                             "reference (default: simple_nn).")
    top.epilog_of = "grader"
    parser: argparse.ArgumentParser = top  # its commands are _Parsers too (argparse makes them of its class)
    parser.add_argument("--version", action=_Version, nargs=0, help="show the version (and the pack's assignment) and exit")
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    def command(name: str, summary: str) -> argparse.ArgumentParser:
        """A command, its one-line summary also the top of its own --help."""
        return commands.add_parser(name, help=summary, description=summary[:1].upper() + summary[1:] + ".")

    check = command("check", "grade one notebook and print its report")
    check.add_argument("notebook", metavar="NOTEBOOK", help="path to the .ipynb file")
    check.add_argument("--format", type=_format_list, action="append", metavar="FMT[,FMT...]",
                       help=f"report format: {', '.join(FORMATS)}; several, comma-separated or the option "
                            "repeated, need --out DIR and are graded once (default: text)")
    check.add_argument("--out", default=None, metavar="DIR",
                       help="also write the report into DIR, one file per --format, named after the notebook "
                            "(default: none, stdout only)")
    check.add_argument("--fail-under", type=_percentage, metavar="N",
                       help="exit 1 when the score is under N percent of the maximum (default: none, the score "
                            "does not change the exit code)")
    check.add_argument("--no-color", action="store_true",
                       help="never colour the text report (default: coloured on a terminal unless NO_COLOR is set)")
    _add_grading_options(check)

    grade = command("grade", "grade a whole class into an output folder (resumable)")
    grade.add_argument("paths", nargs="+", metavar="PATH", help="notebooks, folders or LMS zip exports")
    grade.add_argument("--out", required=True, metavar="DIR", help="output folder (required; re-runs reuse what "
                                                                   "is there)")
    grade.add_argument("--jobs", type=_jobs, default=None, metavar="N",
                       help=f"grading processes (default: the number of CPUs, here {os.cpu_count() or 1}; "
                            "not with --scheduler, whose workers decide)")
    grade.add_argument("--scheduler", default=None, metavar="ADDRESS",
                       help="grade on the workers of the Dask scheduler at ADDRESS (tcp://host:8786 or tls://host:8786; "
                            "needs the [dask] extra; see docs/cluster.md) instead of --jobs local processes "
                            "(default: none, grade on this machine)")
    grade.add_argument("--force", action="store_true",
                       help="regrade even submissions whose stored report is current (default: reuse them)")
    grade.add_argument("--lms", action="append", choices=LMS_NAMES,
                       help="also write that LMS's grade import file into DIR; repeatable (default: none)")
    grade.add_argument("--lms-assignment", default=None, metavar='"NAME (ID)"',
                       help="the LMS assignment the --lms files grade: its title and, in parentheses, its id "
                            "(Canvas's assignment id, Blackboard's column id), as the LMS's gradebook export "
                            "names the column, or the title alone (default: the name the export gives, else "
                            "the rubric's title; no id)")
    grade.add_argument("--release", action="append", default=[], metavar="VISIBILITY", choices=RELEASABLE,
                       help="also show checks of this visibility on the students' feedback pages (after_due_date "
                            "once the due date has passed, after_published once grades are published); "
                            "repeatable; the gradebook and reports always hold every check (default: visible only)")
    _add_grading_options(grade)

    calibrate = command("calibrate", "grade the reference and every mutant; exit 1 on a rubric gap")
    calibrate.add_argument("--format", choices=("text", "json"), default="text",
                           help="the mutant x check matrix, or its rows as JSON (default: %(default)s)")
    _add_grading_options(calibrate)

    pack = command("pack", "write the student pack: a wheel students install to self-check, with no reference "
                           "or bug catalogue in it")
    pack.add_argument("--out", required=True, metavar="DIR", help="folder the wheel is written to (required)")
    pack.add_argument("--assignment", default=None, metavar="NAME|PATH",
                      help="bundled assignment name or path to an assignment's folder (default: the one the "
                           "rubric names, else simple_nn)")
    pack.add_argument("--rubric", default=None, metavar="NAME|PATH",
                      help="bundled rubric name or path to a rubric .toml (default: the assignment's own)")
    pack.add_argument("--public-seed", type=_SEED, default=1, metavar="N",
                      help="seed of the public probes the pack holds answers for (default: %(default)s)")
    pack.add_argument("--seed", type=_SEED, default=0, metavar="N",
                      help="the seed you grade with, which the public seed must differ from (default: %(default)s)")
    pack.add_argument("--release", action="append", default=[], metavar="VISIBILITY", choices=RELEASABLE,
                      help="also release checks of this visibility (after_due_date, after_published); "
                           "repeatable; visible checks are always in, hidden ones never (default: visible only)")

    doctor = command("doctor", "say what this machine enforces for student code "
                               "(exit 0 all of it, 1 not all, 2 cannot grade here)")
    doctor.add_argument("--format", choices=("text", "json"), default="text",
                        help="lines for people, or grader.doctor/1 JSON (default: %(default)s)")
    doctor.add_argument("--no-sandbox", action="store_true",
                        help="only look at this process and the kernel; do not start a sandbox to look inside it "
                             "(default: start one)")

    from grader.integrations import gradescope_autograder
    gradescope_autograder.add_parser(commands)
    for name, sub in commands.choices.items():
        if isinstance(sub, _Parser):
            sub.epilog_of = name
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
JOBS_WITH_SCHEDULER = ("--jobs and --scheduler were both given: on a cluster its workers decide how many "
                       "submissions run at once (dask worker --nworkers N); drop --jobs.")
OUT_IS_A_FILE = "--out {path} is a file, not a folder: give a folder (it is created when missing)."
OUT_NOT_WRITABLE = "--out {path} cannot be written ({reason}); choose a folder you can write to."
#: ``grader check`` asked for several formats with nowhere to put them.
SEVERAL_FORMATS_NEED_OUT = ("--format {formats} asks for {count} reports, which are written to files: add --out DIR "
                            "(stdout still gets the text report), or give one format.")
#: Two formats whose files would have the same name (``json``, ``gradescope`` and ``classroom`` are all .json).
FORMATS_SHARE_A_FILE = ("--format {first} and {second} would both write {name}: ask for them in separate runs, "
                        "each with its own --out folder.")
#: What ``grader check --out`` wrote, on stderr after the report.
WROTE_REPORTS = "grader: wrote {files}"
#: ``--lms-assignment`` that is not "Name (id)" or a bare name.
LMS_ASSIGNMENT_BAD = ('--lms-assignment {value!r} is not "Name (id)" ({reason}): give the LMS assignment\'s title '
                      'and, in parentheses, its id in digits, as the LMS\'s gradebook export names the column '
                      '("Lab 4 (12345)"), or the title alone.')
LMS_ASSIGNMENT_WITHOUT_LMS = ("--lms-assignment names the assignment of the --lms import files, and no --lms was "
                              "given: add --lms {choices}, or leave --lms-assignment out.")
_ID_IN_PARENTHESES = re.compile(r"(?P<name>.*?)\s*\((?P<id>[^()]*)\)")


def parse_lms_assignment(value: str) -> tuple[str, str]:
    """``"Lab 4 (12345)"`` as ``("Lab 4", "12345")``, ``"Lab 4"`` as ``("Lab 4", "")``: the name and id of
    ``BatchOptions.lms_assignment``/``lms_assignment_id``. The id is the last parenthesised group, in digits
    (Canvas's ``Title (id)``, Blackboard's column id); GraderError naming what is wrong otherwise."""
    def bad(reason: str) -> GraderError:
        return GraderError(LMS_ASSIGNMENT_BAD.format(value=value, reason=reason))

    text = value.strip()
    if not text:
        raise bad("it is empty")
    if any(ord(c) < 32 or ord(c) == 127 for c in text):
        raise bad("it holds a line break or another control character")
    if text.count("(") != text.count(")"):
        raise bad("its parentheses do not pair up")
    match = _ID_IN_PARENTHESES.fullmatch(text)
    if match is None:
        return text, ""
    name, lms_id = match["name"].strip(), match["id"].strip()
    if not name:
        raise bad("there is no title before the id")
    if not re.fullmatch(r"[0-9]+", lms_id):
        raise bad(f"the id in parentheses, {lms_id!r}, is not a number")
    return name, lms_id


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


def _chosen_formats(given: list[tuple[str, ...]] | None) -> tuple[str, ...]:
    """Every ``--format`` (comma lists and repeats), each once, in the order given; the default when none."""
    chosen = tuple(dict.fromkeys(fmt for group in given or () for fmt in group))
    return chosen or (DEFAULT_FORMAT,)


def _report_files(notebook: str, formats: Sequence[str]) -> dict[str, str]:
    """The file name of each format's report (``hw.ipynb`` in ``json``: ``hw.json``); GraderError when two
    formats would write the same file."""
    from pathlib import Path

    from grader.render import file_name

    stem = Path(notebook).stem
    names: dict[str, str] = {}
    for fmt in formats:
        name = file_name(stem, fmt)
        for other, taken in names.items():
            if taken == name:
                raise GraderError(FORMATS_SHARE_A_FILE.format(first=other, second=fmt, name=name))
        names[fmt] = name
    return names


def _line_ended(text: str) -> str:
    return text if text.endswith("\n") else text + "\n"


def _write_report_files(report: Report, out: str, files: dict[str, str]) -> list[str]:
    """Write ``report`` in each format of ``files`` (format: file name) into ``out``, each atomically; the paths
    written. The text report in a file is never coloured."""
    from pathlib import Path

    from grader.files import write_atomic
    from grader.render import RENDERERS

    written = []
    for fmt, name in files.items():
        target = Path(out) / name
        try:
            write_atomic(target, _line_ended(RENDERERS[fmt](report)))
        except OSError as exc:
            raise GraderError(OUT_NOT_WRITABLE.format(path=out, reason=exc.strerror or type(exc).__name__)) from exc
        written.append(str(target))
    return written


def _check(args: argparse.Namespace) -> int:
    from grader.sandbox.confine import prepare

    formats = _chosen_formats(args.format)
    if len(formats) > 1 and args.out is None:
        raise GraderError(SEVERAL_FORMATS_NEED_OUT.format(formats=",".join(formats), count=len(formats)))
    _one_notebook(args.notebook)
    files = _report_files(args.notebook, formats) if args.out is not None else {}
    if args.out is not None:
        _writable_out(args.out)
    prepare()  # how sandboxes are confined here is decided while the grader, the rubric and the notebook load
    early = _early_sandbox(args)
    try:
        from grader.grade import Options, grade_notebook
        from grader.render import render
        from grader.render import text as text_renderer  # imported while the sandbox starts, not after grading
        from grader.rubric import load_rubric

        rubric = load_rubric(args.rubric, args.assignment)
        limits = _limits(args, rubric)
    except BaseException:
        if early is not None:
            early.close()
        raise
    if early is not None and early.limits != limits:  # the rubric sets limits of its own: start as usual
        early.close()
        early = None
    report = grade_notebook(args.notebook, rubric,
                            Options(seed=args.seed, limits=limits, backend=args.backend, prestarted=early))
    written = _write_report_files(report, args.out, files) if files else []
    shown = formats[0] if len(formats) == 1 else DEFAULT_FORMAT
    if shown == "text":
        output = text_renderer.render(report, colour=_colour(args))
    else:
        output = render(report, shown)
    _write_report(_line_ended(output))
    sys.stdout.flush()
    if written:
        print(WROTE_REPORTS.format(files=", ".join(written)), file=sys.stderr)
    for notice in environment.notices():  # the operator's, on stderr; the report is the student's
        print(environment.stderr_line(notice), file=sys.stderr)
    if report.status != "graded":
        return EXIT_CANNOT_GRADE
    if (args.fail_under is not None and report.max_score > 0
            and 100.0 * report.score / report.max_score < args.fail_under):
        return EXIT_UNDER_THRESHOLD
    return EXIT_GRADED


def _early_sandbox(args: argparse.Namespace) -> SubprocessSandbox | None:
    """A one-off sandbox started before the grader's own modules and the rubric load, with the default
    limits and those given as flags: a fresh Python that imports numpy and matplotlib takes longer to start
    than anything else ``grader check`` does, and started here it overlaps all of that. It is used when the
    rubric's limits turn out to be those (the bundled rubrics'), and closed otherwise. None for the kernel
    backend, and when it cannot start: the usual path then starts its sandbox, and reports any trouble."""
    if args.backend != "subprocess":
        return None
    try:
        limits = Limits().merged(_limit_overrides(args), COMMAND_LINE)
        from grader.sandbox.process import SubprocessSandbox

        return SubprocessSandbox(limits)
    except Exception:  # noqa: BLE001 - only a head start: the usual path meets the same trouble and says so
        return None


def _alternatives(names: Sequence[str]) -> str:
    """``canvas (or moodle, blackboard, gradescope)``."""
    return f"{names[0]} (or {', '.join(names[1:])})" if len(names) > 1 else names[0]


def _grade(args: argparse.Namespace) -> int:
    from pathlib import Path

    from grader.batch.run import BatchOptions, run_batch
    from grader.render.visibility import released_set

    lms_name, lms_id = "", ""
    if args.lms_assignment is not None:
        lms_name, lms_id = parse_lms_assignment(args.lms_assignment)
        if not args.lms:
            raise GraderError(LMS_ASSIGNMENT_WITHOUT_LMS.format(choices=_alternatives(LMS_NAMES)))
    _writable_out(args.out)
    if args.jobs is not None and args.scheduler is not None:
        raise GraderError(JOBS_WITH_SCHEDULER)
    options = BatchOptions(out=Path(args.out), jobs=args.jobs or os.cpu_count() or 1, force=args.force, seed=args.seed, rubric=args.rubric,
                           limit_overrides=tuple(_limit_overrides(args).items()), backend=args.backend,
                           assignment=args.assignment, lms=tuple(dict.fromkeys(args.lms or ())),
                           lms_assignment=lms_name, lms_assignment_id=lms_id, release=released_set(args.release),
                           scheduler=args.scheduler)
    interrupted = (f"grader: interrupted; every report finished so far is in {args.out}. "
                   "Run the same command again to grade the rest.")
    try:
        result = run_batch(args.paths, options)
    except KeyboardInterrupt:
        print(interrupted, file=sys.stderr)
        return EXIT_INTERRUPTED
    _list_not_graded(result.not_graded)
    if result.interrupted:
        print(interrupted, file=sys.stderr)
        return EXIT_INTERRUPTED
    rate = (result.graded / result.seconds) if result.seconds > 0 else 0.0
    print(f"grader: {len(result.rows)} submissions in {args.out}: {result.graded} graded now "
          f"({rate:.1f}/s), {result.reused} unchanged and reused, {result.errors} with status error; "
          f"gradebook: {Path(args.out) / 'gradebook.csv'}", file=sys.stderr)
    return EXIT_GRADED


#: One line on stdout per file found but not graded (the run's result, beside summary.json's ``not_graded``).
NOT_GRADED_ITEM = "not graded: {path}: {reason}"


def _list_not_graded(items: Sequence[Any]) -> None:
    """Every file ``grader grade`` found and did not grade, with its reason, on stdout (stderr says how many)."""
    from grader.untrusted_text import safe_text

    for item in items:
        _write_report(NOT_GRADED_ITEM.format(path=safe_text(item.path), reason=safe_text(item.reason)) + "\n")
    sys.stdout.flush()


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
        return EXIT_INTERRUPTED


def run() -> NoReturn:
    """The ``grader`` command: ``main``, then exit with its code.

    When nothing of the grader is left running (no thread but this one that Python would wait for), the
    process ends with ``os._exit`` after the streams are flushed and the ``atexit`` handlers (temporary
    directories) have run: the interpreter's own teardown, freeing every module one by one, adds 40 to 70 ms
    to a ``grader check`` that a student waits for and nothing else needs (measured with
    ``benchmarks/bench_check.py``)."""
    code = main()
    others = [thread for thread in threading.enumerate() if thread is not threading.main_thread() and not thread.daemon]
    if others:
        sys.exit(code)
    try:
        sys.stdout.flush()
        sys.stderr.flush()
    except (OSError, ValueError):  # a closed pipe: nothing more can be said on it, as at a normal exit
        pass
    atexit._run_exitfuncs()
    os._exit(code)


if __name__ == "__main__":  # pragma: no cover
    run()
