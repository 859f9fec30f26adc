"""Renderers: one module per output format, each a pure function of a Report.

The registry is the single place that knows which formats exist and what a
file of each is called, so the CLI's ``--format`` choices, batch output and
re-rendering of stored reports accept exactly the same names, and every file
written for a rendered report is named with ``file_name`` (each renderer
module carries its ``EXTENSION``). The terminal renderer is registered without
colour (a registry entry cannot know whether its output goes to a terminal);
the CLI calls ``text.render`` itself when it wants colour.
"""
from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from grader.model import Report
from grader.render import classroom, gradescope, html, json_report, junit, markdown, text


@dataclass(frozen=True)
class Renderer:
    """One output format: the function that renders a report, and the extension of a file holding it."""

    render: Callable[[Report], str]
    #: With its dot: ``".html"``.
    extension: str

    def __call__(self, report: Report) -> str:
        return self.render(report)


def _plain_text(report: Report) -> str:
    return text.render(report, colour=False)


RENDERERS: dict[str, Renderer] = {
    "json": Renderer(json_report.render, json_report.EXTENSION),
    "text": Renderer(_plain_text, text.EXTENSION),
    "md": Renderer(markdown.render, markdown.EXTENSION),
    "html": Renderer(html.render, html.EXTENSION),
    "junit": Renderer(junit.render, junit.EXTENSION),
    "gradescope": Renderer(gradescope.render, gradescope.EXTENSION),
    "classroom": Renderer(classroom.render, classroom.EXTENSION),
}


def renderer(fmt: str) -> Renderer:
    """The renderer of format ``fmt``; ValueError naming the valid formats otherwise."""
    try:
        return RENDERERS[fmt]
    except KeyError:
        valid = ", ".join(sorted(RENDERERS))
        raise ValueError(f"unknown report format {fmt!r}; use one of: {valid}") from None


def render(report: Report, fmt: str) -> str:
    """Render ``report`` in format ``fmt``; ValueError naming the valid formats otherwise."""
    return renderer(fmt).render(report)


def file_name(stem: str, fmt: str) -> str:
    """The name of a file holding a report rendered in ``fmt``: ``file_name("alice", "html") == "alice.html"``."""
    return stem + renderer(fmt).extension


__all__ = ["RENDERERS", "Renderer", "file_name", "render", "renderer"]
