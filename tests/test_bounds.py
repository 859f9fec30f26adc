"""The trusted side bounds everything it reads, and batch inputs are bounded (issue 11).

Two kinds of test. Unit tests drive ``protocol.read_message`` and ``protocol.npy_to_array`` with
hand-made frames and a reader that records what it was asked for, so they can show that a
declared size is refused *before* anything of that size is read or allocated. End-to-end
tests grade a notebook that forges the sandbox's side of the protocol (its functions find
the request's token in the worker's frames and write frames to the channel, as a hostile
submission can) in a separate Python process, which reports its own peak RSS
(``VmHWM``: the grader's, not the sandbox's, see ``PEAK_RSS``) and writes the report and feedback files
a batch would write. Each asserts the exact outcome: no credit for what was forged, the
reason in the report, the grader's peak RSS under 500 MB, the report still written.
"""
from __future__ import annotations

import io
import json
import pickle
import struct
import subprocess
import sys
import time
import zipfile
from pathlib import Path
from typing import Any

import numpy as np
import pytest

import grader.batch.collect as collect_module
from grader.sandbox import protocol
from grader.sandbox.process import Chain

from conftest import CORRECT_CELLS, REPO, notebook_json

#: The issue's bound on the grader's memory, whatever one notebook sends.
RSS_BOUND_MB = 500
#: The simple_nn assignment's graded functions (what the batch runner passes as ``assignment.names``).
NAMES = ("activation", "d_activation", "forward", "backward")
LIMITS = {"cell_timeout_s": 5, "call_timeout_s": 2, "total_timeout_s": 60, "memory_mb": 1024,
          "file_size_mb": 8, "max_processes": 32, "output_kb": 16}

# --- unit: framing -----------------------------------------------------------------------------


class Recorder:
    """A ``read_exact`` over ``data`` that remembers every size asked of it, and serves at most
    ``data``: a peer that declares more than it sends ends in EOFError, as a closed pipe does."""

    def __init__(self, data: bytes) -> None:
        self.stream = io.BytesIO(data)
        self.asked: list[int] = []

    def __call__(self, n: int) -> bytes:
        self.asked.append(n)
        chunk = self.stream.read(n)
        if len(chunk) < n:
            raise EOFError
        return chunk


def frame(header: dict[str, Any] | bytes, sizes_and_blobs: list[tuple[int, bytes]]) -> bytes:
    """A frame whose blobs may declare sizes other than their real length (a lying peer)."""
    head = header if isinstance(header, bytes) else json.dumps(header).encode()
    parts = [protocol._HEAD.pack(protocol.MAGIC, len(head), len(sizes_and_blobs)), head]
    for size, blob in sizes_and_blobs:
        parts += [protocol._BLOB.pack(size), blob]
    return b"".join(parts)


def test_an_oversized_header_is_refused_before_it_is_read():
    data = protocol._HEAD.pack(protocol.MAGIC, 0xFFFFFFFF, 0) + b"{}"
    reader = Recorder(data)
    with pytest.raises(protocol.WireError, match=r"message header of 4096 MB, over the 1 MB limit"):
        protocol.read_message(reader)
    assert reader.asked == [protocol._HEAD.size]


def test_too_many_arrays_are_refused_before_any_is_read():
    reader = Recorder(protocol._HEAD.pack(protocol.MAGIC, 2, 1_000_000) + b"{}")
    with pytest.raises(protocol.WireError, match="1000000 arrays, over the limit of 4096"):
        protocol.read_message(reader)
    assert reader.asked == [protocol._HEAD.size]


def test_a_message_over_its_byte_budget_is_refused_before_the_blob_that_passes_it_is_read():
    limit = protocol.FROM_SANDBOX.max_message_bytes
    first = limit - 1000
    data = frame({"op": "results"}, [(first, b"\0" * first), (2000, b"")])  # the second blob is never sent
    reader = Recorder(data)
    with pytest.raises(protocol.WireError, match=r"more than 20 MB of arrays, its limit"):
        protocol.read_message(reader)
    assert max(reader.asked) == first and 2000 not in reader.asked


def test_a_peer_that_lies_about_sizes_costs_at_most_the_budget():
    """100 arrays of 256 MB declared, the bytes sent as they would be: reading stops within the budget."""

    class Endless:
        def __init__(self, prefix: bytes) -> None:
            self.prefix, self.served = prefix, 0

        def __call__(self, n: int) -> bytes:
            self.served += n
            if self.prefix:
                chunk, self.prefix = self.prefix[:n], self.prefix[n:]
                return chunk if len(chunk) == n else chunk + b"\0" * (n - len(chunk))
            return protocol._BLOB.pack(256 << 20) if n == protocol._BLOB.size else b"\0" * n

    head = json.dumps({"op": "cell"}).encode()
    reader = Endless(protocol._HEAD.pack(protocol.MAGIC, len(head), 100) + head)
    with pytest.raises(protocol.WireError):
        protocol.read_message(reader)
    assert reader.served <= protocol.FROM_SANDBOX.max_message_bytes + 64


