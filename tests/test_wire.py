"""The data-only boundary: framing, strict decoding, no pickles."""
import io
import pickle

import numpy as np
import pytest

from grader.sandbox import protocol


def _round_trip(value):
    blobs: list[bytes] = []
    desc = protocol.encode_value(value, blobs)
    header, got_blobs = protocol.read_message(_reader(protocol.pack({"v": desc}, blobs)))
    return protocol.decode_value(header["v"], got_blobs)


def _reader(data: bytes):
    stream = io.BytesIO(data)

    def read_exact(n: int) -> bytes:
        chunk = stream.read(n)
        if len(chunk) < n:
            raise EOFError
        return chunk
    return read_exact


def test_arrays_scalars_tuples_and_lists_round_trip():
    w1, w2 = np.arange(12.0).reshape(3, 4), np.array([1.5, -2.0, 0.0, 3.0], dtype=np.float32)
    got = _round_trip((w1, w2))
    assert isinstance(got, tuple) and np.array_equal(got[0], w1) and got[1].dtype == np.float32
    assert _round_trip([1.0, 2.0]).tolist() == [1.0, 2.0]  # a list of numbers is an array
    assert isinstance(_round_trip([w1, w2]), list)
    scalar = _round_trip(np.float64(2.5))
    assert np.ndim(scalar) == 0 and scalar == 2.5
    assert _round_trip(np.array(3.0)).shape == ()  # 0-d arrays stay 0-d
    assert _round_trip(None) is None


def test_non_numeric_values_become_unsupported_not_objects():
    assert isinstance(_round_trip("PASSED"), protocol.Unsupported)
    assert isinstance(_round_trip({"score": 100}), protocol.Unsupported)
    assert isinstance(_round_trip(np.array([object()], dtype=object)), protocol.Unsupported)


def test_object_and_pickled_payloads_are_refused():
    buffer = io.BytesIO()
    np.save(buffer, np.array([{"a": 1}], dtype=object), allow_pickle=True)
    with pytest.raises(protocol.WireError):
        protocol.npy_to_array(buffer.getvalue())
    with pytest.raises(protocol.WireError):
        protocol.npy_to_array(pickle.dumps(np.zeros(3)))
    buffer = io.BytesIO()
    np.save(buffer, np.array(["a", "b"]))
    with pytest.raises(protocol.WireError, match="non-numeric"):
        protocol.npy_to_array(buffer.getvalue())


@pytest.mark.parametrize("desc", [
    {"t": "array", "i": 5}, {"t": "array", "i": "0"}, {"t": "pickle"}, {"t": "seq", "items": "x"}, ["not", "a", "dict"],
])
def test_malformed_value_descriptions_are_rejected(desc):
    with pytest.raises(protocol.WireError):
        protocol.decode_value(desc, [])


def test_malformed_frames_are_rejected():
    with pytest.raises(protocol.WireError):
        protocol.read_message(_reader(b"EVIL" + b"\0" * 8))
    good = protocol.pack({"op": "x"}, [])
    with pytest.raises(EOFError):
        protocol.read_message(_reader(good[:-2]))
    with pytest.raises(protocol.WireError):
        protocol.read_message(_reader(protocol._HEAD.pack(protocol.MAGIC, 4, 0) + b"[1,]"))


@pytest.mark.parametrize("array", [np.arange(6.0).reshape(2, 3), np.asfortranarray(np.arange(6.0).reshape(2, 3)),
                                   np.array(2.5), np.zeros((0, 3)), np.array([True, False]), np.arange(4, dtype=">i4")])
def test_codec_is_the_npy_format_both_ways(array):
    ours = protocol.array_to_npy(array)
    assert np.array_equal(np.load(io.BytesIO(ours), allow_pickle=False), array)
    buffer = io.BytesIO()
    np.save(buffer, array, allow_pickle=False)
    theirs = protocol.npy_to_array(buffer.getvalue())
    assert theirs.shape == array.shape and np.array_equal(theirs, array)


def test_truncated_or_padded_array_data_is_refused():
    blob = protocol.array_to_npy(np.arange(4.0))
    with pytest.raises(protocol.WireError, match="wrong length"):
        protocol.npy_to_array(blob[:-1])
    with pytest.raises(protocol.WireError, match="wrong length"):
        protocol.npy_to_array(blob + b"\0")
