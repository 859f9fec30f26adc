"""Red team: hostile notebooks against the grader's private channel where it is newest.

Two message kinds had no attacks yet: ``substitute`` (the grader puts stand-ins for a student's broken
helpers into the notebook's namespace, and takes them out again) and the worker's ``helper`` requests
(a live stand-in, during the training check, asks the grader for each value). Also new: a one-off
sandbox makes its IPython shell lazily. Each test grades a real notebook end to end, on both ways a
sandbox starts (a fresh process, a fork of the fork server), and asserts what the attack must come to:
no more points than the same notebook without it, the grader never crashed nor held past its limits,
a broken protocol reported as tampering, the rest of the notebook graded.

The notebooks reach the worker the way any student can: a stand-in's ``__globals__`` are the worker
program's, and so are the globals of the frames that call a graded function.

Most attacks need the live phase. ``SCALAR`` (an activation that only takes single numbers; issue 13)
leads there: activation loses its points, forward and backward are graded with a working activation
in its place (table stand-ins), and the training loop is run again with live stand-ins. That notebook
without any attack scores 85 (the ``honest`` fixture); every attack below starts from it or from the
correct notebook.

Attacks that used to hang the grader carry their own end (the sandbox gives up after ``GIVE_UP_S``), so
that with the defence removed the test fails on its wall-time bound instead of hanging the suite.
"""
from __future__ import annotations

import json
import time
from pathlib import Path

import pytest
from conftest import CORRECT_CELLS, notebook_json

from grader.grade import Options, grade_notebook
from grader.rubric import load_rubric
from grader.sandbox.forkserver import ForkServer
from grader.sandbox.limits import Limits
from grader.sandbox.process import WATCHDOG_GRACE_S

pytestmark = pytest.mark.slow

LIMITS = Limits(cell_timeout_s=2, call_timeout_s=1, total_timeout_s=30, memory_mb=1024,
                file_size_mb=8, max_processes=32, output_kb=64)
#: The longest the grader waits on one training chain request (its budget, a call limit, the grace).
CHAIN_WAIT_S = 2 * LIMITS.call_timeout_s + WATCHDOG_GRACE_S
#: Wall time allowed beyond what a test's bound names (a restart, replayed cells, a loaded machine).
SLACK_S = 3.0
#: How long an attack that blocks the grader keeps at it before its sandbox exits on its own.
GIVE_UP_S = 20

IMPORTS, CORRECT_HELPERS, LOSS, FORWARD, BACKWARD = CORRECT_CELLS
SCALAR = "def activation(z):\n    return max(0, z)\n\ndef d_activation(z):\n    return (z > 0).astype(float)"
PROTOCOL = "integrity_protocol_tamper"

#: Defined first in every hostile cell below: the worker's globals from the stack (any cell, any call),
#: and a raw frame writer for what ``send`` would refuse to write.
REACH = '''
import os, struct, sys, signal, time, json, threading
def _worker():
    frame = sys._getframe()
    while frame is not None:
        if 'CHANNEL_OUT' in frame.f_globals and 'serve_calls' in frame.f_globals:
            return frame.f_globals
        frame = frame.f_back
    raise LookupError('no worker')
def _raw(g, head, blobs=()):
    parts = [b'GRDR' + struct.pack('<II', len(head), len(blobs)), head]
    for blob in blobs:
        parts += [struct.pack('<Q', len(blob)), blob]
    os.write(g['CHANNEL_OUT'], b''.join(parts))
def _npy(shape_text, data=b''):
    text = "{'descr': '<f8', 'fortran_order': False, 'shape': %s, }" % shape_text
    return b'\\x93NUMPY\\x01\\x00' + len(text).to_bytes(2, 'little') + text.encode() + data
def _live():
    return '_live_stand_in' in getattr(activation, '__qualname__', '')
def _give_up_later(seconds):
    end = time.monotonic() + seconds
    while time.monotonic() < end:
        time.sleep(0.05)
    os._exit(0)
'''


