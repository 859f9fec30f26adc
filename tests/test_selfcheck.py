"""``grader.check()`` run inside a real Jupyter kernel (nbclient), as a student would in their notebook; and what
it displays (HTML that Jupyter's CSS cannot rearrange, the text report as text/plain), checked without a kernel."""
from __future__ import annotations

import json
import re

import nbformat
import pytest
from conftest import CORRECT_CELLS, SEED, parse_html
from nbclient import NotebookClient

from grader.model import CheckResult, Diagnosis, FunctionInfo, Report

pytest.importorskip("ipykernel")


def _run(cells: list[str], extra: list[str]) -> list:
    notebook = nbformat.v4.new_notebook()
    notebook.cells = [nbformat.v4.new_code_cell(c) for c in cells + extra]
    NotebookClient(notebook, timeout=120, kernel_name="python3", allow_errors=True).execute()
    return notebook.cells[len(cells):]


def _outputs(cell, kind: str) -> list:
    return [o for o in cell.outputs if o.output_type == kind]


@pytest.mark.slow
def test_self_check_grades_the_kernels_functions_without_importing_the_reference():
    seed = nbformat.read(SEED, as_version=4)
    cells = [c.source for c in seed.cells if c.cell_type == "code"]
    shown, modules, data = _run(cells, [
        "import grader\ngrader.check()",
        "import sys\nprint(sorted(m for m in sys.modules if m.split('.')[0] in ('grader', 'reference')))",
        "import json\nprint(json.dumps(grader.check('backward', display=False)))",
    ])
    (bundle,) = [o.data for o in _outputs(shown, "display_data")]
    html, text = bundle["text/html"], bundle["text/plain"]
    assert "d_activation_on_w2_partials" in html and "<img" in html  # the hint and the loss curve
    assert "backward.gradient" in html and 'class="grader-selfcheck"' in html
    # Without HTML (a terminal, a text export) the same report, as text.
    assert "IPython" not in text and "50/100 (50%)" in text
    assert re.search(r"✗ backward\.gradient +0/20", text) and "bug: d_activation_on_w2_partials" in text
    assert modules.outputs[0].text.strip() == "['grader', 'grader.errors', 'grader.integrations', 'grader.integrations.selfcheck']"
    report = json.loads("".join(o.text for o in _outputs(data, "stream")))
    assert report["score"] == 50 and [d["id"] for d in report["diagnoses"]] == ["d_activation_on_w2_partials"]


@pytest.mark.slow
def test_self_check_sees_the_current_definitions_not_the_saved_notebook():
    fixed = CORRECT_CELLS[:-1] + [CORRECT_CELLS[-1].replace("w2 * d_activation(h)", "w2 * d_activation(h) * 0")]
    _, data = _run(fixed, [
        "import grader",
        "import json\nprint(json.dumps(grader.check(display=False)))\n" + CORRECT_CELLS[-1]
        + "\nprint(json.dumps(grader.check(display=False)))",
    ])
    text = "".join(o.text for o in _outputs(data, "stream"))
    before, after = (json.loads(line) for line in text.strip().splitlines())
    assert before["score"] < 100 and after["score"] == 100


def test_outside_jupyter_it_says_what_to_do_instead():
    import grader
    from grader.integrations.selfcheck import SelfCheckError

    with pytest.raises(SelfCheckError, match="grader check NOTEBOOK"):
        grader.check()
    with pytest.raises(SelfCheckError):
        grader.check("nonsense")


# --- what the kernel displays, without a kernel --------------------------------------------------------


def _report() -> Report:
    checks = [CheckResult("activation.values", "activation", True, "ok", 1.0, score=15, max_score=15),
              CheckResult("backward.gradient", "backward", False, "implied gradient wrong on 6 of 6 probes", 0.0,
                          score=0, max_score=20)]
    return Report(submission="this notebook", rubric="simple_nn", status="graded", score=15, max_score=35,
                  checks=checks, diagnoses=[Diagnosis("outer_transposed", "backward", "The outer product is transposed.")],
                  functions={"backward": FunctionInfo("backward", True, "function")})


def test_the_display_offers_the_text_report_as_plain_text():
    from IPython.core.formatters import format_display_data

    from grader.integrations.selfcheck import SelfCheckReport, rendered
    from grader.render import text

    result = rendered(_report())
    data, _ = format_display_data(SelfCheckReport(result["html"], result["text"]))
    assert data["text/plain"] == result["text"] == text.render(_report(), colour=False)
    assert "backward.gradient" in data["text/plain"] and "IPython" not in data["text/plain"]
    assert data["text/html"] == result["html"]
    assert repr(SelfCheckReport(result["html"], result["text"])) == result["text"]

    only = rendered(_report(), "backward")  # grader.check("backward"): that function's checks only
    assert "backward.gradient" in only["text"] and "activation.values" not in only["text"]
    assert [c["id"] for c in only["report"]["checks"]] == ["activation.values", "backward.gradient"]


#: Jupyter's rule that right-aligns output table cells (JupyterLab 4, Notebook 7); classic's is weaker.
JUPYTERLAB_CELL_RULE = ":not(.jp-RenderedMarkdown).jp-RenderedHTMLCommon td"


def _specificity(selector: str) -> tuple[int, int, int]:
    """(ids, classes and pseudo-classes, element names) of a simple CSS selector; :not() counts its argument."""
    selector = re.sub(r":not\(([^)]*)\)", r" \1", selector)
    ids = len(re.findall(r"#[\w-]+", selector))
    classes = len(re.findall(r"\.[\w-]+", selector)) + len(re.findall(r":(?!not)[\w-]+", selector))
    names = len(re.findall(r"(?:^|[\s>+~])([a-z][\w-]*)", selector))
    return ids, classes, names


def test_the_html_keeps_its_tables_left_aligned_against_jupyters_css():
    from grader.integrations.selfcheck import JUPYTER_STYLE, SCOPE, rendered

    html = rendered(_report())["html"]
    page = parse_html(html)
    assert page.classes("grader-selfcheck") == 1 and page.classes("grader-report") == 1
    # Every rule is scoped to the report, so nothing of the notebook around it changes.
    rules = re.findall(r"([^{}]+)\{([^}]*)\}", JUPYTER_STYLE)
    assert rules and all(sel.strip().startswith(SCOPE) for selectors, _ in rules for sel in selectors.split(","))
    # The cells' alignment wins over Jupyter's: at least its specificity, and !important.
    cell_rules = [(sel.strip(), body) for selectors, body in rules for sel in selectors.split(",")
                  if re.search(r"\b(td|th)$", sel.strip())]
    assert {sel.rsplit(" ", 1)[1] for sel, _ in cell_rules} == {"td", "th"}
    assert all(_specificity(sel) >= _specificity(JUPYTERLAB_CELL_RULE) == (0, 2, 1) for sel, _ in cell_rules)
    for cell in ("td", "th"):
        declared = ";".join(body for sel, body in cell_rules if sel.endswith(cell))
        assert "text-align:left!important" in declared and "vertical-align:top!important" in declared
    assert "background:transparent!important" in JUPYTER_STYLE  # no zebra rows from the theme
    # A notebook reopened untrusted loses <style>: the cells carry their alignment inline too.
    cells = page.named("td") + page.named("th")
    assert len(cells) >= 8 and all("text-align:left" in (cell.get("style") or "") for cell in cells)
    assert all("margin-left:0" in (table.get("style") or "") for table in page.named("table"))
    assert "implied gradient wrong on 6 of 6 probes" in "".join(page.text)
