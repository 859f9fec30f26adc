"""Tests of the load stage: every nbformat version loads, every non-notebook fails in one sentence.

The nbformat project's own test notebooks (in the shared folder next to the
repository) are the corpus of real-world versions and schema slips; generated
fixtures cover what students actually submit by mistake.
"""
from __future__ import annotations

import base64
import codecs
import copy
import json
import logging
import os
import struct
import subprocess
import sys
import warnings
import zipfile
import zlib
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import grader.load as load_module
from grader.errors import EXIT_CANNOT_GRADE, NotebookError
from grader.load import Cell, Notebook, load_notebook, load_notebook_bytes

REPO = Path(__file__).resolve().parents[1]
SEED = REPO / "examples" / "simple_nn_seed.ipynb"
SHARED = Path(__file__).resolve().parents[2] / "shared"
NBFORMAT_CORPUS = SHARED / "nbformat-test-notebooks"
needs_corpus = pytest.mark.skipif(
    not NBFORMAT_CORPUS.is_dir(),
    reason=f"{NBFORMAT_CORPUS} is absent: the nbformat test notebooks live in the shared/ folder next to the repository",
)

# --- helpers ---------------------------------------------------------------------------------


def v4_notebook(cells: list[dict[str, Any]], minor: int = 5) -> dict[str, Any]:
    return {
        "cells": cells,
        "metadata": {"kernelspec": {"display_name": "Python 3", "language": "python", "name": "python3"}},
        "nbformat": 4,
        "nbformat_minor": minor,
    }


def code_cell(source: str | list[str], cell_id: str | None = None, **extra: Any) -> dict[str, Any]:
    cell = {"cell_type": "code", "execution_count": None, "metadata": {}, "outputs": [], "source": source}
    if cell_id is not None:
        cell["id"] = cell_id
    cell.update(extra)
    return cell


def markdown_cell(source: str, cell_id: str | None = None) -> dict[str, Any]:
    cell = {"cell_type": "markdown", "metadata": {}, "source": source}
    if cell_id is not None:
        cell["id"] = cell_id
    return cell


def to_bytes(nb: dict[str, Any]) -> bytes:
    return json.dumps(nb, indent=1, ensure_ascii=False).encode("utf-8")


def write(tmp_path: Path, name: str, data: bytes) -> Path:
    path = tmp_path / name
    path.write_bytes(data)
    return path


def tiny_png() -> bytes:
    """A real 1x1 PNG, built by hand so the test needs no imaging library."""

    def chunk(kind: bytes, body: bytes) -> bytes:
        return struct.pack(">I", len(body)) + kind + body + struct.pack(">I", zlib.crc32(kind + body))

    header = struct.pack(">IIBBBBB", 1, 1, 8, 2, 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IDAT", zlib.compress(b"\x00\xff\x00\x00")) + chunk(b"IEND", b"")


SAMPLE = v4_notebook(
    [
        markdown_cell("# Title", "m1"),
        code_cell(["import numpy as np\n", "x = np.arange(3)"], "c1"),
        markdown_cell("text", "m2"),
        code_cell("def f(z):\n    return z * (z > 0)\n", "c2"),
    ]
)
SAMPLE_CELLS = [Cell(1, "import numpy as np\nx = np.arange(3)"), Cell(3, "def f(z):\n    return z * (z > 0)\n")]


# --- the seed notebook -------------------------------------------------------------------------


def test_seed_has_its_ten_code_cells_with_exact_sources() -> None:
    nb = load_notebook(SEED)
    assert isinstance(nb, Notebook)
    assert nb.path == str(SEED)
    assert nb.nbformat == "4.5"
    assert nb.warnings == []
    assert [c.index for c in nb.code_cells] == [1, 3, 5, 7, 9, 11, 12, 13, 15, 17]
    assert nb.code_cells[0].source == "import numpy as np\nimport matplotlib.pyplot as plt"
    assert nb.code_cells[4].source == "def L(y_hat, y):\n    return 0.5 * (y_hat - y)**2\n\ndef d_L(y_hat, y):\n    return (y_hat - y)"
    backward = nb.code_cells[6].source
    assert backward.startswith("def backward(x, y, y_hat, w1, w2, eta):\n")
    assert "np.outer(d_activation(w2_partials), x)" in backward  # the template's own bug, kept verbatim


def test_seed_sources_match_an_independent_nbformat_read() -> None:
    import nbformat

    reference = nbformat.read(SEED, as_version=4)
    expected = [Cell(i, c.source) for i, c in enumerate(reference.cells) if c.cell_type == "code"]
    assert load_notebook(SEED).code_cells == expected


def test_clean_notebook_loads_without_importing_nbformat() -> None:
    """The fast path is the point of the design: a clean v4 file must not pay for nbformat's import."""
    script = (
        "import sys; from grader.load import load_notebook; "
        f"nb = load_notebook({str(SEED)!r}); assert len(nb.code_cells) == 10; "
        "print('nbformat' in sys.modules, 'jsonschema' in sys.modules)"
    )
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, env=env, check=True)
    assert done.stdout.split() == ["False", "False"]