def hostile_forward(body: str) -> str:
    """A cell that defines forward: ``body`` runs (once) when forward is called under a live stand-in,
    then forward computes as the correct one does."""
    indented = "\n".join("        " + line for line in body.strip().splitlines())
    return (REACH + "_done = []\ndef forward(x, w1, w2):\n    if _live() and not _done:\n        _done.append(1)\n"
            + indented + "\n    return activation(x @ w1) @ w2\n")


@pytest.fixture(scope="module", params=["fresh process", "fork server"])
def server(request):
    if request.param == "fresh process":
        yield None
        return
    with ForkServer() as forks:
        yield forks


@pytest.fixture(scope="module")
def grade(server):
    def run(directory: Path, cells: list[str], server=server):
        path = directory / "hostile.ipynb"
        path.write_text(notebook_json(cells))
        started = time.monotonic()
        report = grade_notebook(path, load_rubric(None), Options(limits=LIMITS, server=server))
        return report, time.monotonic() - started
    return run


@pytest.fixture(scope="module")
def honest(grade, tmp_path_factory):
    """The scalar-activation notebook without any attack: 85 (activation's 15 lost), and its wall time."""
    report, wall = grade(tmp_path_factory.mktemp("honest"), [IMPORTS, SCALAR, LOSS, FORWARD, BACKWARD])
    assert report.score == 85 and by_id(report)["training.converges"].passed, report.checks
    assert "once activation is fixed" in by_id(report)["training.converges"].message  # the live phase ran
    return report, wall


def by_id(report) -> dict:
    return {check.id: check for check in report.checks}


def diagnosis_ids(report) -> set[str]:
    return {d.id for d in report.diagnoses}


def assert_graded_but_training(report, honest_report) -> None:
    """The attack cost the training points (its live retry was broken) and nothing else."""
    assert report.status == "graded"
    checks, expected = by_id(report), by_id(honest_report)
    assert not checks["training.converges"].passed
    assert [(c.id, c.passed) for c in report.checks if c.id != "training.converges"] == \
        [(c.id, c.passed) for c in honest_report.checks if c.id != "training.converges"]
    assert report.score == honest_report.score - expected["training.converges"].score


# --- the grader must never block on a worker that stops reading ----------------------------------------


#: Asks for a value whose answer (480 kB) is larger than the pipe, and never reads it.
UNREAD_ANSWER = hostile_forward(f'''
g = activation.__globals__
signal.signal(signal.SIGALRM, signal.SIG_IGN)
out = []
g['send']({{'op': 'helper', 'name': 'activation', 'z': g['encode_value'](np.zeros(60000), out)}}, out)
print('ASKED', flush=True)
_give_up_later({GIVE_UP_S})
''')

#: Leaves an answer (64 kB, which fits the pipe) unread just before the chain's reply, and stops the
#: worker's loop from reading: the grader's next request finds the pipe full.
FULL_PIPE = hostile_forward(f'''
g = activation.__globals__
honest_send, honest_read = g['send'], g['read_message']
def send(header, blobs=None):
    if header.get('op') == 'trained':
        out = []
        honest_send({{'op': 'helper', 'name': 'activation', 'z': g['encode_value'](np.zeros(8000), out)}}, out)
        time.sleep(0.3)
        print('FILLED', flush=True)
    return honest_send(header, blobs)
def deaf(*args, **kwargs):
    if sys._getframe(1).f_code.co_name != 'main':
        return honest_read(*args, **kwargs)
    signal.signal(signal.SIGALRM, signal.SIG_IGN)
    _give_up_later({GIVE_UP_S})
g['send'], g['read_message'] = send, deaf
''')


@pytest.mark.parametrize("attack", ["answer never read", "pipe left full"])
def test_a_worker_that_stops_reading_costs_one_wait_not_a_hung_grader(tmp_path, grade, honest, attack):
    """Both used to hang the grader for good: its write of the answer, or of its next request, blocked
    until the worker read, which it never did (found by this red team; ``launch.Worker.send``)."""
    source, marker = {"answer never read": (UNREAD_ANSWER, "ASKED"), "pipe left full": (FULL_PIPE, "FILLED")}[attack]
    report, wall = grade(tmp_path, [IMPORTS, SCALAR, LOSS, source, BACKWARD])
    assert marker in report.output_excerpt  # the attack reached the live phase
    assert wall < honest[1] + CHAIN_WAIT_S + SLACK_S < GIVE_UP_S
    assert_graded_but_training(report, honest[0])