def test_one_process_may_send_only_its_budget_over_many_messages():
    budget = protocol.ReadBudget()
    blob = b"\0" * (10 << 20)
    message = frame({"op": "result"}, [(len(blob), blob)])
    protocol.read_message(Recorder(message), protocol.FROM_SANDBOX, budget)
    protocol.read_message(Recorder(message), protocol.FROM_SANDBOX, budget)
    reader = Recorder(message)
    with pytest.raises(protocol.WireError, match=r"the sandbox sent more than 24 MB in all \(an array of 10 MB"):
        protocol.read_message(reader, protocol.FROM_SANDBOX, budget)
    assert len(blob) not in reader.asked  # refused on its declared size, not after reading it


def test_the_grader_may_send_what_the_sandbox_may_not():
    """Direction-specific limits: a 30 MB cell source is fine from the grader, refused from the sandbox."""
    source = b"#" * (30 << 20)
    message = protocol.pack({"op": "exec", "cells": [{"index": 0, "blob": 0}]}, [source])
    header, blobs = protocol.read_message(Recorder(message), protocol.FROM_GRADER)
    assert header["cells"] == [{"index": 0, "blob": 0}] and blobs[0] == source
    with pytest.raises(protocol.WireError, match="its limit"):
        protocol.read_message(Recorder(message))  # the default is the strict side: reading from the sandbox
    assert protocol.FROM_GRADER.max_header > protocol.FROM_SANDBOX.max_header
    assert protocol.FROM_GRADER.max_message_bytes >= collect_module.MAX_NOTEBOOK_BYTES


def test_deeply_nested_json_is_a_wire_error_not_a_recursion_error():
    head = b"[" * 200_000 + b"]" * 200_000
    with pytest.raises(protocol.WireError, match="malformed JSON header"):
        protocol.read_message(Recorder(frame(head, [])))


def test_reading_copies_each_byte_once():
    buffer = bytearray(b"abcdef")
    assert protocol.take_front(buffer, 4) == b"abcd" and buffer == bytearray(b"ef")


# --- unit: arrays ------------------------------------------------------------------------------


def npy_v2(text: str, data: bytes = b"") -> bytes:
    return b"\x93NUMPY\x02\x00" + struct.pack("<I", len(text)) + text.encode("latin1") + data


def test_an_npy_header_over_numpys_limit_is_refused_before_it_is_parsed(monkeypatch):
    def parse(text):  # pragma: no cover - reaching it is the failure
        raise AssertionError("parsed an oversized header")

    monkeypatch.setattr(protocol, "_parse_npy_header", parse)
    text = "{'descr': '<f8', 'fortran_order': False, 'shape': (1,), }"
    blob = npy_v2(text + " " * (8_000_000 - len(text) - 1) + "\n", np.zeros(1).tobytes())
    started = time.perf_counter()
    with pytest.raises(protocol.WireError, match="an array header of 8000000 bytes, over numpy's limit of 10000"):
        protocol.npy_to_array(blob)
    assert time.perf_counter() - started < 0.1
    # A length field that claims more than the blob holds is refused too, whatever its size.
    with pytest.raises(protocol.WireError, match="header longer than the data"):
        protocol.npy_to_array(npy_v2("x" * 5000)[:-100])


def test_numpys_own_header_limit_is_the_one_applied():
    try:
        from numpy.lib._format_impl import _MAX_HEADER_SIZE
    except ImportError:  # numpy 1.x
        from numpy.lib.format import _MAX_HEADER_SIZE
    assert protocol.NPY_MAX_HEADER == _MAX_HEADER_SIZE
    text = "{'descr': '<f8', 'fortran_order': False, 'shape': (2,), }"
    at_limit = npy_v2(text + " " * (protocol.NPY_MAX_HEADER - len(text) - 1) + "\n", np.arange(2.0).tobytes())
    assert protocol.npy_to_array(at_limit).tolist() == [0.0, 1.0]
    over = npy_v2(text + " " * (protocol.NPY_MAX_HEADER - len(text)) + "\n", np.arange(2.0).tobytes())
    with pytest.raises(protocol.WireError, match="over numpy's limit"):
        protocol.npy_to_array(over)


@pytest.mark.parametrize("shape, message", [
    ((10**12, 10**12), "wrong length"),          # an element count the data does not back
    ((2**40,), "wrong length"),
    ((1,) * 40, "40 dimensions, over the limit of 32"),
])
def test_shapes_are_checked_against_the_data_before_any_array_is_built(shape, message):
    text = "{'descr': '<f8', 'fortran_order': False, 'shape': %r, }" % (shape,)
    with pytest.raises(protocol.WireError, match=message):
        protocol.npy_to_array(npy_v2(text + "\n", np.zeros(1).tobytes()))


