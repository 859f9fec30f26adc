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

This module is imported in the kernel: only the standard library (and grader.errors, which is only that) at the top.
"""
from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from grader.errors import GraderError

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
    from IPython.display import HTML
    from IPython.display import display as show

    show(HTML(result["html"]))
    return None


# --- the trusted side (``python -m grader.integrations.selfcheck``) -----------------------------------


def _serve(channel_in: int, channel_out: int, settings: dict[str, Any]) -> dict[str, Any]:
    from grader.grade import Options, grade_attached
    from grader.render import html, json_report
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
    shown = report
    if function:
        from dataclasses import replace

        shown = replace(report, checks=[c for c in report.checks if c.function == function],
                        diagnoses=[d for d in report.diagnoses if d.function == function])
    return {"report": json_report.to_dict(report), "html": html.fragment(shown)}


def main(argv: Sequence[str] | None = None) -> int:
    args = list(sys.argv[1:] if argv is None else argv)
    result = _serve(int(args[0]), int(args[1]), json.loads(args[2]))
    sys.stdout.write(json.dumps(result))
    return 0


if __name__ == "__main__":
    sys.exit(main())