def test_a_helper_flood_is_bounded_by_the_chain_limit(tmp_path, grade, honest):
    """Threads send helper requests without pause and drop whatever the grader writes back, while the call
    never returns (the alarm ignored): the grader answers until the chain's limit, then stops that worker.
    (Without the limit it answers on until the process's read budget is spent, or the sandbox gives up.)"""
    flood = hostile_forward(f'''
g = activation.__globals__
signal.signal(signal.SIGALRM, signal.SIG_IGN)
fd_in = g['CHANNEL_IN']
def drain():
    while True:
        os.read(fd_in, 1 << 16)
def ask():  # the smallest request (about 60 bytes): the most answers for the grader's read budget
    while True:
        g['send']({{'op': 'helper', 'name': 'activation', 'z': {{'t': 'none'}}}})
threading.Thread(target=drain, daemon=True).start()
threading.Thread(target=ask, daemon=True).start()
print('FLOODING', flush=True)
_give_up_later({GIVE_UP_S})
''')
    report, wall = grade(tmp_path, [IMPORTS, SCALAR, LOSS, flood, BACKWARD])
    assert "FLOODING" in report.output_excerpt
    assert wall < honest[1] + CHAIN_WAIT_S + SLACK_S < GIVE_UP_S
    assert_graded_but_training(report, honest[0])


# --- helper requests that lie ----------------------------------------------------------------------


#: Requests the grader can answer (each answer read back, as the stand-in would): it answers from its own
#: helper, on the decoded point, and nothing else. The forward prints what came back.
ANSWERED = hostile_forward('''
g = activation.__globals__
def ask(header, blobs=()):
    g['send'](header, list(blobs))
    reply, reply_blobs = g['read_message'](g['receive'], g['FROM_GRADER'])
    return g['decode_value'](reply['value'], reply_blobs)
def point(value):
    out = []
    return g['encode_value'](value, out), out
z, blobs = point(np.array([-1.0, np.nan, np.inf, 2.0]))
got = [ask({'op': 'helper', 'name': 'activation', 'z': z}, blobs)]
z, blobs = point(np.array([3.0]))
got.append(ask({'op': 'helper', 'name': 'forward', 'z': z}, blobs))
z, blobs = point((np.ones(2), np.ones(3)))
got.append(ask({'op': 'helper', 'name': 'activation', 'z': z}, blobs))
got.append(ask({'op': 'helper', 'name': 'activation', 'z': {'t': 'unsupported', 'type': 'x' * 10000}}))
got.append(ask({'op': 'helper', 'name': ['activation'], 'z': {'t': 'none'}}))
print('ANSWERS', [None if v is None else np.asarray(v).tolist() for v in got], flush=True)
''')


def test_helper_requests_that_lie_are_answered_from_the_graders_own_helper(tmp_path, grade, honest):
    """Points with NaN and inf, a name that is not a stand-in's (forward), a ragged point, a point that is
    no data, a name that is not a string: each answered with the default helper's value or with nothing,
    never with anything of the student's or anything more; grading goes on as for the honest notebook."""
    report, _ = grade(tmp_path, [IMPORTS, SCALAR, LOSS, ANSWERED, BACKWARD])
    assert "ANSWERS [[0.0, nan, inf, 2.0], None, None, None, None]" in report.output_excerpt
    assert report.status == "graded" and report.score == honest[0].score
    assert [(c.id, c.passed) for c in report.checks] == [(c.id, c.passed) for c in honest[0].checks]
    assert PROTOCOL not in diagnosis_ids(report)


