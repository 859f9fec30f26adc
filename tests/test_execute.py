"""The execute stage, for real: a separate process, magics, failing and hanging cells, restarts."""
import os
import uuid

import numpy as np
import pytest

from grader.sandbox.process import CallRequest, SubprocessSandbox
from grader.sandbox.limits import Limits
from grader.load import Cell

pytestmark = pytest.mark.slow

FAST = Limits(cell_timeout_s=1.5, call_timeout_s=1.5, total_timeout_s=60)
#: The functions the worker reports on (simple_nn's; the sandbox itself knows none).
GRADED = ("activation", "d_activation", "forward", "backward")


def _cells(*sources: str) -> list[Cell]:
    return [Cell(i, s) for i, s in enumerate(sources)]


@pytest.fixture
def sandbox():
    box = SubprocessSandbox(FAST, graded=GRADED)
    yield box
    box.close()


def test_code_runs_in_another_process_and_failing_cells_do_not_stop_the_rest(sandbox):
    execution = sandbox.run_notebook(_cells(
        "import os\npid = os.getpid()",
        "undefined_name + 1",
        "def activation(z):\n    return np.maximum(z, 0)",
        "import numpy as np",
    ))
    assert [c.status for c in execution.cells] == ["ok", "error", "ok", "ok"]
    assert "NameError" in execution.cells[1].error
    (outcome,) = sandbox.call_many([CallRequest("activation", (np.array([-1.0, 2.0]),))])
    assert outcome.ok and outcome.value.tolist() == [0.0, 2.0]
    assert execution.functions["activation"].found and not execution.functions["backward"].found
    assert sandbox._process.handle.popen.pid != os.getpid()


def test_magics_work_shell_escapes_are_not_run_and_input_does_not_hang(sandbox):
    marker = f"/tmp/grader-test-{uuid.uuid4().hex}"
    execution = sandbox.run_notebook(_cells(
        "%matplotlib inline\nimport matplotlib.pyplot as plt\nplt.plot([1, 2]); plt.show()",
        "%%time\nforward = lambda x, w1, w2: 1.0",
        f"!touch {marker}",
        f"%%bash\ntouch {marker}",
        "name = input('Your name? ')",
    ))
    statuses = [c.status for c in execution.cells]
    assert statuses[:4] == ["ok", "ok", "ok", "ok"]
    assert statuses[4] == "error" and "EOFError" in execution.cells[4].error
    assert not os.path.exists(marker)
    assert sum("shell command not run" in w for w in execution.warnings) == 2
    assert execution.functions["forward"].kind == "lambda"


def test_a_hanging_cell_is_stopped_and_the_next_cell_runs(sandbox):
    execution = sandbox.run_notebook(_cells("while True:\n    pass", "def forward(x, w1, w2):\n    return 2.0"))
    assert [c.status for c in execution.cells] == ["timeout", "ok"]
    (outcome,) = sandbox.call_many([CallRequest("forward", (np.zeros(2), np.zeros((2, 2)), np.zeros(2)))])
    assert outcome.ok and float(outcome.value) == 2.0


def test_a_cell_ignoring_the_alarm_is_killed_and_earlier_cells_are_replayed(sandbox):
    execution = sandbox.run_notebook(_cells(
        "def activation(z):\n    return z * (z > 0)",
        "import time\nwhile True:\n    try:\n        time.sleep(10)\n    except BaseException:\n        pass",
        "def d_activation(z):\n    return (z > 0) * 1.0",
    ))
    assert [c.status for c in execution.cells] == ["ok", "timeout", "ok"]
    outcomes = sandbox.call_many([CallRequest("activation", (np.array([-1.0, 3.0]),)),
                                  CallRequest("d_activation", (np.array([-1.0, 3.0]),))])
    assert [o.value.tolist() for o in outcomes] == [[0.0, 3.0], [0.0, 1.0]]


def test_sys_exit_at_top_level_does_not_stop_grading_and_os_exit_is_survived(sandbox):
    execution = sandbox.run_notebook(_cells(
        "def activation(z):\n    return z",
        "import sys\nsys.exit(0)",
        "import os\nos._exit(3)",
        "def forward(x, w1, w2):\n    return 1.0",
    ))
    assert [c.status for c in execution.cells] == ["ok", "error", "crashed", "ok"]
    assert execution.functions["activation"].found and execution.functions["forward"].found


