"""One exception family for everything that stops a submission from being graded.

Each error carries one sentence saying what is wrong and what to do, and the
exit code the CLI maps it to. Messages are templates kept here, next to the
constructors that fill them, so wording stays consistent across the tool.
"""
from __future__ import annotations

from typing import Any

EXIT_GRADED = 0
EXIT_UNDER_THRESHOLD = 1
EXIT_CANNOT_GRADE = 2

NOT_A_NOTEBOOK = "{path} is not a Jupyter notebook: {reason}; export it again from Jupyter (File > Save) and resubmit."
UNREADABLE = "{path} cannot be read ({reason}); check the path and its permissions."
RUBRIC_SYNTAX = "Rubric {path} is not valid TOML at line {line}: {reason}; fix that line."
RUBRIC_VALUE = "Rubric {path}, line {line}: {what}; {expected}."
RUBRIC_NOT_FOUND = "No rubric named {name!r}: pass a path to a .toml file or one of: {choices}."
SETTING_BAD = "Setting {name} = {value!r} from {origin} is not valid: expected {expected}."
SETTING_UNKNOWN = "Setting {name!r} from {origin} is not a known limit; use one of: {choices}."
SANDBOX_UNCONFINED = ("The grader could not start a sandbox for this notebook on this machine, so it was not "
                      "graded; the person running the grader has been told why and can grade it again.")
NOTICE_UNCONFINED = "A sandbox could not be confined ({reason}); run grader doctor to see what this machine enforces."
SANDBOX_START = "The sandbox process could not start ({reason}); check that numpy and IPython import in this Python environment."


class GraderError(Exception):
    """Base of every error the CLI turns into a clean message and an exit code."""

    exit_code = EXIT_CANNOT_GRADE

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message


class NotebookError(GraderError):
    """The submitted file is not a notebook the grader can read."""

    @classmethod
    def not_a_notebook(cls, path: str, reason: str) -> NotebookError:
        return cls(NOT_A_NOTEBOOK.format(path=path, reason=reason))

    @classmethod
    def from_os_error(cls, path: str, exc: OSError) -> NotebookError:
        return cls(UNREADABLE.format(path=path, reason=exc.strerror or type(exc).__name__))


class RubricError(GraderError):
    """A rubric file is missing, malformed, or names something that does not exist."""

    @classmethod
    def from_toml_error(cls, path: str, exc: Exception) -> RubricError:
        reason = str(exc)
        line = getattr(exc, "lineno", None) or _line_from_message(reason) or "?"
        reason = reason.split(" (at line")[0]
        return cls(RUBRIC_SYNTAX.format(path=path, line=line, reason=reason))

    @classmethod
    def from_value(cls, path: str, line: int | str, what: str, expected: str) -> RubricError:
        return cls(RUBRIC_VALUE.format(path=path, line=line, what=what, expected=expected))

    @classmethod
    def not_found(cls, name: str, choices: list[str]) -> RubricError:
        return cls(RUBRIC_NOT_FOUND.format(name=name, choices=", ".join(choices) or "(none)"))


class AssignmentError(GraderError):
    """An assignment cannot be found, imported, or declares something inconsistent."""


class SettingError(GraderError):
    """A limit or option has a value that cannot work."""

    @classmethod
    def from_bad_value(cls, name: str, value: Any, origin: str, expected: str) -> SettingError:
        return cls(SETTING_BAD.format(name=name, value=value, origin=origin, expected=expected))

    @classmethod
    def from_unknown(cls, name: str, origin: str, choices: list[str]) -> SettingError:
        return cls(SETTING_UNKNOWN.format(name=name, origin=origin, choices=", ".join(choices)))


class SandboxError(GraderError):
    """The isolated process that runs student code could not be started or spoken to."""

    @classmethod
    def from_start_failure(cls, reason: str) -> SandboxError:
        return cls(SANDBOX_START.format(reason=reason))

    @classmethod
    def from_confinement_failure(cls, reason: str) -> SandboxError:
        """The machine's fault, not the notebook's: the student's report says only that; the reason
        goes to the operator (``grader.notices``)."""
        from grader import notices

        notices.note(NOTICE_UNCONFINED.format(reason=reason))
        return cls(SANDBOX_UNCONFINED)


class SandboxRefused(SandboxError):
    """This machine cannot run student code safely at all: the whole run stops (it is the operator's
    to fix, never a student's report)."""

    @classmethod
    def from_reason(cls, message: str) -> SandboxRefused:
        return cls(message)


def _line_from_message(message: str) -> int | None:
    import re

    match = re.search(r"line (\d+)", message)
    return int(match.group(1)) if match else None