#: Helper requests the grader must refuse as malformed (each written raw, as a hijacked worker could).
MALFORMED = {
    "not JSON": "_raw(g, b'{\"op\": \"helper\", \"name\": ')",
    "a header that is a list": "_raw(g, b'[\"helper\"]')",
    "too many numbers": "_raw(g, json.dumps({'op': 'helper', 'name': 'activation', 't': 0, "
                        "'z': {'t': 'array', 'i': 0}}).encode(), [_npy('(70000,)', bytes(8 * 70000))])",
    "nested too deep": "z = {'t': 'none'}\nfor _ in range(8):\n    z = {'t': 'seq', 'kind': 'list', 'items': [z]}\n"
                       "g['send']({'op': 'helper', 'name': 'activation', 'z': z})",
    "an array index out of range": "g['send']({'op': 'helper', 'name': 'activation', 'z': {'t': 'array', 'i': 5}})",
    "an impossible shape": "_raw(g, json.dumps({'op': 'helper', 'name': 'activation', "
                           "'z': {'t': 'array', 'i': 0}}).encode(), [_npy('(0, 100000000000000000000)')])",
}


@pytest.mark.parametrize("lie", sorted(MALFORMED))
def test_a_malformed_helper_request_is_tampering_and_costs_the_training_check_only(tmp_path, grade, honest, lie):
    """"an impossible shape" used to raise ValueError out of grade_notebook (numpy's reshape of an empty array
    to a shape no array can have): the whole report lost, not one submission's channel (``protocol.npy_to_array``)."""
    attack = hostile_forward("g = activation.__globals__\nprint('LIED', flush=True)\n" + MALFORMED[lie]
                             + "\ntime.sleep(5)")
    report, _ = grade(tmp_path, [IMPORTS, SCALAR, LOSS, attack, BACKWARD])
    assert "LIED" in report.output_excerpt
    assert PROTOCOL in diagnosis_ids(report)
    assert_graded_but_training(report, honest[0])


def test_an_impossible_shape_in_a_call_reply_fails_that_function_as_tampering(tmp_path, grade):
    """The same forged array in an ordinary call's reply (the worker's encoder replaced): it used to escape
    grade_notebook as ValueError. Now forward's checks fail on a broken protocol and the rest is graded."""
    attack = REACH + (
        "def forward(x, w1, w2):\n"
        "    _worker()['array_to_npy'] = lambda array: _npy('(0, 100000000000000000000)')\n"
        "    return activation(x @ w1) @ w2\n")
    report, _ = grade(tmp_path, [IMPORTS, CORRECT_HELPERS, LOSS, attack, BACKWARD])
    checks = by_id(report)
    assert report.status == "graded"
    assert not checks["forward.values"].passed and "protocol" in checks["forward.values"].message
    assert PROTOCOL in diagnosis_ids(report)
    assert {c.id for c in report.checks if c.passed} >= {"activation.values", "d_activation.values",
                                                         "backward.values", "backward.gradient"}


def test_an_empty_array_with_a_huge_frame_is_not_data(tmp_path, grade):
    """``np.zeros((2**31, 0))`` holds no numbers, so it passed the decoder's bound, and the report wrote it as
    2**31 empty lists: the grader hung building them. Here 300000 rows, which is quick either way: the value
    must reach the report as what it is, not as a list that long."""
    attack = "def backward(x, y, y_hat, w1, w2, eta):\n    return np.zeros((300000, 0)), np.zeros((0, 300000))"
    report, _ = grade(tmp_path, [IMPORTS, CORRECT_HELPERS, LOSS, FORWARD, attack])
    check = by_id(report)["backward.values"]
    assert report.status == "graded" and not check.passed
    assert "ndarray of shape (300000, 0)" in json.dumps(check.details)
    assert len(json.dumps(check.details)) < 10_000
    assert {c.id for c in report.checks if c.passed} >= {"activation.values", "forward.values"}


# --- helper messages the grader did not ask for ------------------------------------------------------

