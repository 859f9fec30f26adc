"""The assignment template's opening cells: run once per grading process, not once per notebook.

Part of the execute stage, for batch grading. Nearly every submission keeps the
cells its template opens with (imports, a worked demonstration, the data) byte
for byte, and in this assignment those cells train a toy network for 200 steps
and draw its loss: a seventh of what grading one notebook costs, paid again for
every student although it is the same instructor's code each time. A fork
server (``forkserver.py``) runs them once in a server of their own and forks
each notebook that begins with exactly those cells from there.

Only the template's code, which comes with the rubric, is ever run that way,
never a student's. The opening ends before the first cell that defines a
graded function (one of the assignment's ``names``), since that is where students start writing, and before any
cell that is not plain Python, so what it does is what running it in each
notebook's own sandbox would do.
"""
from __future__ import annotations

import ast
from collections.abc import Sequence
from functools import lru_cache

from grader.rubric import Rubric


def _defines_graded_function(tree: ast.Module, names: Sequence[str]) -> bool:
    for node in ast.walk(tree):
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)) and node.name in names:
            return True
        if isinstance(node, (ast.Assign, ast.AnnAssign, ast.AugAssign)):
            targets = node.targets if isinstance(node, ast.Assign) else [node.target]
            if any(isinstance(t, ast.Name) and t.id in names for t in targets):
                return True
    return False


def opening_of(sources: list[str], names: Sequence[str]) -> tuple[str, ...]:
    """The leading cells of ``sources`` up to the first that defines one of the graded functions ``names``
    or is not plain Python."""
    opening = []
    for source in sources:
        if source.lstrip().startswith(("%", "!")) or "get_ipython" in source:
            break
        try:
            tree = ast.parse(source)
        except (SyntaxError, ValueError):
            break  # IPython syntax, or broken: leave it to each notebook's own run
        if _defines_graded_function(tree, names):
            break
        opening.append(source)
    return tuple(opening)


@lru_cache(maxsize=8)
def _opening_of_notebook(data: bytes, name: str, names: tuple[str, ...]) -> tuple[str, ...]:
    from grader.load import load_notebook_bytes

    return opening_of([cell.source for cell in load_notebook_bytes(data, name).code_cells], names)


def opening_cells(rubric: Rubric, names: Sequence[str]) -> tuple[str, ...]:
    """The code of the rubric's template's opening cells, up to the first that defines one of the
    graded functions ``names``; empty without a template.

    Raises ``LoadError`` when the template is not a readable notebook: it comes
    with the rubric, so that is the course's mistake to fix, not a student's.
    """
    if rubric.template is None or rubric.template_bytes is None:
        return ()
    return _opening_of_notebook(rubric.template_bytes, rubric.template, tuple(names))
