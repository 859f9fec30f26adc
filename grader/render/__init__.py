"""Renderers: one module per output format, each a pure function of a Report.

The registry is the single place that knows which formats exist, so the CLI's
``--format`` choices, batch output and re-rendering of stored reports all
accept exactly the same names. The terminal renderer is registered without
colour (a registry entry cannot know whether its output goes to a terminal);
the CLI calls ``text.render`` itself when it wants colour.
"""
from __future__ import annotations

from typing import Callable

from grader.model import Report
from grader.render import classroom, gradescope, html, json_report, junit, markdown, text

Renderer = Callable[[Report], str]


def _plain_text(report: Report) -> str:
    return text.render(report, colour=False)


RENDERERS: dict[str, Renderer] = {
    "json": json_report.render,
    "text": _plain_text,
    "md": markdown.render,
    "html": html.render,
    "junit": junit.render,
    "gradescope": gradescope.render,
    "classroom": classroom.render,
}


def render(report: Report, fmt: str) -> str:
    """Render ``report`` in format ``fmt``; ValueError naming the valid formats otherwise."""
    try:
        renderer = RENDERERS[fmt]
    except KeyError:
        valid = ", ".join(sorted(RENDERERS))
        raise ValueError(f"unknown report format {fmt!r}; use one of: {valid}") from None
    return renderer(report)


__all__ = ["RENDERERS", "Renderer", "render"]
