"""``grader.check()``: a student's self-check from inside their own Jupyter notebook.

The functions are graded as they are defined in the running kernel, without
re-running the notebook. The roles of the two processes are those of batch
grading, turned around:

* the **kernel** (the student's own process) plays the sandbox: it loads the
  sandbox worker program into a private namespace and answers call requests
  about its own ``activation``, ``d_activation``, ``forward`` and ``backward``;
* a **trusted child process** (``python -m grader.integrations.selfcheck``) holds the
  reference, runs every check, diagnosis and score exactly as ``grader check``
  does, and sends back only the rendered report.

So nothing of the reference, the mutants or the checks is ever imported into
the student's kernel (its ``sys.modules`` stays free of them), and the verdicts
come from the same code as the instructor's grading. Student code that hangs is
stopped by the same per-call alarm; code that ignores it leaves the check
waiting as any runaway cell would, until the student interrupts the kernel.

What the kernel shows is a :class:`SelfCheckReport`: the HTML report for Jupyter, made to
survive the notebook's own CSS (see :func:`jupyter_html`), and the text report as its
``text/plain`` form, for every front end that shows no HTML (a terminal IPython, a notebook
viewed as text, an email of the notebook's outputs).

This module is imported in the kernel: only the standard library (and grader.errors, which is only that) at the top.
"""
from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from grader.errors import GraderError

if TYPE_CHECKING:
    from grader.model import Report

_PACKAGE_DIR = Path(__file__).resolve().parent.parent / "sandbox"
NOT_IN_JUPYTER = ("grader.check() runs inside a Jupyter notebook, where it grades the functions you have defined; "
                  "in a terminal, run `grader check NOTEBOOK` instead.")


class SelfCheckError(GraderError, RuntimeError):
    """The self-check could not run (not in a kernel, or the grading process failed).

    A ``GraderError`` like every error a user sees (``grader.errors`` is standard library only, so the
    student's kernel imports nothing else of the grader), and a ``RuntimeError`` as it always was."""


def _worker_source(channel: tuple[int, int]) -> str:
    # launch.worker_body() builds the same text, but importing grader.sandbox.process here would load
    # half the grader into the student's kernel; this module must stay standard-library only.
    wire_source = (_PACKAGE_DIR / "protocol.py").read_text().replace("from __future__ import annotations\n", "", 1)
    return (f"_CHANNEL_ARGS = ['selfcheck', '{channel[0]}', '{channel[1]}']\n_JAIL_SOURCE = ''\n"
            + wire_source + "\n" + (_PACKAGE_DIR / "worker.py").read_text())


def check(function: str | None = None, *, assignment: str | None = None, rubric: str | None = None, seed: int = 0,
          display: bool = True) -> Any:
    """Grade the functions defined in this notebook's kernel and show the report.

    ``function`` limits the report to one of the assignment's functions (all checks
    still run: a function that uses a helper is graded with your helper).
    ``assignment`` is a bundled assignment's name or an assignment folder (default:
    the rubric's own, else simple_nn).
    Returns the report as a dict (the ``grader.report/1`` JSON) when ``display`` is
    False, else shows it as HTML and returns None.
    """
    try:
        from IPython import get_ipython
    except ImportError:
        raise SelfCheckError(NOT_IN_JUPYTER) from None
    shell = get_ipython()
    if shell is None:
        raise SelfCheckError(NOT_IN_JUPYTER)
    if function is not None and not isinstance(function, str):
        raise SelfCheckError(f"grader.check({function!r}): expected the name of one of the assignment's functions "
                             "or nothing.")

    to_kernel_r, to_kernel_w = os.pipe()
    from_kernel_r, from_kernel_w = os.pipe()
    command = [sys.executable, "-m", "grader.integrations.selfcheck", str(from_kernel_r), str(to_kernel_w),
               json.dumps({"rubric": rubric, "assignment": assignment, "seed": seed, "function": function})]
    trusted = subprocess.Popen(command, pass_fds=(from_kernel_r, to_kernel_w), stdout=subprocess.PIPE,
                               stderr=subprocess.PIPE, stdin=subprocess.DEVNULL)
    os.close(from_kernel_r)
    os.close(to_kernel_w)
    namespace: dict[str, Any] = {"__name__": "__sandbox__"}
    try:
        exec(compile(_worker_source((to_kernel_r, from_kernel_w)), "<sandbox>", "exec"), namespace)
        namespace["serve_self_check"]()
    finally:
        for fd in (to_kernel_r, from_kernel_w):
            try:
                os.close(fd)
            except OSError:
                pass
    out, err = trusted.communicate(timeout=120)
    if trusted.returncode != 0:
        last = err.decode("utf-8", "replace").strip().splitlines()[-1:] or ["no output"]
        raise SelfCheckError(f"the grading process failed ({last[0]}); run `grader check` on the saved notebook.")
    result = json.loads(out)
    if "error" in result:
        raise SelfCheckError(result["error"])
    if not display:
        return result["report"]
    from IPython.display import display as show

    show(SelfCheckReport(result["html"], result["text"]))
    return None