UNSOLICITED = {
    # A cell: the grader is waiting for that cell's report.
    "in a cell": [IMPORTS, CORRECT_HELPERS, LOSS, FORWARD, BACKWARD, REACH + (
        "print('ASKED', flush=True)\n_worker()['send']({'op': 'helper', 'name': 'activation', 'z': {'t': 'none'}})\n"
        "time.sleep(1)")],
    # A call outside the live phase: no stand-in is live, and a helper request is no reply.
    "in a call": [IMPORTS, CORRECT_HELPERS, LOSS, FORWARD, REACH + BACKWARD + (
        "\n_backward = backward\ndef backward(*args):\n    print('ASKED', flush=True)\n"
        "    _worker()['send']({'op': 'helper', 'name': 'activation', 'z': {'t': 'none'}})\n"
        "    return _backward(*args)\n")],
    # The same with the request's own token, read from the worker's frame: it is still no reply.
    "in a call, with the request's token": [IMPORTS, CORRECT_HELPERS, LOSS, FORWARD, REACH + BACKWARD + (
        "\n_backward = backward\ndef backward(*args):\n    frame, token = sys._getframe(), None\n"
        "    while frame is not None and token is None:\n        token = frame.f_locals.get('token')\n"
        "        frame = frame.f_back\n    print('ASKED', token is not None, flush=True)\n"
        "    _worker()['send']({'op': 'helper', 'token': token, 'name': 'activation', 'z': {'t': 'none'}})\n"
        "    return _backward(*args)\n")],
}


@pytest.mark.parametrize("where", sorted(UNSOLICITED))
def test_an_unsolicited_helper_request_is_tampering(tmp_path, grade, where):
    report, _ = grade(tmp_path, UNSOLICITED[where])
    assert "ASKED" in report.output_excerpt
    assert report.status == "graded" and PROTOCOL in diagnosis_ids(report)
    checks = by_id(report)
    if where == "in a cell":  # that cell crashed; the definitions before it were replayed
        assert report.cells[-1].status == "crashed" and "protocol" in report.cells[-1].error
        assert report.score == report.max_score
    else:
        assert "ASKED True" in report.output_excerpt or where == "in a call"
        for check in ("backward.values", "backward.gradient", "training.converges"):
            assert not checks[check].passed, check
        assert "protocol" in checks["backward.values"].message
        assert {c.id for c in report.checks if c.passed} == {"activation.values", "d_activation.values",
                                                             "d_activation.gradient", "forward.values"}


def test_an_unsolicited_helper_request_in_a_training_chain_ends_the_chain(tmp_path, grade):
    """Only in the chain (backward called by the worker's ``train``): the chain is refused as a broken
    protocol, flagged, and training is judged call by call, where backward is honest."""
    attack = REACH + BACKWARD + (
        "\n_backward = backward\ndef backward(*args):\n"
        "    if sys._getframe(2).f_code.co_name == 'train':\n        print('ASKED', flush=True)\n"
        "        _worker()['send']({'op': 'helper', 'name': 'activation', 'z': {'t': 'none'}})\n"
        "    return _backward(*args)\n")
    report, _ = grade(tmp_path, [IMPORTS, CORRECT_HELPERS, LOSS, FORWARD, attack])
    assert "ASKED" in report.output_excerpt
    assert report.status == "graded" and PROTOCOL in diagnosis_ids(report)
    assert report.score == report.max_score  # the ground truth, call by call, is the correct notebook's


# --- stand-ins kept, swapped, never taken back ----------------------------------------------------------

STAND_IN_GAMES = {
    # forward keeps the table stand-in it was graded with; activation answers with it from then on.
    "keep the stand-in": REACH + (
        "import builtins\n"
        "def activation(z):\n    kept = getattr(builtins, '_kept', None)\n    if kept is not None:\n"
        "        try:\n            return kept(z)\n        except Exception:\n            pass\n    return max(0, z)\n"
        "def forward(x, w1, w2):\n"
        "    if '_stand_in' in activation.__qualname__ and not hasattr(builtins, '_kept'):\n"
        "        builtins._kept = activation\n        print('GAMED', flush=True)\n"
        "    return activation(x @ w1) @ w2\n"),
    # forward puts a working activation where restore takes the notebook's own from.
    "swap what restore puts back": REACH + (
        "def forward(x, w1, w2):\n"
        "    if '_stand_in' in activation.__qualname__:\n"
        "        _worker()['_REPLACED']['activation'] = lambda z: np.maximum(0, z)\n        print('GAMED', flush=True)\n"
        "    return activation(x @ w1) @ w2\n"),
    # forward replaces the stand-in in the namespace while it is graded with it.
    "replace the stand-in in globals": REACH + (
        "def forward(x, w1, w2):\n"
        "    if '_stand_in' in activation.__qualname__:\n"
        "        globals()['activation'] = lambda z: np.maximum(0, z)\n        print('GAMED', flush=True)\n"
        "    return activation(x @ w1) @ w2\n"),
    # restore says no and leaves every stand-in in place.
    "restore refused": REACH + FORWARD + (
        "\n_g = _worker()\n_substitute = _g['substitute']\n"
        "def _refusing(header, blobs):\n    if header.get('restore'):\n        print('GAMED', flush=True)\n"
        "        return {'status': 'refused'}\n    return _substitute(header, blobs)\n_g['substitute'] = _refusing\n"),
    # restore answers with a message the grader did not ask for first.
    "restore breaks the protocol": REACH + FORWARD + (
        "\n_g = _worker()\n_substitute = _g['substitute']\n"
        "def _breaking(header, blobs):\n    if header.get('restore'):\n        print('GAMED', flush=True)\n"
        "        _g['send']({'op': 'substituted', 'status': 'ok'})\n    return _substitute(header, blobs)\n"
        "_g['substitute'] = _breaking\n"),
}