def test_slow_path_gives_the_same_cells_as_the_fast_path(monkeypatch: pytest.MonkeyPatch) -> None:
    fast = load_notebook(SEED)
    monkeypatch.setattr(load_module, "_is_clean_v4", lambda nb: False)
    slow = load_notebook(SEED)
    assert slow.code_cells == fast.code_cells
    assert slow.warnings == fast.warnings == []


# --- the nbformat project's test notebooks ---------------------------------------------------

# file -> (declared version, code cell indices, fragments that must appear in the warnings;
#          an empty tuple means exactly no warnings)
LOADS: dict[str, tuple[str, list[int], tuple[str, ...]]] = {
    "invalid.ipynb": ("4.0", [3, 5, 6, 8], ("cell 1: 'source' is a required property", "cell 3: it matches none of the allowed shapes (type 'heading')")),
    "invalid_cell_id.ipynb": ("4.5", [0], ("1 cell had an invalid id; new ids were given",)),
    "invalid_unique_cell_id.ipynb": ("4.5", [0, 1], ("1 cell repeated an earlier cell's id; new ids were given",)),
    "many_tracebacks.ipynb": ("4.4", [0], ()),
    "no_min_version.ipynb": ("4.0", [0], ("did not record a valid nbformat minor version; it was read as 4.0",)),
    "test2.ipynb": ("2.0", [1, 3, 5, 12, 14, 18, 20], ("notebook was nbformat 2 and was upgraded to 4",)),
    "test3.ipynb": ("3.0", [3, 5, 6, 8], ("notebook was nbformat 3 and was upgraded to 4",)),
    "test3_no_metadata.ipynb": ("3.0", [3, 5, 6, 8], ("no valid metadata", "notebook was nbformat 3 and was upgraded to 4")),
    "test3_no_min_version.ipynb": ("3.0", [], ("it was read as 3.0", "upgraded to 4", "the notebook has no code cells")),
    "test3_worksheet_with_no_cells.ipynb": ("3.0", [], ("1 worksheet had no list of cells and was read as empty", "no code cells")),
    "test4.5.ipynb": ("4.5", [3, 5, 6, 8], ()),
    "test4.ipynb": ("4.0", [3, 5, 6, 8], ()),
    "test4custom.ipynb": ("4.2", [0, 1], ()),
    "test4docinfo.ipynb": ("4.0", [3, 5, 6, 8], ()),
    "test4jupyter_metadata.ipynb": ("4.0", [0], ()),
    "test4jupyter_metadata_timings.ipynb": ("4.4", [0, 1], ()),
    "test4plus.ipynb": ("4.99", [3, 5, 6, 8, 10], ("nbformat 4.99, newer than the 4.5 this grader knows",)),
    "v4_5_invalid_metadata.ipynb": (
        "4.5",
        [0, 1],
        ("notebook metadata.kernelspec", "notebook metadata.authors", "cell 1 metadata.jupyter"),
    ),
    "v4_5_no_cell_id.ipynb": ("4.5", [0], ("1 cell had no id; ids were added",)),
}
# file -> fragment of the one-sentence error
FAILS: dict[str, str] = {
    "test3_no_worksheets.ipynb": "it is JSON but has no notebook cells (no 'cells' or 'worksheets' list)",
}


