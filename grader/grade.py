"""The whole pipeline for one submission: load → execute → probe/check → diagnose → score.

Fails closed: anything that stops grading becomes a report with status
"error" and score 0, never a pass, and the sandbox is always torn down.
"""
from __future__ import annotations

import ast
import os
import re
import time
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from grader.assignment import Assignment
from grader.errors import GraderError, SandboxRefused
from grader.model import FunctionInfo, GradedWith, Report
from grader.rubric import Rubric
from grader.sandbox.limits import Limits
from grader.sandbox.process import Execution, ProcessSandbox, SubprocessSandbox

if TYPE_CHECKING:
    from grader.load import Notebook
    from grader.sandbox.forkserver import ForkServer


@dataclass(frozen=True)
class Options:
    seed: int = 0
    limits: Limits | None = None
    #: A running fork server (batch grading): the sandbox is forked from it instead of started afresh.
    server: ForkServer | None = None
    #: "subprocess" (default: a confined Python with an IPython shell) or "kernel" (nbclient + ipykernel).
    backend: str = "subprocess"
    #: Kernel backend only: a sandbox started ahead of time (batch grading), used instead of a new one.
    prestarted: SubprocessSandbox | None = None


BACKENDS = ("subprocess", "kernel")


def start_sandbox(limits: Limits, options: Options, graded: tuple[str, ...]) -> ProcessSandbox:
    """The sandbox for one submission, started now so it warms up while the notebook loads."""
    if options.prestarted is not None:
        options.prestarted.graded = graded
        return options.prestarted
    if options.backend == "kernel":
        from grader.sandbox.kernel import KernelSandbox
        return KernelSandbox(limits, graded)
    return SubprocessSandbox(limits, options.server, graded)


def _cell_warnings(execution: Execution) -> list[str]:
    warnings = []
    for run in execution.cells:
        where = f"Cell {run.index + 1}"
        if run.status == "error":
            warnings.append(f"{where} raised {run.error}; the cells after it still ran.")
        elif run.status == "timeout":
            warnings.append(f"{where} ran past its time limit and was stopped; the cells after it still ran.")
        elif run.status == "crashed":
            warnings.append(f"{where} crashed the Python process ({run.error}); it was skipped and the rest re-run.")
        elif run.status == "skipped":
            warnings.append(f"{where} was not run: {run.error}.")
    return warnings


#: ``.py`` files taken from beside a notebook: how many, how large each, and all together.
MAX_COMPANIONS, MAX_COMPANION_BYTES, MAX_COMPANIONS_BYTES = 32, 1 << 20, 4 << 20
_MODULE_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]*\.py")


def companion_files(path: str | os.PathLike[str]) -> dict[str, bytes]:
    """The ``.py`` files beside a notebook on disk, which its cells may import as in Jupyter (the working
    directory is on ``sys.path``); none when the folder holds other notebooks too (a class folder: those
    files may be anyone's) or the notebook is not a file (an archive member)."""
    notebook = Path(path)
    try:
        if not notebook.is_file():
            return {}
        folder = notebook.parent
        if any(other.suffix == ".ipynb" and other.name != notebook.name for other in folder.iterdir()):
            return {}
        files: dict[str, bytes] = {}
        total = 0
        for candidate in sorted(folder.glob("*.py"))[:MAX_COMPANIONS]:
            if not _MODULE_NAME.fullmatch(candidate.name) or not candidate.is_file() or candidate.is_symlink():
                continue
            size = candidate.stat().st_size
            if size > MAX_COMPANION_BYTES or total + size > MAX_COMPANIONS_BYTES:
                continue
            files[candidate.name] = candidate.read_bytes()
            total += size
        return files
    except OSError:
        return {}