@pytest.mark.parametrize("game", sorted(STAND_IN_GAMES))
def test_playing_with_stand_ins_earns_no_more_than_the_honest_notebook(tmp_path, grade, honest, game):
    """Stand-ins hold the grader's values at the points it grades: kept, swapped in for good, or left in
    place by a restore that fails, they give the notebook nothing it was not already given."""
    report, _ = grade(tmp_path, [IMPORTS, SCALAR, LOSS, STAND_IN_GAMES[game], BACKWARD])
    assert "GAMED" in report.output_excerpt
    assert report.status == "graded"
    assert not by_id(report)["activation.values"].passed and by_id(report)["activation.values"].score == 0
    assert report.score <= honest[0].score
    if game == "restore breaks the protocol":
        assert PROTOCOL in diagnosis_ids(report)


@pytest.mark.parametrize("lie", ["nan", "wrong shape", "too many numbers"])
def test_a_stand_in_made_to_lie_to_the_notebook_earns_no_training_points(tmp_path, grade, honest, lie):
    """The worker's decoder replaced for the stand-in's answers only: the notebook's own stand-in tells it
    lies. The grader's audit of the training chain is what decides, and it is not convinced."""
    value = {"nan": "np.full(np.shape(value), np.nan)", "wrong shape": "np.ones((3, 3))",
             "too many numbers": "np.ones(70000)"}[lie]
    attack = hostile_forward(f'''
g = activation.__globals__
honest_decode = g['decode_value']
def lying(desc, blobs, *rest):
    value = honest_decode(desc, blobs, *rest)
    if sys._getframe(1).f_code.co_name == 'stand_in':
        return {value}
    return value
g['decode_value'] = lying
print('LYING', flush=True)
''')
    report, _ = grade(tmp_path, [IMPORTS, SCALAR, LOSS, attack, BACKWARD])
    assert "LYING" in report.output_excerpt
    assert_graded_but_training(report, honest[0])


# --- the lazy shell of a one-off sandbox ----------------------------------------------------------------

#: The correct notebook with an identity activation: what the hostile cells below must not improve on.
WRONG_ACTIVATION = [IMPORTS, "def activation(z):\n    return z\n\ndef d_activation(z):\n    return (z > 0).astype(float)",
                    LOSS, FORWARD, BACKWARD]
LAZY_SHELL_GAMES = REACH + '''
import builtins, types
_identity, _get_ipython, _display, _exit = activation, get_ipython, display, exit
def activation(z):
    shell = _get_ipython()         # in a one-off sandbox the shell is made here, in the middle of a call
    _display(np.shape(z))
    try:
        _exit()
    except BaseException as error:  # noqa - exit() ends a cell as sys.exit() does: SystemExit
        print('EXIT', type(error).__name__)
    print('NS', shell.user_ns is globals(), 'activation' in shell.user_ns, flush=True)
    return _identity(z)
_fake = types.ModuleType('__main__')
exec("import numpy as np\\ndef activation(z):\\n    return np.maximum(0, z)\\n", _fake.__dict__)
sys.modules['__main__'] = _fake  # a __main__ whose activation is right
builtins.display = lambda *a, **k: print('FAKE DISPLAY')
get_ipython = lambda: types.SimpleNamespace(user_ns=_fake.__dict__)
exit = quit = None
'''