@needs_corpus
def test_corpus_table_covers_every_file() -> None:
    present = {p.name for p in NBFORMAT_CORPUS.glob("*.ipynb")}
    assert present == set(LOADS) | set(FAILS)


@needs_corpus
@pytest.mark.parametrize("name", sorted(LOADS))
def test_corpus_notebook_loads(name: str) -> None:
    declared, indices, fragments = LOADS[name]
    nb = load_notebook(NBFORMAT_CORPUS / name)  # any exception other than a return fails here
    assert nb.nbformat == declared
    assert [c.index for c in nb.code_cells] == indices
    if not fragments:
        assert nb.warnings == []
    for fragment in fragments:
        assert any(fragment in w for w in nb.warnings), (fragment, nb.warnings)
    assert all("\n" not in w for w in nb.warnings)


@needs_corpus
@pytest.mark.parametrize("name", sorted(LOADS))
def test_corpus_sources_match_nbformat_where_nbformat_can_read(name: str) -> None:
    import nbformat

    path = NBFORMAT_CORPUS / name
    logger = logging.getLogger("traitlets")
    level = logger.level
    logger.setLevel(logging.CRITICAL)  # nbformat logs schema errors of the invalid files
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # and warns about the ids it repairs
            reference = nbformat.read(path, as_version=4)
    except Exception:  # noqa: BLE001 - nbformat itself cannot read some of these; nothing to compare
        pytest.skip(f"nbformat.read cannot read {name}")
    finally:
        logger.setLevel(level)
    expected = [Cell(i, c.source) for i, c in enumerate(reference.cells) if c.get("cell_type") == "code"]
    assert load_notebook(path).code_cells == expected


@needs_corpus
@pytest.mark.parametrize("name", sorted(FAILS))
def test_corpus_notebook_fails_in_one_sentence(name: str) -> None:
    with pytest.raises(NotebookError) as caught:
        load_notebook(NBFORMAT_CORPUS / name)
    assert FAILS[name] in caught.value.message
    assert name in caught.value.message and "\n" not in caught.value.message


@needs_corpus
def test_corpus_duplicate_ids_are_kept_apart() -> None:
    nb = load_notebook(NBFORMAT_CORPUS / "invalid_unique_cell_id.ipynb")
    assert [c.source for c in nb.code_cells] == ['"foo"', '"foo2"']


# --- files that are not notebooks --------------------------------------------------------------

_VALID = to_bytes(SAMPLE)