class SelfCheckReport:
    """The self-check's report as Jupyter displays it: HTML, and the text report as its ``text/plain``.

    ``IPython.display.HTML`` would give ``<IPython.core.display.HTML object>`` as the plain-text
    form, which is what a terminal IPython, nbconvert's text exports and notebook diff tools show.
    """

    def __init__(self, html: str, text: str) -> None:
        self.html = html
        self.text = text

    def _repr_mimebundle_(self, include: Any = None, exclude: Any = None) -> dict[str, str]:
        return {"text/plain": self.text, "text/html": self.html}

    def _repr_html_(self) -> str:
        return self.html

    def __repr__(self) -> str:
        return self.text


#: The fragment's class (``grader.render.html``) and the wrapper that scopes the rules below.
SCOPE = ".grader-selfcheck .grader-report"

#: Jupyter's notebook CSS styles every table of an output: JupyterLab (and Notebook 7) with
#: ``:not(.jp-RenderedMarkdown).jp-RenderedHTMLCommon td {text-align: right}`` (specificity 0,2,1,
#: more than the report's own ``.grader-report td``), classic Notebook with ``.rendered_html td``;
#: both also centre tables, fix their layout, shrink their font, stripe and highlight rows, and
#: pad and un-border cells. These rules are scoped under the wrapper (two classes, so at least
#: the specificity of Jupyter's) and ``!important``, so no such stylesheet wins; the report is a
#: light card of its own, readable under a dark theme too.
JUPYTER_STYLE = "\n".join(f"{SCOPE}{rule}" for rule in [
    "{text-align:left!important;color:#1b1b1b!important;background:#fff!important;border-radius:6px}",
    " table{width:100%!important;margin:.3rem 0!important;table-layout:auto!important;"
    "border-collapse:collapse!important;font-size:inherit!important;color:inherit!important}",
    " th," + SCOPE + " td{text-align:left!important;vertical-align:top!important;padding:.3rem .5rem!important;"
    "border:1px solid #ddd!important;white-space:normal!important;line-height:1.45!important;"
    "max-width:none!important;color:inherit!important}",
    " th{background:#fafafa!important;font-weight:600!important}",
    " tr," + SCOPE + " tbody tr:nth-child(odd)," + SCOPE + " tbody tr:nth-child(even)," + SCOPE
    + " tbody tr:hover{background:transparent!important}",
    " p," + SCOPE + " li{text-align:left!important}",
    " h1," + SCOPE + " h2{text-align:left!important;color:inherit!important}",
    " pre{text-align:left!important;white-space:pre-wrap!important;background:#f6f6f6!important;"
    "color:inherit!important}",
    " code{background:#f3f3f3!important;color:inherit!important}",
    " img{max-width:100%!important;height:auto!important}",
])

#: Table tags of the fragment (``<thead>`` and ``<tbody>`` are not cells).
_TABLE_TAG = re.compile(r"<(table|th|td)(?=[\s>])")
_INLINE = {"table": "width:100%;margin-left:0;margin-right:0",
           "th": "text-align:left;vertical-align:top", "td": "text-align:left;vertical-align:top"}


def jupyter_html(fragment: str) -> str:
    """The report's HTML fragment made to look the same inside Jupyter as in the feedback page.

    Wrapped in ``<div class="grader-selfcheck">`` with :data:`JUPYTER_STYLE`; and each table
    and cell also carries its alignment inline, because a notebook reopened untrusted has its
    outputs sanitized, ``<style>`` elements dropped, and inline style outranks any stylesheet
    rule. (Every ``<`` in the fragment is the renderer's own markup: what comes from the
    submission is escaped.)
    """
    inline = _TABLE_TAG.sub(lambda m: f'<{m.group(1)} style="{_INLINE[m.group(1)]}"', fragment)
    return f'<div class="grader-selfcheck"><style>{JUPYTER_STYLE}</style>\n{inline}</div>\n'


# --- the trusted side (``python -m grader.integrations.selfcheck``) -----------------------------------


def _serve(channel_in: int, channel_out: int, settings: dict[str, Any]) -> dict[str, Any]:
    from grader.grade import Options, grade_attached
    from grader.rubric import load_rubric
    from grader.sandbox.process import AttachedSandbox

    rubric = load_rubric(settings.get("rubric"), settings.get("assignment"))
    sandbox = AttachedSandbox(channel_in, channel_out, rubric.limits)
    function = settings.get("function")
    names = rubric.assignment.names
    if function is not None and function not in names:
        sandbox.close()  # the kernel stops serving: nothing was graded
        return {"error": f"grader.check({function!r}): expected one of {', '.join(names)} or nothing."}
    try:
        report = grade_attached(sandbox, "this notebook", rubric, Options(seed=int(settings.get("seed") or 0)))
    finally:
        sandbox.close()
    return rendered(report, function)


def rendered(report: Report, function: str | None = None) -> dict[str, Any]:
    """What the kernel receives: the whole report as JSON, and the HTML and text reports limited to
    ``function`` when one is given."""
    from grader.render import html, json_report, text

    shown = report
    if function:
        from dataclasses import replace

        shown = replace(report, checks=[c for c in report.checks if c.function == function],
                        diagnoses=[d for d in report.diagnoses if d.function == function])
    return {"report": json_report.to_dict(report), "html": jupyter_html(html.fragment(shown)),
            "text": text.render(shown, colour=False)}


def main(argv: Sequence[str] | None = None) -> int:
    args = list(sys.argv[1:] if argv is None else argv)
    result = _serve(int(args[0]), int(args[1]), json.loads(args[2]))
    sys.stdout.write(json.dumps(result))
    return 0


if __name__ == "__main__":
    sys.exit(main())