def test_last_definition_wins_and_helpers_may_come_later(sandbox):
    sandbox.run_notebook(_cells(
        "def activation(z):\n    return -z",
        "def activation(z):\n    return relu_helper(z)",
        "import numpy as np\ndef relu_helper(z):\n    return np.where(z > 0, z, 0.0)",
    ))
    (outcome,) = sandbox.call_many([CallRequest("activation", (np.array([-2.0, 5.0]),))])
    assert outcome.value.tolist() == [0.0, 5.0]


def test_calls_get_fresh_copies_and_mutation_is_visible(sandbox):
    sandbox.run_notebook(_cells("def backward(x, y, y_hat, w1, w2, eta):\n    w1 -= 1\n    return w1, w2"))
    w1 = np.ones((2, 2))
    (outcome,) = sandbox.call_many([CallRequest("backward", (np.ones(2), 1.0, 0.5, w1, np.ones(2), 0.1))])
    assert np.array_equal(w1, np.ones((2, 2)))  # the grader's array is untouched
    assert np.array_equal(outcome.args_after[3], np.zeros((2, 2)))


def test_raising_hanging_and_crashing_calls_fail_only_themselves(sandbox):
    sandbox.run_notebook(_cells(
        "def activation(z):\n    raise ValueError('nope')",
        "def d_activation(z):\n    while True:\n        pass",
        "def forward(x, w1, w2):\n    import os\n    os._exit(1)",
        "def backward(x, y, y_hat, w1, w2, eta):\n    return w1, w2",
    ))
    z = np.array([1.0])
    outcomes = sandbox.call_many([
        CallRequest("activation", (z,)), CallRequest("d_activation", (z,)),
        CallRequest("forward", (z, z, z)), CallRequest("backward", (z, 1.0, 1.0, z, z, 0.1)),
    ])
    assert [o.status for o in outcomes] == ["raised", "timeout", "crashed", "ok"]
    assert "ValueError: nope" in outcomes[0].error


def test_batched_replies_keep_every_array_with_its_call_across_several_messages(sandbox):
    """Replies travel several per message, each message's arrays renumbered: a slow call makes the
    worker send mid-batch, so the batch below spans messages; every value must come back to its call."""
    sandbox.run_notebook(_cells(
        "import time\ndef forward(x, w1, w2):\n    time.sleep(0.03 if x[0] % 7 == 0 else 0)\n"
        "    w1[0, 0] = x[0]\n    return (x * 10, [x, x + 1])",
    ))
    requests = [CallRequest("forward", (np.array([float(i), 0.5]), np.zeros((2, 2)), np.ones(2)))
                for i in range(60)]
    outcomes = sandbox.call_many(requests)
    assert [o.status for o in outcomes] == ["ok"] * 60
    for i, outcome in enumerate(outcomes):
        assert outcome.value[0].tolist() == [10.0 * i, 5.0]
        assert [a.tolist() for a in outcome.value[1]] == [[i, 0.5], [i + 1, 1.5]]
        assert outcome.args_after[1][0, 0] == i and outcome.args_after[2].tolist() == [1.0, 1.0]


def test_a_function_that_silences_the_alarm_and_hangs_is_still_pinned_on_itself(sandbox):
    """Without the alarm the worker cannot say which call overran, so the batch is asked again with a
    reply per message: the hang costs a second call limit, but the verdicts are exact."""
    sandbox.run_notebook(_cells(
        "import signal\ndef activation(z):\n    return z + 1",
        "def d_activation(z):\n    signal.signal(signal.SIGALRM, signal.SIG_IGN)\n    while True:\n        pass",
    ))
    z = np.array([1.0])
    requests = [CallRequest("activation", (z,)), CallRequest("activation", (z * 2,)),
                CallRequest("d_activation", (z,)), CallRequest("activation", (z * 3,)),
                CallRequest("d_activation", (z,))]
    outcomes = sandbox.call_many(requests)
    assert [o.status for o in outcomes] == ["ok", "ok", "timeout", "ok", "timeout"]
    assert [outcomes[i].value.tolist() for i in (0, 1, 3)] == [[2.0], [3.0], [4.0]]


