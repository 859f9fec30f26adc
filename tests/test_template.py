"""The template's opening cells, run once by a primed fork server, change nothing but the cost.

A notebook that begins with exactly the template's opening cells is forked from a
server that has already run them; every report must be what the plain server
gives, field for field, and a notebook that changed any of those cells must run
them itself.
"""
from __future__ import annotations

import json
import re
from pathlib import Path

import pytest

from grader.errors import RubricError
from grader.sandbox.forkserver import ForkServer
from grader.grade import Options, grade_notebook
from grader.sandbox.limits import Limits
from grader.load import load_notebook
from grader.render import json_report
from grader.rubric import load_rubric, parse_rubric
from grader.template import opening_cells, opening_of

from conftest import CORRECT_CELLS, SEED, notebook_json

FIXTURES = Path(__file__).parent / "fixtures"
MANIFEST = json.loads((FIXTURES / "manifest.json").read_text())
LIMITS = Limits(cell_timeout_s=3, call_timeout_s=3, total_timeout_s=90)
RUBRIC = load_rubric("simple_nn")
SEED_CELLS = [cell.source for cell in load_notebook(SEED).code_cells]
#: The simple_nn assignment's graded functions (what the batch runner passes as ``assignment.names``).
NAMES = ("activation", "d_activation", "forward", "backward")


@pytest.fixture(scope="module")
def servers():
    with ForkServer() as plain, ForkServer(opening_cells(RUBRIC, NAMES), LIMITS.cell_timeout_s) as primed:
        yield plain, primed


#: What %time and %timeit print: the only output that may differ between two runs of one notebook
#: (IPython writes some of them with an exponent, such as "1e+03 ns").
TIMINGS = re.compile(r"\d+(\.\d+)?(e[+-]?\d+)?\s*(ns|µs|μs|us|ms|s)\b")


def report_of(path: Path, server: ForkServer) -> dict:
    document = json_report.to_dict(grade_notebook(path, RUBRIC, Options(limits=LIMITS, server=server)))
    document.pop("duration_s")
    document["output_excerpt"] = TIMINGS.sub("<time>", document["output_excerpt"])
    return document


# --- which cells are the opening ------------------------------------------------------------------


def test_the_bundled_rubric_opens_with_the_seed_cells_before_the_first_graded_function():
    assert opening_cells(RUBRIC, NAMES) == tuple(SEED_CELLS[:3])
    assert "def activation" in SEED_CELLS[3]


def test_the_opening_stops_at_a_graded_definition_of_any_spelling_and_at_ipython_syntax():
    setup = "import numpy as np\nx = np.ones(2)"
    assert opening_of([setup, "forward = lambda x, w1, w2: x", "y = 1"], NAMES) == (setup,)
    assert opening_of([setup, "if True:\n    def backward(*a):\n        pass"], NAMES) == (setup,)
    assert opening_of([setup, "%matplotlib inline", "y = 1"], NAMES) == (setup,)
    assert opening_of([setup, "!pip install numpy", "y = 1"], NAMES) == (setup,)
    assert opening_of([setup, "def broken(:\n    pass", "y = 1"], NAMES) == (setup,)
    assert opening_of(["def helper(z):\n    return z", setup], NAMES) == ("def helper(z):\n    return z", setup)


def test_a_rubric_without_a_template_primes_nothing():
    rubric = parse_rubric(Path(RUBRIC.path).read_text().replace('template = "simple_nn_seed.ipynb"', ""), RUBRIC.path)
    assert rubric.template is None and opening_cells(rubric, NAMES) == ()


@pytest.mark.parametrize("value, found", [
    ('"missing.ipynb"', "template = 'missing.ipynb' names no readable file"),
    ("3", "template = 3 is not a file name"),
])
def test_a_bad_template_is_reported_with_its_line_and_what_was_expected(tmp_path, value, found):
    text = Path(RUBRIC.path).read_text().replace('template = "simple_nn_seed.ipynb"', f"template = {value}")
    line = next(i for i, row in enumerate(text.splitlines(), 1) if row.startswith("template ="))
    path = tmp_path / "course.toml"
    path.write_text(text)
    with pytest.raises(RubricError) as raised:
        load_rubric(str(path))
    assert found in raised.value.message and f"line {line}" in raised.value.message
    assert "expected the file name of the notebook handed to students" in raised.value.message
    if "names no" in found:
        assert "copy the notebook there, or delete the template line" in raised.value.message