def test_an_array_named_many_times_in_one_message_is_decoded_once_at_most():
    """64 x 64 references to one 480 kB array would be 2 GB of copies; it is refused instead."""
    blob = protocol.array_to_npy(np.zeros(60_000))
    inner = {"t": "seq", "kind": "list", "items": [{"t": "array", "i": 0}] * 64}
    desc = {"t": "seq", "kind": "list", "items": [inner] * 64}
    header, blobs = protocol.read_message(Recorder(protocol.pack({"value": desc}, [blob])))
    with pytest.raises(protocol.WireError, match="the same array is used twice in one message"):
        protocol.decode_value(header["value"], blobs)
    # Honest messages name each array once, in any number of values.
    two = [protocol.array_to_npy(np.ones(2)), protocol.array_to_npy(np.zeros(3))]
    header, blobs = protocol.read_message(Recorder(protocol.pack({"a": {"t": "array", "i": 0}, "b": {"t": "array", "i": 1}}, two)))
    assert protocol.decode_value(header["a"], blobs).tolist() == [1.0, 1.0]
    assert protocol.decode_value(header["b"], blobs).tolist() == [0.0, 0.0, 0.0]


def test_a_value_holds_a_bounded_count_of_numbers_both_ways():
    """What the grader keeps and writes into a report is bounded by numbers, not only bytes: a 16 MB
    array of booleans is 16 million of them. The sandbox's encoder says so instead of sending it."""
    limit = protocol.MAX_VALUE_ELEMENTS
    for value in (np.zeros(limit + 1, dtype=bool), [np.zeros(limit // 2 + 1), np.zeros(limit // 2 + 1)]):
        blobs: list[bytes] = []
        desc = protocol.encode_value(value, blobs)
        header, received = protocol.read_message(Recorder(protocol.pack({"v": desc}, blobs)))
        got = protocol.decode_value(header["v"], received)
        refused = got if isinstance(got, protocol.Unsupported) else got[1]
        assert isinstance(refused, protocol.Unsupported) and "(the grader reads at most 65536)" in repr(refused)
    blobs = [protocol.array_to_npy(np.zeros(limit)), protocol.array_to_npy(np.zeros(1, dtype=bool))]
    header, received = protocol.read_message(Recorder(protocol.pack({"v": {"t": "array", "i": 0}}, blobs)))
    assert protocol.decode_value(header["v"], received).size == limit  # exactly the limit is fine
    forged = {"t": "seq", "kind": "tuple", "items": [{"t": "array", "i": 0}, {"t": "array", "i": 1}]}
    header, received = protocol.read_message(Recorder(protocol.pack({"v": forged}, blobs)))
    with pytest.raises(protocol.WireError, match="a value of more than 65536 numbers, the limit"):
        protocol.decode_value(header["v"], received)
    big = protocol.array_to_npy(np.zeros(1 << 20, dtype=np.int8))
    with pytest.raises(protocol.WireError, match="more than 65536 numbers"):
        protocol.npy_to_array(big, limit)


def test_a_training_chain_of_zero_dimensional_arrays_is_a_wire_error():
    blobs: list[bytes] = []
    header = {k: protocol.encode_value(np.array(1.0), blobs) for k in ("w1s", "w2s")}
    header["y_hats"] = protocol.encode_value(np.zeros(1), blobs)
    with pytest.raises(protocol.WireError, match="malformed training chain"):
        Chain.from_reply(header, blobs)


# --- end to end: what a hostile notebook can make the grader hold ---------------------------

#: Helpers a hostile notebook defines: they find the request being served in the worker's frames
#: and write frames to the grader's channel themselves.
FORGE = r'''
import sys, os, json, struct
import numpy as np

def _serving():
    frame = sys._getframe(1)
    while frame is not None and "token" not in frame.f_locals:
        frame = frame.f_back
    return frame

def _raw(fd, data):
    view = memoryview(data)
    while view:
        view = view[os.write(fd, view):]

def _frame(header, blobs, count=None):
    head = json.dumps(header).encode()
    parts = [b"GRDR" + struct.pack("<II", len(head), len(blobs) if count is None else count), head]
    for blob in blobs:
        parts += [struct.pack("<Q", len(blob)), blob]
    return b"".join(parts)

def _reply(value, blobs):
    """Answer the call being served, as the worker would, with ``value`` (an encoded value) and ``blobs``."""
    frame = _serving()
    token, header = frame.f_locals["token"], frame.f_locals["header"]
    reply = {"status": "ok", "value": value}
    if header.get("batched"):
        message = {"op": "results", "token": token, "replies": [reply], "overdue": False}
    else:
        message = {"op": "result", "token": token, **reply}
    _raw(frame.f_globals["CHANNEL_OUT"], _frame(message, blobs))
'''

#: An 8 MB ``.npy`` header whose shape has four million dimensions: parsing it (``ast.literal_eval``)
#: would cost the grader seconds and gigabytes before any check of the shape could run.
HUGE_NPY_HEADER = FORGE + r'''
def forward(x, w1, w2):
    text = "{'descr': '<f8', 'fortran_order': False, 'shape': (" + "1," * 3_999_970 + "), }"
    text = text + " " * (8_000_000 - len(text) - 1) + "\n"
    blob = b"\x93NUMPY\x02\x00" + struct.pack("<I", len(text)) + text.encode("latin1") + np.zeros(1).tobytes()
    _reply({"t": "array", "i": 0, "scalar": False}, [blob])
    return activation(x @ w1) @ w2
'''

#: A cell declares 200 arrays of 16 MB (3.2 GB) and sends them as fast as the grader reads.
MANY_LARGE_BLOBS = FORGE + r'''
chunk = b"\0" * (16 << 20)
fd = _serving().f_globals["CHANNEL_OUT"]
try:
    _raw(fd, _frame({"op": "cell"}, [], count=200))
    for _ in range(200):
        _raw(fd, struct.pack("<Q", len(chunk)) + chunk)
except OSError:
    pass
'''

#: Every forward call answers three times, each answer carrying 16 MB more than its value: each
#: message is within its limit, and together they pass what one process may send.
PROCESS_BUDGET = FORGE + r'''
def forward(x, w1, w2):
    encode = _serving().f_globals["array_to_npy"]
    for _ in range(3):
        _reply({"t": "array", "i": 0, "scalar": False}, [encode(np.zeros(1)), bytes(16 << 20)])
    return activation(x @ w1) @ w2
'''

AMPLIFIED = FORGE + r'''
def forward(x, w1, w2):
    blob = _serving().f_globals["array_to_npy"](np.zeros(60_000))
    inner = {"t": "seq", "kind": "list", "items": [{"t": "array", "i": 0}] * 64}
    _reply({"t": "seq", "kind": "list", "items": [inner] * 64}, [blob])
    return activation(x @ w1) @ w2
'''

#: The peak RSS of the process that runs it. Not ``ru_maxrss``: a child started with vfork (as
#: ``subprocess`` does) inherits its parent's high-water mark at exec, so the test process's own
#: size would be counted. ``VmHWM`` belongs to the memory map the program itself built.
PEAK_RSS = r'''
def peak_rss_mb():
    try:
        with open("/proc/self/status") as status:
            for line in status:
                if line.startswith("VmHWM:"):
                    return int(line.split()[1]) / 1024
    except OSError:
        pass
    import resource
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
'''

#: Runs in a fresh Python: grade one notebook (or call its forward directly), write the report and
#: feedback files a batch writes, print the outcome and this process's peak RSS.
CHILD = PEAK_RSS + r'''
import json, sys
from pathlib import Path
from grader.grade import Options, grade_notebook
from grader.sandbox.limits import Limits
from grader.rubric import load_rubric

mode, notebook, out, limits, fork = sys.argv[1], Path(sys.argv[2]), Path(sys.argv[3]), json.loads(sys.argv[4]), sys.argv[5] == "1"
options = Options(limits=Limits(**limits))
server = None
if fork:
    from grader.sandbox.forkserver import ForkServer
    server = ForkServer()
    import dataclasses
    options = dataclasses.replace(options, server=server)
result = {}
if mode == "grade":
    from grader.batch.run import feedback_files
    from grader.render import json_report
    report = grade_notebook(notebook, load_rubric(None), options)
    document = json_report.to_dict(report)
    out.mkdir(parents=True, exist_ok=True)
    (out / "report.json").write_text(json.dumps(document))
    for kind, text in feedback_files(report).items():
        (out / f"feedback.{kind}").write_text(text)
    result = {"score": report.score, "max": report.max_score,
              "checks": {c.id: c.passed for c in report.checks},
              "cells": [[c.status, c.error] for c in report.cells]}
else:
    import numpy as np
    from grader.sandbox.process import CallRequest, SubprocessSandbox
    from grader.load import load_notebook
    cells = load_notebook(notebook).code_cells
    with SubprocessSandbox(Limits(**limits), graded=("activation", "d_activation", "forward", "backward")) as sandbox:
        sandbox.run_notebook(cells)
        x, w1, w2 = np.ones(2), np.ones((2, 2)), np.ones(2)
        outcomes = sandbox.call_many([CallRequest("forward", (x, w1, w2), False)] * 12)
    result = {"calls": [[o.status, o.error, None if o.value is None else int(np.asarray(o.value).nbytes)]
                        for o in outcomes]}
if server is not None:
    server.close()
result["rss_mb"] = peak_rss_mb()
print(json.dumps(result))
'''


def run_child(tmp_path: Path, cells: list[str], mode: str = "grade", fork: bool = False) -> dict[str, Any]:
    tmp_path.mkdir(parents=True, exist_ok=True)
    notebook = tmp_path / "hostile.ipynb"
    notebook.write_text(notebook_json(cells))
    out = tmp_path / "out"
    done = subprocess.run([sys.executable, "-c", CHILD, mode, str(notebook), str(out), json.dumps(LIMITS),
                           "1" if fork else "0"], capture_output=True, text=True, cwd=REPO, timeout=300)
    assert done.returncode == 0, done.stderr[-3000:]
    result = json.loads(done.stdout.strip().splitlines()[-1])
    if mode == "grade":
        result["report"] = json.loads((out / "report.json").read_text())
        result["files"] = sorted(p.name for p in out.iterdir())
    return result


def check_message(result: dict[str, Any], check_id: str) -> str:
    (check,) = [c for c in result["report"]["checks"] if c["id"] == check_id]
    return json.dumps(check)


@pytest.fixture(scope="module")
def baseline(tmp_path_factory) -> dict[str, Any]:
    """The correct notebook, graded the same way: its peak RSS is what the others are compared to."""
    return run_child(tmp_path_factory.mktemp("baseline"), CORRECT_CELLS)


@pytest.mark.slow
def test_baseline_scores_full_marks_within_the_bound(baseline):
    assert baseline["score"] == baseline["max"] == 100
    assert baseline["rss_mb"] < RSS_BOUND_MB


@pytest.mark.slow
@pytest.mark.parametrize("fork", [False, True], ids=["fresh process", "fork server"])
def test_a_huge_npy_header_fails_the_call_closed_and_costs_nothing(tmp_path, baseline, fork):
    result = run_child(tmp_path, CORRECT_CELLS + [HUGE_NPY_HEADER], fork=fork)
    checks = result["checks"]
    assert not checks["forward.values"] and not checks["training.converges"]
    assert checks["activation.values"] and checks["backward.values"]  # the other functions keep their credit
    message = check_message(result, "forward.values")
    assert "crashed the sandbox" in message
    assert "it broke the grader's protocol (an array header of 8000000 bytes, over numpy's limit of 10000)" in message
    assert "integrity_protocol_tamper" in {d["id"] for d in result["report"]["diagnoses"]}
    assert result["rss_mb"] < RSS_BOUND_MB and result["rss_mb"] < baseline["rss_mb"] + 100
    assert result["files"] == ["feedback.gradescope", "feedback.html", "feedback.md", "report.json"]


@pytest.mark.slow
def test_a_message_of_many_large_arrays_stops_at_its_budget(tmp_path, baseline):
    result = run_child(tmp_path, CORRECT_CELLS + [MANY_LARGE_BLOBS])
    status, error = result["cells"][-1]
    assert status == "crashed"
    assert error == ("this cell stopped the sandbox: stopped: it broke the grader's protocol "
                     "(a message of more than 20 MB of arrays, its limit)")
    assert result["score"] == 100  # the functions were defined before: the forging cell costs only itself
    assert "integrity_protocol_tamper" in {d["id"] for d in result["report"]["diagnoses"]}
    assert result["rss_mb"] < RSS_BOUND_MB and result["rss_mb"] < baseline["rss_mb"] + 100


@pytest.mark.slow
def test_many_messages_stop_at_what_one_process_may_send(tmp_path, baseline):
    result = run_child(tmp_path, CORRECT_CELLS + [PROCESS_BUDGET], mode="calls")
    calls = result["calls"]
    crashed = [i for i, (status, _, _) in enumerate(calls) if status == "crashed"]
    assert crashed, calls
    first = crashed[0]
    assert "the sandbox sent more than 24 MB in all" in calls[first][1]
    assert all(status == "crashed" for status, _, _ in calls[first:])  # a broken function is not called again
    kept = sum(size or 0 for _, _, size in calls)
    assert kept <= 5 * protocol.FROM_SANDBOX_PER_PROCESS  # at most what the processes of one sandbox may send
    assert result["rss_mb"] < RSS_BOUND_MB
    graded = run_child(tmp_path / "graded", CORRECT_CELLS + [PROCESS_BUDGET])
    assert not graded["checks"]["forward.values"]
    assert graded["rss_mb"] < RSS_BOUND_MB
    assert "report.json" in graded["files"]


@pytest.mark.slow
def test_an_array_named_many_times_fails_the_call_not_the_grader(tmp_path, baseline):
    result = run_child(tmp_path, CORRECT_CELLS + [AMPLIFIED])
    assert not result["checks"]["forward.values"]
    assert "the same array is used twice in one message" in check_message(result, "forward.values")
    assert result["rss_mb"] < RSS_BOUND_MB and result["rss_mb"] < baseline["rss_mb"] + 100


@pytest.mark.slow
def test_an_honest_function_that_returns_millions_of_numbers_costs_only_its_call(tmp_path, baseline):
    """Not forged: the worker itself describes a 16 MB boolean array (16 million numbers, which the
    report would list one by one) as too large, so the call fails as that function's answer."""
    huge = "def forward(x, w1, w2):\n    return np.zeros(16_000_000, dtype=bool)"
    result = run_child(tmp_path, CORRECT_CELLS + [huge])
    assert not result["checks"]["forward.values"] and result["checks"]["backward.values"]
    assert "<ndarray of 16000000 numbers (the grader reads at most 65536)>" in check_message(result, "forward.values")
    assert "integrity_protocol_tamper" not in {d["id"] for d in result["report"]["diagnoses"]}
    assert result["rss_mb"] < RSS_BOUND_MB and result["rss_mb"] < baseline["rss_mb"] + 100
    assert len(json.dumps(result["report"])) < 1 << 20


# --- a 5 MB code cell ----------------------------------------------------------------------------

#: A comment and a string literal, 5 MB together, in one code cell of an otherwise correct notebook.
BIG_CELL = "# " + "x" * 3_000_000 + "\nnotes = '" + "y" * 2_300_000 + "'\nprint(len(notes))\n"


@pytest.mark.slow
@pytest.mark.parametrize("fork", [False, True], ids=["fresh process", "fork server"])
def test_a_five_megabyte_code_cell_is_graded_like_any_other(tmp_path, baseline, fork):
    assert len(BIG_CELL) > 5_000_000
    result = run_child(tmp_path, CORRECT_CELLS + [BIG_CELL], fork=fork)
    assert result["score"] == result["max"] == 100
    assert result["cells"][-1] == ["ok", None]
    assert "2300000" in result["report"]["output_excerpt"]
    assert result["rss_mb"] < RSS_BOUND_MB


@pytest.mark.slow
def test_cell_sources_reach_the_sandbox_exactly(tmp_path):
    """Sources travel as UTF-8 blobs: non-ASCII text arrives as written, and a lone surrogate (which a
    notebook's JSON can hold) costs its own cell only, never the message that carries every cell."""
    from grader.grade import Options, grade_notebook
    from grader.sandbox.limits import Limits
    from grader.rubric import load_rubric

    path = tmp_path / "nb.ipynb"
    path.write_text(notebook_json(CORRECT_CELLS + ["s = 'é ✓ 😀'\nprint(ascii(s), len(s))", "x = 1  # \ud83d"]))
    report = grade_notebook(path, load_rubric(None), Options(limits=Limits(**LIMITS)))
    assert report.score == 100
    assert "'\\xe9 \\u2713 \\U0001f600' 5" in report.output_excerpt
    assert [c.status for c in report.cells][-2] == "ok" and report.cells[-1].status in ("ok", "error")


# --- batch inputs --------------------------------------------------------------------------------


def notebook_bytes(cells: list[str], padding: int = 0) -> bytes:
    """A valid notebook file, made ``padding`` bytes longer with trailing whitespace (still valid JSON)."""
    return notebook_json(cells).encode() + b" " * padding


def stored_zip(path: Path, members: dict[str, bytes | Path]) -> Path:
    with zipfile.ZipFile(path, "w", zipfile.ZIP_STORED) as archive:
        for name, data in members.items():
            if isinstance(data, Path):
                archive.write(data, name)
            else:
                archive.writestr(name, data)
    return path


def zip_bomb(folder: Path, name: str, notebooks: int, size: int) -> Path:
    """``name``: a small deflated zip holding a student's own (stored) zip of ``notebooks`` notebooks of
    ``size`` bytes each; whitespace, so it compresses a thousandfold."""
    inner = stored_zip(folder / f"{name}.inner.zip",
                       {f"hw/nb{i}.ipynb": notebook_bytes(CORRECT_CELLS + [f"x = {i}"], size) for i in range(notebooks)})
    outer = folder / f"{name}.zip"
    with zipfile.ZipFile(outer, "w", zipfile.ZIP_DEFLATED) as archive:
        archive.write(inner, "student_upload.zip")
    inner.unlink()
    return outer


COLLECT_CHILD = PEAK_RSS + r'''
import json, sys
import grader.batch.collect as collect
budgets = json.loads(sys.argv[1])
for name, value in budgets.items():
    setattr(collect, name, value)
result = collect.collect(sys.argv[2:], names=("activation", "d_activation", "forward", "backward"))
print(json.dumps({"submissions": [s.source for s in result.submissions],
                  "problems": [[p.source, p.message] for p in result.problems],
                  "rss_mb": peak_rss_mb()}))
'''


def collect_in_child(budgets: dict[str, int], paths: list[Path]) -> dict[str, Any]:
    done = subprocess.run([sys.executable, "-c", COLLECT_CHILD, json.dumps(budgets), *map(str, paths)],
                          capture_output=True, text=True, cwd=REPO, timeout=600)
    assert done.returncode == 0, done.stderr[-3000:]
    return json.loads(done.stdout)


@pytest.fixture(scope="module")
def bombs(tmp_path_factory) -> list[Path]:
    """Three zip bombs of 4 x 25 MB notebooks each (100 MB inside, under 1 MB each on disk)."""
    folder = tmp_path_factory.mktemp("bombs")
    return [zip_bomb(folder, f"bomb{i}", 4, 25 << 20) for i in range(3)]


@pytest.mark.slow
def test_zip_bombs_in_one_run_are_bounded_per_archive_and_per_run(bombs):
    assert all(b.stat().st_size < 1 << 20 for b in bombs)
    upload = [f"{bomb}!student_upload.zip" for bomb in bombs]
    # Each archive stops at its own limit: every notebook or archive not collected is a row saying why.
    result = collect_in_child({"MAX_ARCHIVE_BYTES": 80 << 20}, bombs)
    assert result["submissions"] == []
    assert result["problems"] == [[source, f"{source} was not collected because {bomb} reached the limit of 80 MB "
                                   "decompressed from one archive; extract the archive and pass the folder instead."]
                                  for bomb, source in zip(bombs, upload)]
    # The run stops at its own, over all archives: each bomb costs 200 MB (its inner zip, then its notebooks),
    # two fit in 450 MB, the third does not.
    result = collect_in_child({"MAX_RUN_ARCHIVE_BYTES": 450 << 20}, bombs)
    problems = dict(result["problems"])
    assert len(problems) == 3 and "holds 4 notebooks" in problems[f"{upload[0]}!hw/nb*"]
    assert problems[upload[2]] == (
        f"{upload[2]} was not collected because this run reached its limit of 450 MB decompressed from archives; "
        "grade the remaining archives in a separate run.")
    # The stored zips and their notebooks were never held in memory: less than one bomb's 100 MB.
    assert result["rss_mb"] < 100


@pytest.mark.slow
def test_zip_bombs_within_the_budget_are_read_without_holding_them(bombs):
    result = collect_in_child({}, bombs)  # the default budgets: 600 MB decompressed in all, all collected
    assert result["problems"] == [
        [f"{bomb}!student_upload.zip!hw/nb*", f"{bomb}!student_upload.zip!hw/nb* holds 4 notebooks "
         "(nb0.ipynb, nb1.ipynb, nb2.ipynb, nb3.ipynb) and none of them is clearly the one "
         "to grade (4 of them define the same 4 of activation, d_activation, forward and backward); ask the "
         "student to submit only the notebook to grade."] for bomb in bombs]
    assert result["rss_mb"] < 100  # 12 notebooks of 25 MB were hashed, none kept


def test_the_member_count_of_an_archive_is_checked_before_its_directory_is_parsed(tmp_path, monkeypatch):
    archive = stored_zip(tmp_path / "many.zip", {f"m{i}.txt": b"" for i in range(50)})
    parsed: list[object] = []
    real = zipfile.ZipFile

    def counting(*args, **kwargs):
        parsed.append(args[0])
        return real(*args, **kwargs)

    monkeypatch.setattr(collect_module, "MAX_ARCHIVE_MEMBERS", 40)
    monkeypatch.setattr(collect_module.zipfile, "ZipFile", counting)
    result = collect_module.collect([archive])
    assert parsed == []
    assert [(p.source, p.message) for p in result.problems] == [(
        str(archive), f"{archive} has 50 members, over the limit of 40 for one archive, so it was not opened; "
                      "extract it and pass the folder instead.")]


def test_the_run_member_budget_spans_archives(tmp_path, monkeypatch):
    monkeypatch.setattr(collect_module, "MAX_RUN_MEMBERS", 5)
    first = stored_zip(tmp_path / "a.zip", {f"s{i}.ipynb": notebook_bytes([f"x = {i}"]) for i in range(3)})
    second = stored_zip(tmp_path / "b.zip", {f"t{i}.ipynb": notebook_bytes([f"y = {i}"]) for i in range(3)})
    third = stored_zip(tmp_path / "c.zip", {"u.ipynb": notebook_bytes(["z = 0"])})
    result = collect_module.collect([first, second, third])
    assert [s.source for s in result.submissions] == [f"{first}!s{i}.ipynb" for i in range(3)]
    reason = "this run reached its limit of 5 archive members; grade the remaining archives in a separate run."
    assert [(p.source, p.message) for p in result.problems] == [
        (str(second), f"{second} was not collected because {reason}"),
        (str(third), f"{third} was not collected because {reason}"),
    ]


def test_a_submission_of_many_notebooks_is_one_row(tmp_path):
    """300 notebooks in one Moodle submission: one row, from the one that defines the graded functions."""
    root = tmp_path / "export"
    folder = root / "Ann Lee_123456_assignsubmission_file_"
    folder.mkdir(parents=True)
    for i in range(300):
        (folder / f"scratch{i:03}.ipynb").write_bytes(notebook_bytes([f"x = {i}"]))
    (folder / "final.ipynb").write_bytes(notebook_bytes(CORRECT_CELLS))
    result = collect_module.collect([root], names=NAMES)
    assert [(s.id, s.student, Path(s.source).name) for s in result.submissions] == [
        ("moodle-123456", "Ann Lee", "final.ipynb")]
    assert result.submissions[0].note.startswith(
        "This submission holds 301 notebooks: final.ipynb was graded because it defines the most of activation, "
        "d_activation, forward and backward (not graded: scratch000.ipynb, scratch001.ipynb, scratch002.ipynb, "
        "scratch003.ipynb, scratch004.ipynb and 295 more).")
    assert result.problems == []


def test_ties_are_broken_by_the_template_name_or_become_one_error_row(tmp_path):
    export = tmp_path / "canvas.zip"
    with zipfile.ZipFile(export, "w") as archive:
        archive.writestr("leeann_34567_11111_draft.ipynb", notebook_bytes(CORRECT_CELLS))
        archive.writestr("leeann_34567_11112_simple_nn_seed.ipynb", notebook_bytes(CORRECT_CELLS + ["x = 1"]))
        archive.writestr("kimbo_45678_11113_a.ipynb", notebook_bytes(CORRECT_CELLS))
        archive.writestr("kimbo_45678_11114_b.ipynb", notebook_bytes(CORRECT_CELLS + ["x = 2"]))
    result = collect_module.collect([export], template="rubrics/simple_nn_seed.ipynb", names=NAMES)
    assert [(s.id, s.source.rsplit("!", 1)[1]) for s in result.submissions] == [
        ("canvas-34567", "leeann_34567_11112_simple_nn_seed.ipynb")]
    assert "because it is named like the assignment (simple_nn_seed.ipynb)" in result.submissions[0].note
    (problem,) = result.problems
    assert (problem.id, problem.student, problem.source) == ("canvas-45678", "kimbo", f"{export}!kimbo_45678_1111*")
    assert problem.message == (
        f"{export}!kimbo_45678_1111* holds 2 notebooks (kimbo_45678_11113_a.ipynb, kimbo_45678_11114_b.ipynb) "
        "and none of them is clearly the one to grade (2 of them define the same 4 of activation, d_activation, "
        "forward and backward); ask the student to submit only the notebook to grade.")
    without = collect_module.collect([export], names=NAMES)
    assert [p.id for p in without.problems] == ["canvas-45678", "canvas-34567"]  # sorted by source


@pytest.mark.slow
def test_a_collection_holds_references_and_reads_each_notebook_when_asked(tmp_path):
    big = notebook_bytes(CORRECT_CELLS, 5 << 20)
    folder = tmp_path / "class"
    folder.mkdir()
    for i in range(20):
        (folder / f"s{i}.ipynb").write_bytes(big + b" " * i)
    stored_zip(folder / "bob.zip", {"hw/simple_nn.ipynb": big})
    result = collect_module.collect([folder])
    assert len(result.submissions) == 21
    assert len(pickle.dumps(result)) < 50_000  # 21 notebooks of 5 MB: nothing of them is held
    bob = next(s for s in result.submissions if "bob.zip" in s.source)
    assert pickle.loads(pickle.dumps(bob.ref)).read() == big
    (folder / "s3.ipynb").write_bytes(b"{}")
    s3 = next(s for s in result.submissions if s.source.endswith("s3.ipynb"))
    with pytest.raises(collect_module.NotebookChanged) as info:
        s3.ref.read()
    assert info.value.message == (f"{folder / 's3.ipynb'} changed or disappeared after it was collected (its bytes "
                                  "are not those collected); run the same grader grade command again.")


@pytest.mark.slow
def test_a_batch_with_bombs_and_crowded_submissions_writes_one_clear_row_each(tmp_path, monkeypatch):
    from grader.batch.run import BatchOptions, run_batch

    inputs = tmp_path / "in"
    inputs.mkdir()
    (inputs / "good.ipynb").write_text(notebook_json(CORRECT_CELLS))
    stored_zip(inputs / "alice.zip", {f"nb{j}.ipynb": notebook_bytes([f"x = {j}"]) for j in range(40)})
    stored_zip(inputs / "carol.zip", {"draft.ipynb": notebook_bytes(["x = 1"]), "final.ipynb": notebook_bytes(CORRECT_CELLS)})
    bomb = zip_bomb(inputs, "bomb", 3, 4 << 20)
    monkeypatch.setattr(collect_module, "MAX_ARCHIVE_BYTES", 8 << 20)
    out = tmp_path / "out"
    result = run_batch([str(inputs)], BatchOptions(out=out, jobs=1, limit_overrides=(
        ("cell_timeout_s", 5.0), ("call_timeout_s", 2.0), ("total_timeout_s", 60.0)), names=NAMES))
    rows = {row.submission: row for row in result.rows}
    assert rows[str(inputs / "good.ipynb")].report.score == 100
    alice = rows[f"{inputs / 'alice.zip'}!nb*"]
    assert alice.id == "alice" and alice.report.status == "error"
    assert "holds 40 notebooks" in alice.report.error and "none defines" in alice.report.error
    not_collected = [s for s in rows if s.startswith(f"{bomb}!")]
    assert not_collected == [f"{bomb}!student_upload.zip"]
    assert "reached the limit of 8 MB decompressed from one archive" in rows[not_collected[0]].report.error
    carol = rows[f"{inputs / 'carol.zip'}!final.ipynb"]
    assert carol.id == "carol-final" and carol.report.score == 100
    assert ("This submission holds 2 notebooks: final.ipynb was graded because it defines the most of activation, "
            "d_activation, forward and backward (not graded: draft.ipynb).") in carol.report.warnings
    assert len(result.rows) == 4
    assert (out / "gradebook.csv").is_file() and (out / "reports" / "alice.json").is_file()


def test_a_notebook_changed_after_it_was_collected_is_an_error_row(tmp_path, monkeypatch):
    """The pool process reads the notebook when its turn comes, and checks it is the one collected."""
    from grader.batch import run as batch
    from grader.rubric import load_rubric

    path = tmp_path / "s.ipynb"
    path.write_text(notebook_json(CORRECT_CELLS))
    (submission,) = collect_module.collect([path]).submissions
    path.write_text(notebook_json(CORRECT_CELLS + ["x = 1"]))
    monkeypatch.setitem(batch._worker_state, "rubric", load_rubric(None))
    monkeypatch.setitem(batch._worker_state, "options", batch.Options())
    monkeypatch.setitem(batch._worker_state, "server", None)
    document = batch._grade_in_worker(submission.source, submission.ref, submission.note)["report"]
    assert document["status"] == "error" and document["score"] == 0
    assert document["error"] == (f"{path} changed or disappeared after it was collected (its bytes are not those "
                                 "collected); run the same grader grade command again.")