def test_output_is_bounded_and_never_parsed():
    box = SubprocessSandbox(Limits(output_kb=4, cell_timeout_s=10), graded=GRADED)
    try:
        box.run_notebook(_cells("print('PASSED ' * 200000)", "def activation(z):\n    return z"))
        excerpt = box.output_excerpt()
        assert len(excerpt) < 6000 and "more bytes of output not kept" in excerpt
    finally:
        box.close()
    assert not os.path.exists(box.workdir)


def test_a_fork_of_the_warmed_up_server_starts_as_clean_as_a_fresh_process():
    """The fork server runs its own warm-up cells before forking; no trace of them may reach a submission."""
    from grader.sandbox.forkserver import ForkServer

    probe = _cells(
        "ip = get_ipython()\n"
        "names = sorted(n for n in ip.user_ns if not n.startswith('_') and n not in ('In', 'Out', 'exit', 'quit', 'get_ipython', 'ip'))\n"
        "print('names', names, 'count', ip.execution_count, 'outputs', len(ip.user_ns['Out']), 'inputs', len(ip.user_ns['In']))",
        "import numpy as np\nimport matplotlib.pyplot as plt\nline, = plt.plot([1, 2, 3])\n"
        "print('drawn', line.get_ydata().tolist(), 'axes', len(plt.gcf().axes))",
        "import numpy as np\nprint('draw', np.random.random())",
    )
    texts = []
    with ForkServer() as server:
        for _ in range(2):
            box = SubprocessSandbox(FAST, server, GRADED)
            try:
                execution = box.run_notebook(probe)
            finally:
                box.close()
            assert [c.status for c in execution.cells] == ["ok"] * 3
            texts.append(box.output_excerpt())
    fresh = SubprocessSandbox(FAST, graded=GRADED)
    try:
        fresh.run_notebook(probe)
    finally:
        fresh.close()
    expected = fresh.output_excerpt()
    assert "count 1 outputs 0" in expected and "drawn [1, 2, 3] axes 1" in expected
    for text in texts:  # identical to a fresh process, apart from the random draw
        assert text.split("draw 0.")[0] == expected.split("draw 0.")[0]
    assert texts[0].split("draw ")[1] != texts[1].split("draw ")[1]  # each fork has its own random state


def test_the_fork_server_and_its_sandboxes_are_named_for_ps():
    from grader.sandbox.forkserver import ForkServer

    def names() -> list[str]:
        found = []
        for entry in os.listdir("/proc"):
            try:
                with open(f"/proc/{entry}/comm") as handle:
                    found.append(handle.read().strip())
            except OSError:
                continue
        return found

    if not os.path.isdir("/proc"):
        pytest.skip("no /proc on this system")
    with ForkServer() as server:
        box = SubprocessSandbox(FAST, server, GRADED)
        try:
            box.run_notebook(_cells("x = 1"))
            running = names()
        finally:
            box.close()
    assert "grader-forksrv" in running and "grader-sandbox" in running


def test_prints_past_the_output_limit_are_skipped_but_the_code_around_them_runs():
    """A debug print inside a loop costs nothing once the output kept for the report is full."""
    box = SubprocessSandbox(Limits(output_kb=1, cell_timeout_s=10), graded=GRADED)
    try:
        cells = _cells(
            "class Loud:\n"
            "    formatted = 0\n"
            "    def __str__(self):\n"
            "        Loud.formatted += 1\n"
            "        return 'L' * 100\n"
            "steps = 0\n"
            "for _ in range(100):\n"
            "    print(Loud())\n"
            "    steps += 1\n"
            "import io\n"
            "buffer = io.StringIO()\n"
            "print('to a file', file=buffer)\n"
            "def activation(z):\n"
            "    return z + Loud.formatted * 1000 + steps * 10 + len(buffer.getvalue())",
        )
        box.run_notebook(cells)
        [outcome] = box.call_many([CallRequest("activation", (np.zeros(1),))])
        # 1 KB of output holds ten 101-character lines: the eleventh crosses the limit, the rest are skipped;
        # the loop itself ran to the end, and a print to a file of the student's own is never skipped.
        assert outcome.value.tolist() == [11 * 1000 + 100 * 10 + len("to a file\n")]
        excerpt = box.output_excerpt()
        assert excerpt.count("L" * 100) == 10 and "print() calls past the limit were skipped" in excerpt
    finally:
        box.close()