def is_self_check(source: str) -> bool:
    """Whether a cell is only the student's self-check (``import grader; grader.check()``, perhaps with a
    ``%pip install`` line): skipped when the instructor grades, so an honest student is neither flagged
    for importing the grader nor warned that the cell failed (the grader is not installed in the sandbox)."""
    if "grader" not in source:  # every self-check line names it: most cells are settled without parsing
        return False
    lines = [line for line in source.splitlines() if not line.lstrip().startswith(("%", "!"))]
    try:
        tree = ast.parse("\n".join(lines))
    except (SyntaxError, ValueError):
        return False
    names = {"grader"}  # imported in an earlier self-check cell, perhaps
    for node in tree.body:
        if isinstance(node, ast.Import) and all(alias.name == "grader" for alias in node.names):
            names.update(alias.asname or "grader" for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module == "grader" and all(
                alias.name == "check" for alias in node.names):
            names.update(alias.asname or "check" for alias in node.names)
        elif not (isinstance(node, ast.Expr) and isinstance(node.value, ast.Call)
                  and _calls_check(node.value.func, names)):
            return False
    return bool(tree.body)


def _calls_check(func: ast.expr, names: set[str]) -> bool:
    """``grader.check`` (or an alias of the module), or ``check`` imported from it."""
    if isinstance(func, ast.Attribute) and func.attr == "check" and isinstance(func.value, ast.Name):
        return func.value.id in names
    return isinstance(func, ast.Name) and func.id in names - {"grader"}


def error_report(submission: str, rubric: Rubric, message: str, started: float, warnings: list[str] | None = None) -> Report:
    return Report(submission=submission, rubric=rubric.name, status="error", error=message,
                  score=0.0, max_score=rubric.max_score, warnings=list(warnings or []),
                  functions={n: FunctionInfo(n, False) for n in rubric.assignment.names},
                  duration_s=round(time.perf_counter() - started, 3), assignment=rubric.assignment.name)


def grade_notebook(path: str | os.PathLike[str], rubric: Rubric, options: Options = Options(),
                   data: bytes | None = None, files: dict[str, bytes] | None = None) -> Report:
    """Grade one notebook file (or its ``data``, e.g. a zip member, named ``path``).

    Never raises for a bad submission: the report says what went wrong.
    """
    from grader.load import load_notebook, load_notebook_bytes

    started = time.perf_counter()
    submission = os.fspath(path)
    limits = options.limits or rubric.limits
    try:
        sandbox = start_sandbox(limits, options, rubric.assignment.names)
    except SandboxRefused:
        raise  # the operator's to fix: no student gets it as a report
    except GraderError as exc:
        return error_report(submission, rubric, exc.message, started)
    try:
        sandbox.files = companion_files(path) if files is None else dict(files)
        notebook = load_notebook(path) if data is None else load_notebook_bytes(data, submission)
        return _grade_loaded(notebook, sandbox, rubric, options, started)
    except GraderError as exc:
        return error_report(submission, rubric, exc.message, started)
    finally:
        sandbox.close()


def grade_attached(sandbox: ProcessSandbox, name: str, rubric: Rubric, options: Options) -> Report:
    """Grade the functions an already running worker has (``grader.check()`` in a student's kernel)."""
    from grader.load import Notebook

    started = time.perf_counter()
    try:
        return _grade_loaded(Notebook(name, [], "4", []), sandbox, rubric, options, started, executed=True)
    except GraderError as exc:
        return error_report(name, rubric, exc.message, started)


def _grade_loaded(notebook: Notebook, sandbox: ProcessSandbox, rubric: Rubric, options: Options, started: float,
                  executed: bool = False) -> Report:
    from grader.checks import run_checks
    from grader.diagnose import diagnose, mutations, unexplained, wrong_signatures
    from grader.integrity import review
    from grader.score import apply_rubric

    assignment = rubric.assignment
    sandbox.graded = assignment.names
    cells = [cell for cell in notebook.code_cells if not is_self_check(cell.source)]
    execution = sandbox.run_notebook(cells)
    warnings = list(notebook.warnings) + _cell_warnings(execution) + execution.warnings
    if not notebook.code_cells and not executed:
        warnings.append("The notebook has no code cells, so there is nothing to grade.")
    found = {name: info.found for name, info in execution.functions.items()}
    run = run_checks(sandbox, found, assignment, rubric.accepted_families, options.seed, execution.functions)
    diagnoses = (wrong_signatures(assignment, execution.functions, run) + diagnose(assignment, run, found)
                 + mutations(assignment, run)
                 + review(cells, sandbox.seen, sandbox.tampering))
    for diagnosis in diagnoses:
        if diagnosis.id == "wrong_signature":  # its checks say why they could not run, not "probes differ"
            for result in run.results:
                if result.function == diagnosis.function and not result.passed:
                    result.message = f"could not call {diagnosis.function}: its parameters are not the template's (wrong_signature)"
    for diagnosis in diagnoses:
        if diagnosis.id == "mutates_input":  # its values are right, but its users pay for its writes: it pays
            values_check = assignment.values_check(diagnosis.function)
            for result in run.results:
                if result.id == values_check and result.passed:
                    result.passed, result.fraction = False, 0.5
                    result.message += "; but it writes into its input, which changes the results of its callers"
    for function in unexplained(assignment, run, diagnoses):
        for result in run.results:
            if result.function == function and result.id == assignment.values_check(function):
                result.message += "; no known bug matches"
    score, max_score = apply_rubric(run.results, rubric)
    functions = {name: execution.functions.get(name) or FunctionInfo(name, False) for name in assignment.names}
    helpers = assignment.helpers
    graded_with = None
    if helpers is not None:
        if run.recognised and helpers.function in functions:
            functions[helpers.function].recognised_as = run.recognised
        if run.graded_with is not None:
            graded_with = GradedWith(run.graded_with, helpers.function, helpers.dependents)
    return Report(
        submission=notebook.path, rubric=rubric.name, status="graded", score=score, max_score=max_score,
        functions=functions, checks=run.results, diagnoses=diagnoses, warnings=warnings + run.warnings,
        cells=execution.cells, training=run.training, graded_with=graded_with,
        seed=_probes_seed(assignment, options.seed), backend=sandbox.name, duration_s=round(time.perf_counter() - started, 3),
        output_excerpt=sandbox.output_excerpt(), assignment=assignment.name,
    )


def _probes_seed(assignment: Assignment, seed: int) -> int:
    """The seed the probes were drawn with: a student pack's public seed (its probes whatever was asked)."""
    from grader.pack.installed import public_seed

    drawn = public_seed(assignment)
    return seed if drawn is None else drawn
