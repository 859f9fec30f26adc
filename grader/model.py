"""The result data model: plain dataclasses, no presentation.

Every renderer (JSON, terminal, Markdown, ...) reads these and nothing else, so
a new output format never needs to touch grading code, and the grading code
never decides how something looks.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Literal

SCHEMA = "grader.report/1"

Status = Literal["graded", "error"]

#: Who may see a check's result, in Gradescope's words (its ``visibility`` of a test): always, never (the
#: instructor only), once the due date has passed, or once the instructor publishes the grades.
Visibility = Literal["visible", "hidden", "after_due_date", "after_published"]
VISIBILITIES: tuple[Visibility, ...] = ("visible", "hidden", "after_due_date", "after_published")
#: A check the rubric says nothing about is shown: hiding is the instructor's decision, never a default.
DEFAULT_VISIBILITY: Visibility = "visible"


@dataclass
class FunctionInfo:
    """What the grader found for one of the graded names in the notebook."""

    name: str
    found: bool
    #: "function", "lambda", "builtin" or "other callable"; None when not found.
    kind: str | None = None
    #: The family the assignment's helper was recognised as ("relu", "sigmoid", ...), for the helper only.
    recognised_as: str | None = None
    #: The parameters the notebook's definition takes, as the sandbox reported them (untrusted: words
    #: for a message only); None when unknown.
    parameters: tuple[str, ...] | None = None
    #: Whether it also takes any number of positional arguments (``*args``).
    variadic: bool = False


@dataclass
class CheckResult:
    """The verdict of one check, computed on the trusted side.

    ``fraction`` is the share of probes that passed, which the rubric may turn
    into partial credit; ``score``/``max_score`` are filled in by scoring.
    """

    id: str
    function: str
    passed: bool
    message: str
    fraction: float = 0.0
    score: float = 0.0
    max_score: float = 0.0
    #: JSON-safe evidence, e.g. one failing probe: {"inputs": ..., "expected": ..., "got": ...}.
    details: dict[str, Any] = field(default_factory=dict)
    #: Who may see this result (the rubric's ``visibility``, filled in by scoring). A hidden check still
    #: scores: what a student may see is decided when a report is shown (``grader.render.visibility``).
    visibility: Visibility = DEFAULT_VISIBILITY


@dataclass
class Diagnosis:
    """A recognised bug (an id of the catalog) or an integrity concern."""

    id: str
    function: str
    message: str
    #: The parameters it affects, when diagnosis could tell (``("w1",)``: the w1 update only).
    parameters: tuple[str, ...] = ()


@dataclass
class CellRun:
    """How one code cell of the notebook ran in the sandbox."""

    index: int
    status: Literal["ok", "error", "timeout", "crashed", "skipped"]
    error: str | None = None


@dataclass
class Training:
    """The end-to-end run from the notebook's initialisation, driven from the trusted side.

    ``final_prediction`` and ``target`` are numbers, or lists (nested like the array) for an
    assignment whose prediction is an array.
    """

    iterations: int
    final_prediction: float | list[Any] | None
    target: float | list[Any]
    loss: list[float] = field(default_factory=list)
    reference_loss: list[float] = field(default_factory=list)

    @property
    def ran(self) -> int:
        """Iterations actually run (one loss per forward pass): fewer than ``iterations`` when training stopped."""
        return len(self.loss)

    def what_ran(self) -> str:
        """"200 iterations", or "16 of 200 iterations (then it stopped)": what every renderer says."""
        if self.ran >= self.iterations:
            return f"{self.iterations} iterations"
        return f"{self.ran} of {self.iterations} iterations (then it stopped)"


@dataclass
class GradedWith:
    """The helper pair the functions that use it were judged with, and the words renderers need for it."""

    #: The family: "relu", or "sigmoid" for a student's consistent experiment.
    family: str
    #: The helper function's name ("activation").
    helper: str
    #: The functions judged with it ("forward", "backward").
    dependents: tuple[str, ...]


@dataclass
class Report:
    """Everything grading found about one submission; the functions in the assignment's order."""

    submission: str
    rubric: str
    status: Status
    score: float = 0.0
    max_score: float = 0.0
    error: str | None = None
    functions: dict[str, FunctionInfo] = field(default_factory=dict)
    checks: list[CheckResult] = field(default_factory=list)
    diagnoses: list[Diagnosis] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)
    cells: list[CellRun] = field(default_factory=list)
    training: Training | None = None
    #: The helper pair the functions using it were graded with (None for an assignment without helpers).
    graded_with: GradedWith | None = None
    seed: int = 0
    backend: str = "subprocess"
    duration_s: float = 0.0
    #: Bounded excerpt of what the notebook printed (never parsed for verdicts).
    output_excerpt: str = ""
    #: The assignment graded against (its name).
    assignment: str = ""