# --- the primed server ----------------------------------------------------------------------------


@pytest.mark.slow
def test_the_server_is_primed_only_with_cells_that_ran_cleanly():
    with ForkServer(("import numpy as np", "x = 1 / 0", "y = 2"), 3) as failing:
        assert failing.opening == ()
    with ForkServer(("import numpy as np", "x = np.ones(2)"), 3) as clean:
        assert clean.opening == ("import numpy as np", "x = np.ones(2)")
        assert clean.begins_with_opening(["import numpy as np", "x = np.ones(2)", "def forward(): pass"])
        assert not clean.begins_with_opening(["import numpy as np", "x = np.ones(3)"])
        assert not clean.begins_with_opening(["import numpy as np"])


@pytest.mark.slow
@pytest.mark.parametrize("name", sorted(MANIFEST))
def test_every_fixture_gets_the_same_report_from_the_primed_server(servers, name):
    plain, primed = servers
    path = FIXTURES / "notebooks" / name
    assert report_of(path, primed) == report_of(path, plain)


@pytest.mark.slow
def test_a_notebook_that_edited_an_opening_cell_runs_its_own_version(tmp_path, servers, monkeypatch):
    plain, primed = servers
    edited = SEED_CELLS[1].replace('print("Final prediction:", x @ w1 @ w2)', 'print("my toy net says", x @ w1 @ w2)')
    assert edited != SEED_CELLS[1]
    path = tmp_path / "edited.ipynb"
    path.write_text(notebook_json([SEED_CELLS[0], edited, *SEED_CELLS[2:]]))
    ops = spawns_from_primed(primed, monkeypatch)
    report = report_of(path, primed)
    assert "spawn" not in ops
    assert "my toy net says" in report["output_excerpt"] and "Final prediction" in report["output_excerpt"]
    assert report == report_of(path, plain)


def spawns_from_primed(server: ForkServer, monkeypatch) -> list[str]:
    """Record each request the primed server receives (a spy on its control socket)."""
    ops: list[str] = []
    control = server._primed
    request = control.request
    monkeypatch.setattr(control, "request", lambda message, fds=(): ops.append(message["op"]) or request(message, fds))
    return ops


@pytest.mark.slow
def test_a_crash_after_the_opening_replays_from_the_primed_server_with_the_same_result(tmp_path, servers, monkeypatch):
    """The restart after a crashed cell replays the good cells, opening included, in a primed fork."""
    plain, primed = servers
    names = "print('names', sorted(n for n in dir() if not n.startswith('_')))"
    cells = SEED_CELLS[:3] + [names, "import os\nos._exit(3)", *CORRECT_CELLS[1:], names]
    path = tmp_path / "crash.ipynb"
    path.write_text(notebook_json(cells))
    ops = spawns_from_primed(primed, monkeypatch)
    report = report_of(path, primed)
    assert ops.count("spawn") == 2  # the first run and the restart both started after the opening
    assert [cell["status"] for cell in report["cells"]] == ["ok"] * 4 + ["crashed"] + ["ok"] * 5
    assert report["score"] == report["max_score"]
    assert report["output_excerpt"].count("Final prediction") == 2  # the first run, and the replay
    assert report == report_of(path, plain)


@pytest.mark.slow
def test_when_the_primed_server_is_gone_notebooks_fork_from_the_plain_one(tmp_path):
    import socket

    path = tmp_path / "seed.ipynb"
    path.write_bytes(SEED.read_bytes())
    with ForkServer(opening_cells(RUBRIC, NAMES), LIMITS.cell_timeout_s) as server:
        expected = report_of(path, server)
        server._primed.socket.shutdown(socket.SHUT_RDWR)  # as its end looks when the process has died
        assert report_of(path, server) == expected
        assert server.opening == () and server.alive
        assert report_of(path, server) == expected