NOT_NOTEBOOKS: dict[str, tuple[bytes, str]] = {
    "empty.ipynb": (b"", "the file is empty"),
    "blank.ipynb": (b"  \n\t\r\n   ", "the file contains only whitespace"),
    "truncated.ipynb": (_VALID[: len(_VALID) // 2], "the file looks cut off"),
    "truncated-in-string.ipynb": (_VALID[: _VALID.index(b"import numpy") + 5], "the file looks cut off"),
    "image.ipynb": (tiny_png(), "it is a PNG image"),
    "garbage.ipynb": (bytes(range(256)) * 8, "it contains binary data, not text"),
    "json-list.ipynb": (b"[1, 2, 3]", "it holds a JSON list, not a notebook object"),
    "json-string.ipynb": (b'"cells"', "it holds a JSON string, not a notebook object"),
    "no-cells.ipynb": (b'{"metadata": {}, "nbformat_minor": 5}', "no 'cells' or 'worksheets' list"),
    "cells-number.ipynb": (b'{"cells": 5}', "its 'cells' field is a JSON number, not a list"),
    "v4-cells-dict.ipynb": (b'{"cells": {}, "metadata": {}, "nbformat": 4, "nbformat_minor": 5}', "its 'cells' field is a JSON object, not a list"),
    "v3-no-worksheets-list.ipynb": (b'{"cells": [], "nbformat": 3, "nbformat_minor": 0}', "it has no 'worksheets' list"),
    "future.ipynb": (b'{"cells": [], "metadata": {}, "nbformat": 7, "nbformat_minor": 0}', "it declares nbformat 7"),
    "script.ipynb": (b"import numpy as np\n\n\ndef activation(z):\n    return np.maximum(z, 0)\n", "it is a Python script"),
    "broken-script.ipynb": (b"import numpy as np\ndef activation(z)\n    return z\n", "it is a Python script"),
    "percent-script.ipynb": (b"# %%\nx = 1\n\n# %%\nprint(x)\n", "it is a Python script"),
    "page.ipynb": (b"<!DOCTYPE html>\n<html><body>Notebook</body></html>", "it is an HTML or XML page"),
    "latin1.ipynb": (to_bytes(v4_notebook([code_cell("s = 'café'", "a")])).decode().encode("latin-1"), "it is not UTF-8 text"),
    "bad-utf16.ipynb": (codecs.BOM_UTF16_LE + b"{\x00\x00\xd8", "its UTF-16 text is damaged"),
    "not-json.ipynb": (b"{'cells': []}", "it is not valid JSON (Expecting property name enclosed in double quotes at line 1, column 2)"),
    "deep.ipynb": (b"[" * 200_000 + b"]" * 200_000, "nested too deeply"),
    "broken-v3.ipynb": (
        json.dumps({"metadata": {}, "nbformat": 3, "nbformat_minor": 0,
                    "worksheets": [{"cells": [{"cell_type": "heading", "level": "one", "source": "T"}]}]}).encode(),
        "its nbformat 3 structure is damaged",
    ),
}


def _zip_of_notebook() -> bytes:
    import io

    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as archive:
        archive.writestr("submission/hw.ipynb", _VALID)
    return buffer.getvalue()


NOT_NOTEBOOKS["archive.ipynb"] = (_zip_of_notebook(), "it is a zip archive")


def assert_one_clear_sentence(exc: NotebookError, name: str) -> None:
    message = exc.message
    assert name in message
    assert "\n" not in message and "\r" not in message
    assert message.endswith(".")
    assert "Traceback" not in message
    assert str(exc) == message
    assert exc.exit_code == EXIT_CANNOT_GRADE
    # raised "from None" (or outside any except): no chained library traceback comes with it
    assert exc.__cause__ is None and (exc.__context__ is None or exc.__suppress_context__)


@pytest.mark.parametrize("name", sorted(NOT_NOTEBOOKS))
def test_not_a_notebook_raises_one_sentence(tmp_path: Path, name: str) -> None:
    data, reason = NOT_NOTEBOOKS[name]
    path = write(tmp_path, name, data)
    with pytest.raises(NotebookError) as caught:
        load_notebook(path)
    assert reason in caught.value.message
    assert_one_clear_sentence(caught.value, name)
    assert caught.value.message.startswith(f"{path} is not a Jupyter notebook: ")


def test_bytes_api_names_the_member_it_was_given() -> None:
    with pytest.raises(NotebookError) as caught:
        load_notebook_bytes(b"[]", "export/alice_smith/hw1.ipynb")
    assert_one_clear_sentence(caught.value, "export/alice_smith/hw1.ipynb")


def test_line_breaks_in_a_name_do_not_break_the_message() -> None:
    with pytest.raises(NotebookError) as caught:
        load_notebook_bytes(b"", "evil\nname.ipynb")
    assert "\n" not in caught.value.message and "evil\\nname.ipynb" in caught.value.message


def test_directory_raises_one_sentence(tmp_path: Path) -> None:
    folder = tmp_path / "homework.ipynb"
    folder.mkdir()
    with pytest.raises(NotebookError) as caught:
        load_notebook(folder)
    assert "Is a directory" in caught.value.message
    assert_one_clear_sentence(caught.value, "homework.ipynb")


def test_path_with_nul_raises_one_sentence() -> None:
    with pytest.raises(NotebookError) as caught:
        load_notebook("hw\x00.ipynb")
    assert "NUL" in caught.value.message


def test_missing_file_raises_one_sentence(tmp_path: Path) -> None:
    with pytest.raises(NotebookError) as caught:
        load_notebook(tmp_path / "nowhere.ipynb")
    assert "No such file" in caught.value.message
    assert_one_clear_sentence(caught.value, "nowhere.ipynb")


# --- encodings -----------------------------------------------------------------------------------

UNICODE_NB = v4_notebook([markdown_cell("# Ünïcödé", "m"), code_cell("π = 3.14159  # café ✓\n", "c")])


@pytest.mark.parametrize(
    "encoding",
    ["utf-8", "utf-8-sig", "utf-16", "utf-16-le-bom", "utf-16-be-bom", "utf-32"],
)
def test_text_encodings_with_bom_are_read(tmp_path: Path, encoding: str) -> None:
    text = json.dumps(UNICODE_NB, ensure_ascii=False)
    if encoding == "utf-16-le-bom":
        data = codecs.BOM_UTF16_LE + text.encode("utf-16-le")
    elif encoding == "utf-16-be-bom":
        data = codecs.BOM_UTF16_BE + text.encode("utf-16-be")
    else:
        data = text.encode(encoding)
    nb = load_notebook(write(tmp_path, f"{encoding}.ipynb", data))
    assert nb.code_cells == [Cell(1, "π = 3.14159  # café ✓\n")]
    assert nb.warnings == []


def test_utf16_without_bom_is_rejected(tmp_path: Path) -> None:
    data = json.dumps(UNICODE_NB).encode("utf-16-le")
    with pytest.raises(NotebookError) as caught:
        load_notebook(write(tmp_path, "nobom.ipynb", data))
    assert_one_clear_sentence(caught.value, "nobom.ipynb")


# --- versions, ids, sources ------------------------------------------------------------------------

V3 = {
    "metadata": {"name": "hw"},
    "nbformat": 3,
    "nbformat_minor": 0,
    "worksheets": [
        {
            "metadata": {},
            "cells": [
                {"cell_type": "heading", "level": 1, "metadata": {}, "source": "Homework"},
                {"cell_type": "code", "collapsed": False, "input": ["import numpy as np\n", "a = np.ones(2)"],
                 "language": "python", "metadata": {}, "outputs": [], "prompt_number": 1},
            ],
        },
        {
            "metadata": {},
            "cells": [
                {"cell_type": "markdown", "metadata": {}, "source": "second sheet"},
                {"cell_type": "code", "collapsed": False, "input": "b = a + 1", "language": "python",
                 "metadata": {}, "outputs": [{"output_type": "pyout", "prompt_number": 2, "text": ["2"], "metadata": {}}],
                 "prompt_number": 2},
            ],
        },
    ],
}


def test_v3_notebook_is_upgraded_with_a_warning(tmp_path: Path, capfd: pytest.CaptureFixture[str]) -> None:
    nb = load_notebook(write(tmp_path, "old.ipynb", to_bytes(V3)))
    assert nb.nbformat == "3.0"
    assert nb.warnings == ["notebook was nbformat 3 and was upgraded to 4"]
    # worksheets are flattened: indices count every cell of every sheet
    assert nb.code_cells == [Cell(1, "import numpy as np\na = np.ones(2)"), Cell(3, "b = a + 1")]
    assert capfd.readouterr() == ("", "")


def test_invalid_v3_is_upgraded_and_its_logged_errors_become_warnings(tmp_path: Path, capfd: pytest.CaptureFixture[str]) -> None:
    broken = copy.deepcopy(V3)
    del broken["worksheets"][0]["cells"][1]["language"]  # required in v3; nbformat logs it to stderr
    traitlets_logger = logging.getLogger("traitlets")
    filters_before = list(traitlets_logger.filters)
    nb = load_notebook(write(tmp_path, "old.ipynb", to_bytes(broken)))
    assert any("'language' is a required property" in w for w in nb.warnings), nb.warnings
    assert [c.index for c in nb.code_cells] == [1, 3]
    assert capfd.readouterr() == ("", "")  # nothing printed
    assert traitlets_logger.filters == filters_before  # the capturing filter was removed


def test_v1_notebook_is_upgraded(tmp_path: Path) -> None:
    v1 = {"cells": [{"cell_type": "text", "text": "intro"}, {"cell_type": "code", "code": "x = 1\ny = 2", "prompt_number": 1}], "nbformat": 1}
    nb = load_notebook(write(tmp_path, "v1.ipynb", to_bytes(v1)))
    assert nb.nbformat == "1.0"
    assert nb.warnings == ["notebook was nbformat 1 and was upgraded to 4"]
    assert nb.code_cells == [Cell(1, "x = 1\ny = 2")]


def test_notebook_without_version_is_read_as_v4_with_a_warning() -> None:
    raw = v4_notebook([code_cell("x = 1", "a")])
    del raw["nbformat"], raw["nbformat_minor"]
    nb = load_notebook_bytes(to_bytes(raw), "nover.ipynb")
    assert nb.nbformat == "unknown"
    assert nb.code_cells == [Cell(0, "x = 1")]
    assert "it was read as version 4" in nb.warnings[0]


def test_missing_ids_are_added_with_one_warning() -> None:
    raw = v4_notebook([code_cell("a = 1"), markdown_cell("m", "ok"), code_cell("b = 2")])
    nb = load_notebook_bytes(to_bytes(raw), "noids.ipynb")
    assert nb.warnings == ["2 cells had no id; ids were added"]
    assert nb.code_cells == [Cell(0, "a = 1"), Cell(2, "b = 2")]


def test_ids_are_not_needed_before_4_5() -> None:
    nb = load_notebook_bytes(to_bytes(v4_notebook([code_cell("a = 1")], minor=4)), "old4.ipynb")
    assert nb.warnings == [] and nb.nbformat == "4.4"


def test_source_as_list_or_string_gives_the_same_cells() -> None:
    lines = ["def f(z):\n", "    return z\n", "\n", "y = f(2)"]
    as_list = load_notebook_bytes(to_bytes(v4_notebook([code_cell(lines, "a")])), "list.ipynb")
    as_text = load_notebook_bytes(to_bytes(v4_notebook([code_cell("".join(lines), "a")])), "str.ipynb")
    assert as_list.code_cells == as_text.code_cells == [Cell(0, "def f(z):\n    return z\n\ny = f(2)")]
    assert as_list.warnings == as_text.warnings == []


def test_unreadable_code_source_runs_as_empty_with_one_warning() -> None:
    raw = v4_notebook([code_cell(["ok = 1\n", 5], "a"), code_cell("fine = 2", "b")])
    nb = load_notebook_bytes(to_bytes(raw), "badsrc.ipynb")
    assert nb.code_cells == [Cell(0, ""), Cell(1, "fine = 2")]
    assert nb.warnings == ["cell 1 is a code cell without readable source; it was treated as empty"]


def test_non_object_cells_are_skipped_but_keep_their_position() -> None:
    raw = v4_notebook([7, code_cell("x = 1", "a")])
    nb = load_notebook_bytes(to_bytes(raw), "odd.ipynb")
    assert nb.code_cells == [Cell(1, "x = 1")]
    assert nb.warnings == ["cell 1 is a JSON number, not a cell; it was skipped"]


def test_schema_warnings_are_capped() -> None:
    cells = [code_cell(f"x{i} = {i}", f"c{i}", metadata={"collapsed": "no"}) for i in range(9)]
    nb = load_notebook_bytes(to_bytes(v4_notebook(cells)), "many.ipynb")
    assert len(nb.code_cells) == 9
    schema = [w for w in nb.warnings if w.startswith("tolerated schema problem")]
    assert len(schema) == load_module.MAX_SCHEMA_WARNINGS
    assert nb.warnings[-1] == "4 more schema problems were tolerated"


def test_empty_notebook_loads_with_a_warning() -> None:
    nb = load_notebook_bytes(to_bytes(v4_notebook([])), "empty-nb.ipynb")
    assert nb.code_cells == [] and nb.warnings == ["the notebook has no code cells"]


def test_outputs_and_attachments_never_matter() -> None:
    """Invalid outputs are dropped unread: they are not worth a warning to a student."""
    cell = code_cell("x = 1", "a", outputs=[{"output_type": "bad stream", "text": 1}])
    md = markdown_cell("![img](attachment:a.png)", "m")
    md["attachments"] = {"a.png": {"image/png": 5}}
    nb = load_notebook_bytes(to_bytes(v4_notebook([md, cell])), "outs.ipynb")
    assert nb.code_cells == [Cell(1, "x = 1")] and nb.warnings == []


# --- size -------------------------------------------------------------------------------------------

def big_notebook(megabytes: int = 30) -> bytes:
    """Thirty code cells, each with a ~1 MB base64 image output, plus a markdown attachment."""
    image = base64.b64encode(os.urandom(750_000)).decode()
    cells: list[dict[str, Any]] = []
    for i in range(megabytes):
        output = {"output_type": "display_data", "data": {"image/png": image, "text/plain": ["<Figure>"]}, "metadata": {}}
        cells.append(code_cell([f"plot({i})\n", f"y{i} = {i}"], f"c{i}", outputs=[output], execution_count=i + 1))
    attached = markdown_cell("![](attachment:a.png)", "m")
    attached["attachments"] = {"a.png": {"image/png": image}}
    cells.append(attached)
    return to_bytes(v4_notebook(cells))


def test_thirty_megabyte_notebook_loads(tmp_path: Path) -> None:
    data = big_notebook()
    assert len(data) > 30_000_000
    nb = load_notebook(write(tmp_path, "big.ipynb", data))
    assert nb.warnings == []
    assert len(nb.code_cells) == 30
    assert nb.code_cells[29] == Cell(29, "plot(29)\ny29 = 29")


# --- the fast check must never accept what nbformat's schema rejects --------------------------------

_BASE = v4_notebook(
    [
        markdown_cell("# t", "m0"),
        code_cell(["a = 1\n", "b = 2"], "c1", metadata={"collapsed": False, "tags": ["x"]}),
        {"cell_type": "raw", "id": "r2", "metadata": {"format": "text/plain"}, "source": "raw"},
    ]
)
_BASE["metadata"]["language_info"] = {"name": "python", "version": "3.11", "codemirror_mode": {"name": "ipython"}}

_ODD_VALUES = [None, True, 0, -1, 1.5, "", "a,b", "x\ny", "auto", "$id", "a" * 65, [], ["a", "a"], ["a,b"], [1], {}, {"k": 1}, {"name": "n"}]
_PATHS = [
    ("nbformat_minor",), ("metadata",), ("metadata", "kernelspec"), ("metadata", "kernelspec", "name"),
    ("metadata", "language_info"), ("metadata", "language_info", "name"), ("metadata", "language_info", "codemirror_mode"),
    ("metadata", "orig_nbformat"), ("metadata", "title"), ("metadata", "authors"), ("extra",),
    ("cells", 0, "source"), ("cells", 0, "id"), ("cells", 0, "cell_type"), ("cells", 0, "attachments"), ("cells", 0, "outputs"),
    ("cells", 1, "id"), ("cells", 1, "source"), ("cells", 1, "execution_count"), ("cells", 1, "outputs"), ("cells", 1, "cell_type"),
    ("cells", 1, "metadata"), ("cells", 1, "metadata", "collapsed"), ("cells", 1, "metadata", "scrolled"),
    ("cells", 1, "metadata", "name"), ("cells", 1, "metadata", "tags"), ("cells", 1, "metadata", "jupyter"),
    ("cells", 1, "metadata", "execution"), ("cells", 1, "attachments"), ("cells", 2, "metadata", "format"), ("cells", 2, "id"),
]


def _set(nb: dict[str, Any], path: tuple[Any, ...], value: Any) -> None:
    target: Any = nb
    for key in path[:-1]:
        reachable = (isinstance(target, dict) and key in target) or (
            isinstance(target, list) and isinstance(key, int) and key < len(target)
        )
        if not reachable:
            return  # an earlier mutation removed or replaced the parent
        target = target[key]
    if isinstance(target, dict):
        if value is None and path[-1] not in ("execution_count",):
            target.pop(path[-1], None)  # None also stands for "remove the key"
        else:
            target[path[-1]] = value


def test_fast_check_accepts_the_unmutated_base() -> None:
    assert load_module._is_clean_v4(copy.deepcopy(_BASE))


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.lists(st.tuples(st.sampled_from(_PATHS), st.sampled_from(_ODD_VALUES)), min_size=1, max_size=3))
def test_fast_check_never_accepts_what_the_schema_rejects(mutations: list[tuple[tuple[Any, ...], Any]]) -> None:
    from nbformat.validator import isvalid

    nb = copy.deepcopy(_BASE)
    for path, value in mutations:
        _set(nb, path, copy.deepcopy(value))
    if load_module._is_clean_v4(nb):
        assert isvalid(copy.deepcopy(nb)), mutations