def test_lazy_shell_names_and_main_cannot_change_a_verdict(tmp_path, grade):
    """A graded function makes the shell in the middle of a call (after the notebook replaced the lazy
    names) and calls display and exit; the notebook swaps ``__main__`` for a module holding a right
    activation. Verdicts are the honest notebook's, and the shell adopted the notebook's own namespace."""
    (tmp_path / "honest").mkdir()
    honest, _ = grade(tmp_path / "honest", WRONG_ACTIVATION)
    report, _ = grade(tmp_path, WRONG_ACTIVATION + [LAZY_SHELL_GAMES])
    assert [(c.id, c.passed, c.score) for c in report.checks] == [(c.id, c.passed, c.score) for c in honest.checks]
    assert report.score == honest.score < report.max_score
    assert all(cell.status == "ok" for cell in report.cells)
    assert "NS True True" in report.output_excerpt and "NS False" not in report.output_excerpt
    assert "EXIT SystemExit" in report.output_excerpt


# --- another student's data ------------------------------------------------------------------------------

SECRET = "SECRET-7f3a91"


def test_a_fork_never_sees_what_the_previous_submission_left(tmp_path):
    """On one fork server: a notebook that, in its live phase, writes a secret into every descriptor and
    file it can and leaves a thread behind; then a notebook that reads every descriptor but its channel,
    the files, and every process's descriptors it can see. It finds nothing, and is graded in full."""
    plant = hostile_forward(f'''
g = activation.__globals__
channel = {{g['CHANNEL_IN'], g['CHANNEL_OUT']}}
for fd in set(range(3, 256)) - channel:
    try:
        os.write(fd, b'{SECRET}')
    except OSError:
        pass
for path in ('/tmp/secret', 'secret', '/dev/shm/secret'):
    try:
        open(path, 'w').write('{SECRET}')
    except OSError:
        pass
def linger():
    while True:
        for fd in set(range(3, 256)) - channel:
            try:
                os.write(fd, b'{SECRET}')
            except OSError:
                pass
        time.sleep(0.05)
threading.Thread(target=linger, daemon=True).start()
print('PLANTED', flush=True)
''')
    scan = REACH + '''
g = _worker()
seen, scanned = [], 0
channel = {g['CHANNEL_IN'], g['CHANNEL_OUT']}
for fd in range(3, 256):
    if fd in channel:
        continue
    try:
        os.set_blocking(fd, False)
        seen.append(os.read(fd, 1 << 16))
        scanned += 1
    except OSError:
        pass
for path in ('/tmp/secret', 'secret', '/dev/shm/secret'):
    try:
        seen.append(open(path, 'rb').read())
    except OSError:
        pass
for pid in os.listdir('/proc'):
    if pid.isdigit() and int(pid) != os.getpid():
        try:
            for fd in os.listdir(f'/proc/{pid}/fd'):
                scanned += 1
                with open(f'/proc/{pid}/fd/{fd}', 'rb', buffering=0) as handle:
                    os.set_blocking(handle.fileno(), False)
                    seen.append(handle.read(1 << 16) or b'')
        except (OSError, ValueError):
            pass
print('SCANNED', 'FOUND' if any(b'SECRET-' in s for s in seen if s) else 'nothing', flush=True)
'''
    with ForkServer() as forks:
        (tmp_path / "first").mkdir()
        (tmp_path / "second").mkdir()
        first = tmp_path / "first" / "plant.ipynb"
        first.write_text(notebook_json([IMPORTS, SCALAR, LOSS, plant, BACKWARD]))
        planted = grade_notebook(first, load_rubric(None), Options(limits=LIMITS, server=forks))
        second = tmp_path / "second" / "scan.ipynb"
        second.write_text(notebook_json(CORRECT_CELLS + [scan]))
        scanned = grade_notebook(second, load_rubric(None), Options(limits=LIMITS, server=forks))
    assert "PLANTED" in planted.output_excerpt and planted.status == "graded"
    assert "SCANNED nothing" in scanned.output_excerpt
    assert SECRET not in scanned.output_excerpt
    assert scanned.score == scanned.max_score
