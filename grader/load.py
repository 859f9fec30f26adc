"""Load stage: turn a submitted file into the code cells the grader runs.

Only the *source of code cells* matters downstream, so that is all a
:class:`Notebook` keeps; outputs and attachments are dropped as soon as the
JSON is parsed. Anything that stops us from finding those sources raises
:class:`~grader.errors.NotebookError` with one sentence; anything else that is
wrong but harmless (old nbformat, missing or duplicate cell ids, bad metadata)
is repaired or ignored and said in :attr:`Notebook.warnings`.

Why two paths. Measured on this project's venv (Python 3.11, nbformat 5.11,
fastjsonschema available), warm disk cache:

* ``import nbformat``: 76-100 ms (half of it jsonschema, a fifth traitlets);
* first validation: +33-38 ms to compile the fastjsonschema validator;
* validating after that: ~0.4 ms for the seed, ~1 ms for a 30 MB notebook
  (large output strings are only type-checked);
* reading + decoding + ``json.loads`` of a 31 MB notebook of base64 images:
  ~55 ms (up to ~120 ms for the first one in a process).

So validation itself is cheap, but the first one in a process costs ~110-140
ms of imports and compilation, against 0.3 ms for the whole fast load of the
seed. A clean v4 notebook (what Jupyter writes) therefore takes a fast path:
a conservative pure-Python structural check (``_is_clean_v4``) and no nbformat
import at all. Whenever that check has any doubt, the notebook goes through
nbformat: upgrade from v1-v3, id repair, and full schema validation whose
findings become warnings (31 MB that way: ~130-175 ms cold, ~25 ms warm).
The fast check never accepts what the schema rejects (``tests/test_load.py``
checks this against nbformat with Hypothesis), so both paths give the same
answer; the slow one is only slower.

Both paths look at the notebook *after* outputs and attachments are emptied:
those are never read, so problems inside them are not worth a warning, and
emptying them first keeps a 30 MB notebook as fast to check as a small one.
"""
from __future__ import annotations

import ast
import codecs
import errno
import json
import os
import re
import warnings
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeGuard, cast

from grader.errors import NotebookError

if TYPE_CHECKING:  # logging costs ~6 ms to import and only the slow path needs a logger
    import logging

#: Newest v4 minor whose schema this grader knows (nbformat's current one).
KNOWN_V4_MINOR = 5
#: Schema warnings kept before the rest are summarised in one sentence.
MAX_SCHEMA_WARNINGS = 5

_SCRIPT_START = re.compile(r"(import|from|def|class|async def)\s|#|@\w|print\(")
_CELL_ID = re.compile(r"[a-zA-Z0-9_-]{1,64}")
_NOTEBOOK_KEYS = frozenset({"cells", "metadata", "nbformat", "nbformat_minor"})
_CODE_KEYS = frozenset({"cell_type", "execution_count", "metadata", "outputs", "source"})
_TEXT_KEYS = frozenset({"cell_type", "metadata", "source", "attachments"})
_MAGIC = (
    (b"\x89PNG\r\n\x1a\n", "it is a PNG image"),
    (b"\xff\xd8\xff", "it is a JPEG image"),
    (b"GIF8", "it is a GIF image"),
    (b"PK\x03\x04", "it is a zip archive, not a single notebook"),
    (b"PK\x05\x06", "it is an empty zip archive"),
    (b"%PDF-", "it is a PDF document"),
    (b"\x1f\x8b", "it is a gzip-compressed file"),
)
_BOMS = (
    (codecs.BOM_UTF8, "utf-8-sig"),
    (codecs.BOM_UTF32_LE, "utf-32"),  # before UTF-16: its BOM starts the same way
    (codecs.BOM_UTF32_BE, "utf-32"),
    (codecs.BOM_UTF16_LE, "utf-16"),
    (codecs.BOM_UTF16_BE, "utf-16"),
)


@dataclass(frozen=True)
class Cell:
    """One code cell, as the execute stage needs it."""

    #: Position among ALL cells of the (upgraded) notebook, 0-based, so messages
    #: can say "cell 7" and match what the student sees in Jupyter.
    index: int
    #: The cell's source as one string (list-of-lines sources are joined).
    source: str


@dataclass
class Notebook:
    """What the rest of the pipeline needs from a submitted notebook."""

    #: The path or name as given by the caller, for reports.
    path: str
    #: Code cells only, in notebook order.
    code_cells: list[Cell]
    #: The version the file declared, e.g. "4.5" or "3.0" ("unknown" if it declared none).
    nbformat: str
    #: Human sentences about what was upgraded, repaired or tolerated.
    warnings: list[str] = field(default_factory=list)


def load_notebook(path: str | os.PathLike[str]) -> Notebook:
    """Read a notebook file of any nbformat version; raise NotebookError if it is not one."""
    name = os.fspath(path)
    try:
        if os.path.isdir(name):
            # Checked first because Windows reports a folder as "Permission denied".
            raise IsADirectoryError(errno.EISDIR, os.strerror(errno.EISDIR), name)
        data = Path(name).read_bytes()
    except OSError as exc:
        raise NotebookError.from_os_error(_one_line(name), exc) from None
    except ValueError:  # a NUL character in the path
        invalid = OSError(errno.EINVAL, "the path contains a NUL character")
        raise NotebookError.from_os_error(_one_line(name), invalid) from None
    return load_notebook_bytes(data, name)


def load_notebook_bytes(data: bytes, name: str) -> Notebook:
    """Read a notebook from raw bytes (e.g. a zip member); ``name`` is used in messages."""
    raw = _parse_json(_decode(data, name), name)
    return _build_notebook(raw, name)


# --- bytes -> text -> JSON -------------------------------------------------------------


def _fail(name: str, reason: str) -> NotebookError:
    """The one-sentence error for a file that is not a notebook."""
    return NotebookError.not_a_notebook(_one_line(name), reason)


def _one_line(text: str) -> str:
    """Keep messages on one line even when a zip member's name has line breaks."""
    return text.replace("\r", "\\r").replace("\n", "\\n")


def _decode(data: bytes, name: str) -> str:
    """Decode UTF-8 (BOM optional), or UTF-16/32 when a BOM says so; reject binary files."""
    for magic, what in _MAGIC:
        if data.startswith(magic):
            raise _fail(name, what)
    encoding = next((enc for bom, enc in _BOMS if data.startswith(bom)), "utf-8")
    try:
        text = data.decode(encoding)
    except UnicodeDecodeError as exc:
        raise _fail(name, _undecodable_reason(data, encoding, exc)) from None
    if not text.strip():
        raise _fail(name, "the file is empty" if not text else "the file contains only whitespace")
    return text


def _undecodable_reason(data: bytes, encoding: str, exc: UnicodeDecodeError) -> str:
    """Say whether the file is binary or merely text in an encoding we do not read."""
    if encoding != "utf-8":
        return f"its {encoding.upper()} text is damaged (cannot decode at byte {exc.start})"
    if b"\x00" in data[:4096]:
        return "it contains binary data, not text"
    bad = data[exc.start]
    return f"it is not UTF-8 text (byte 0x{bad:02x} at offset {exc.start} cannot be decoded)"


def _parse_json(text: str, name: str) -> Any:
    """Parse JSON, turning each way it can fail into a reason a student can act on."""
    try:
        return json.loads(text)
    except RecursionError:
        raise _fail(name, "its JSON is nested too deeply to read") from None
    except json.JSONDecodeError as exc:
        raise _fail(name, _json_error_reason(text, exc)) from None
    except ValueError as exc:  # e.g. an integer longer than Python's digit limit
        detail = _first_line(str(exc).split(":")[0])
        raise _fail(name, f"its JSON holds a value Python cannot read ({detail})") from None


def _json_error_reason(text: str, exc: json.JSONDecodeError) -> str:
    """Tell truncated JSON, HTML pages and Python scripts apart from other bad JSON."""
    start = text.lstrip()
    if start.startswith("<"):
        return "it is an HTML or XML page, not notebook JSON (a browser may have saved the web page instead of the file)"
    if exc.pos >= len(text.rstrip()) or exc.msg.startswith("Unterminated string"):
        return f"its JSON stops early at line {exc.lineno} (the file looks cut off)"
    if exc.pos == len(text) - len(start) and _looks_like_python(text):
        return "it is a Python script, not notebook JSON"
    return f"it is not valid JSON ({exc.msg} at line {exc.lineno}, column {exc.colno})"


def _looks_like_python(text: str) -> bool:
    """True if the text starts like a script, or parses as Python and does more than name a value.

    The first test catches scripts with syntax errors (students' scripts often
    have them); the second rejects ``hello``, which parses but is not a script.
    """
    if _SCRIPT_START.match(text.lstrip()):
        return True
    try:
        module = ast.parse(text)
    except (SyntaxError, ValueError, RecursionError, MemoryError, OverflowError):
        return False
    trivial = (ast.Name, ast.Constant)
    return any(not (isinstance(node, ast.Expr) and isinstance(node.value, trivial)) for node in module.body)


def _first_line(text: str, limit: int = 120) -> str:
    """First line of a message, shortened: warnings and errors are one line each."""
    line = text.strip().splitlines()[0] if text.strip() else ""
    return line if len(line) <= limit else line[: limit - 3] + "..."


# --- JSON -> Notebook --------------------------------------------------------------------


def _build_notebook(raw: Any, name: str) -> Notebook:
    """Check that the JSON is a notebook, normalise it to v4, and keep the code cells."""
    if not isinstance(raw, dict):
        raise _fail(name, f"it holds {_json_kind(raw)}, not a notebook object")
    major, minor, declared, notes = _version(raw, name)
    _drop_payload(raw, major)
    if major == 4 and _is_clean_v4(raw):
        cells, notes_cells, _ = _code_cells(raw["cells"])
    else:
        nb4, notes_upgrade = _normalise(raw, major, minor, name)
        notes += notes_upgrade
        cells, notes_cells, bad = _code_cells(nb4["cells"])
        notes += _schema_warnings(nb4, skip_cells=bad)
    notes += notes_cells
    if not cells:
        notes.append("the notebook has no code cells")
    return Notebook(path=name, code_cells=cells, nbformat=declared, warnings=notes)


def _json_kind(value: Any) -> str:
    """Name a JSON value's type the way a student would."""
    if isinstance(value, dict):
        return "a JSON object"
    if isinstance(value, list):
        return "a JSON list"
    if isinstance(value, str):
        return "a JSON string"
    if isinstance(value, bool):
        return "a JSON true/false value"
    if isinstance(value, (int, float)):
        return "a JSON number"
    return "JSON null" if value is None else f"a JSON {type(value).__name__}"


def _version(raw: dict[str, Any], name: str) -> tuple[int, int, str, list[str]]:
    """Find (major, minor, declared version string, warnings); reject JSON that holds no cells."""
    declared = raw.get("nbformat")
    if declared is None:
        major = _guess_major(raw, name)
        return major, 0, "unknown", [f"the notebook did not say which nbformat version it is; it was read as version {major}"]
    if isinstance(declared, bool) or not isinstance(declared, int) or not 1 <= declared <= 4:
        raise _fail(name, f"it declares nbformat {declared!r}, which is not a version this grader reads (1 to 4)")
    key = "cells" if declared in (1, 4) else "worksheets"
    _require_list(raw, key, name)
    minor = raw.get("nbformat_minor")
    if isinstance(minor, bool) or not isinstance(minor, int) or minor < 0:
        # Minor versions exist since nbformat 3; v1 and v2 files never have one.
        note = f"the notebook did not record a valid nbformat minor version; it was read as {declared}.0"
        return declared, 0, f"{declared}.0", [note] if declared >= 3 else []
    return declared, minor, f"{declared}.{minor}", []


def _guess_major(raw: dict[str, Any], name: str) -> int:
    """Version of a notebook that does not declare one: v4 cells have 'source', v1 cells have 'code'/'text'."""
    if "worksheets" in raw:
        _require_list(raw, "worksheets", name)
        return 3
    _require_list(raw, "cells", name)
    cells = [c for c in raw["cells"] if isinstance(c, dict)]
    old = cells and all("source" not in c and ("code" in c or "text" in c) for c in cells)
    return 1 if old else 4


def _require_list(raw: dict[str, Any], key: str, name: str) -> None:
    """A notebook without its list of cells (or worksheets) is not something we can grade."""
    if key not in raw:
        if "cells" not in raw and "worksheets" not in raw:
            raise _fail(name, "it is JSON but has no notebook cells (no 'cells' or 'worksheets' list)")
        raise _fail(name, f"it has no '{key}' list, which its nbformat version requires")
    if not isinstance(raw[key], list):
        raise _fail(name, f"its '{key}' field is {_json_kind(raw[key])}, not a list")


def _drop_payload(raw: dict[str, Any], major: int) -> None:
    """Empty outputs and attachments in place: never read, and they are most of a big file."""
    cells: list[Any] = raw["cells"] if major in (1, 4) else [
        cell for ws in raw["worksheets"] if isinstance(ws, dict) and isinstance(ws.get("cells"), list)
        for cell in ws["cells"]
    ]
    for cell in cells:
        if isinstance(cell, dict):
            if isinstance(cell.get("outputs"), list):
                cell["outputs"] = []
            if isinstance(cell.get("attachments"), dict):
                cell["attachments"] = {}


# --- fast path: is this already a clean v4 notebook? -------------------------------------


def _is_clean_v4(nb: dict[str, Any]) -> bool:
    """Conservative structural check: True only if the nbformat v4 schema surely accepts ``nb``.

    It may say False for a valid notebook (the slow path then validates it
    properly); it must never say True for an invalid one.
    """
    minor = nb.get("nbformat_minor")
    if nb.keys() != _NOTEBOOK_KEYS or not _is_int(minor) or not 0 <= minor <= KNOWN_V4_MINOR:
        return False
    if not _clean_notebook_metadata(nb["metadata"]):
        return False
    with_ids = minor >= 5
    seen: set[str] = set()
    for cell in nb["cells"]:
        if not _clean_cell(cell, with_ids):
            return False
        if with_ids:
            if cell["id"] in seen:
                return False
            seen.add(cell["id"])
    return True


def _is_int(value: Any) -> TypeGuard[int]:
    return isinstance(value, int) and not isinstance(value, bool)


def _is_source(value: Any) -> bool:
    return isinstance(value, str) or (isinstance(value, list) and all(isinstance(s, str) for s in value))


def _clean_notebook_metadata(meta: Any) -> bool:
    """The notebook-level metadata fields the schema types, in their usual shapes."""
    if not isinstance(meta, dict):
        return False
    kernel = meta.get("kernelspec", {"name": "", "display_name": ""})
    language = meta.get("language_info", {"name": ""})
    return (
        isinstance(kernel, dict)
        and isinstance(kernel.get("name"), str)
        and isinstance(kernel.get("display_name"), str)
        and isinstance(language, dict)
        and all(isinstance(v, str) for k, v in language.items() if k != "codemirror_mode")
        and isinstance(language.get("name"), str)
        and isinstance(language.get("codemirror_mode", ""), (str, dict))
        and (_is_int(meta.get("orig_nbformat", 1)) and meta.get("orig_nbformat", 1) >= 1)
        and isinstance(meta.get("title", ""), str)
        and isinstance(meta.get("authors", []), list)
    )


def _clean_cell(cell: Any, with_ids: bool) -> bool:
    """One cell with exactly the keys its type allows and the usual value shapes."""
    if not isinstance(cell, dict):
        return False
    kind = cell.get("cell_type")
    allowed = {"code": _CODE_KEYS, "markdown": _TEXT_KEYS, "raw": _TEXT_KEYS}.get(kind) if isinstance(kind, str) else None
    if allowed is None:
        return False
    keys = set(cell) - {"id"} if with_ids else set(cell)
    required = allowed - {"attachments"}
    if not required <= keys <= allowed or not _is_source(cell["source"]):
        return False
    if with_ids and not (isinstance(cell.get("id"), str) and _CELL_ID.fullmatch(cell["id"])):
        return False
    if kind == "code" and not _clean_code_fields(cell):
        return False
    if "attachments" in cell and cell["attachments"] != {}:
        return False
    return _clean_cell_metadata(cell["metadata"])


def _clean_code_fields(cell: dict[str, Any]) -> bool:
    count = cell["execution_count"]
    return cell["outputs"] == [] and (count is None or (_is_int(count) and count >= 0))


def _clean_cell_metadata(meta: Any) -> bool:
    """Cell metadata keys the schema types; any other key is free-form and accepted."""
    if not isinstance(meta, dict):
        return False
    checks: dict[str, Callable[[Any], bool]] = {
        "collapsed": lambda v: isinstance(v, bool),
        "scrolled": lambda v: isinstance(v, bool) or v == "auto",
        "deletable": lambda v: isinstance(v, bool),
        "editable": lambda v: isinstance(v, bool),
        "format": lambda v: isinstance(v, str),
        "name": lambda v: isinstance(v, str) and v != "" and "\n" not in v and "\r" not in v,
        "tags": _clean_tags,
        "jupyter": lambda v: isinstance(v, dict),
        "execution": lambda v: isinstance(v, dict) and all(isinstance(x, str) for x in v.values()),
    }
    return all(check(meta[key]) for key, check in checks.items() if key in meta)


def _clean_tags(tags: Any) -> bool:
    return (
        isinstance(tags, list)
        and all(isinstance(t, str) and t and not set(t) & {",", "\n", "\r"} for t in tags)
        and len(set(tags)) == len(tags)
    )


# --- slow path: nbformat upgrades, repairs and validates ---------------------------------


def _normalise(raw: dict[str, Any], major: int, minor: int, name: str) -> tuple[dict[str, Any], list[str]]:
    """Bring any version to a v4 dict with valid, unique cell ids; say what changed."""
    notes = _repair_container(raw, major)
    raw["nbformat"], raw["nbformat_minor"] = major, minor
    if major == 4:
        nb4 = raw
        if minor > KNOWN_V4_MINOR:
            notes.append(
                f"the notebook is nbformat 4.{minor}, newer than the 4.{KNOWN_V4_MINOR} this grader knows; "
                "parts it does not know were ignored"
            )
    else:
        nb4, upgrade_notes = _upgrade(raw, major, minor, name)
        notes += upgrade_notes
    if nb4.get("nbformat_minor", 0) >= 5:
        notes += _repair_ids(nb4["cells"])
    return nb4, notes


def _repair_container(raw: dict[str, Any], major: int) -> list[str]:
    """Fix the slips that would make nbformat's converters crash rather than warn."""
    notes = []
    if not isinstance(raw.get("metadata"), dict):
        raw["metadata"] = {}
        if major >= 2:  # v1 notebooks had no metadata at all
            notes.append("the notebook had no valid metadata; empty metadata was used")
    if major in (2, 3):
        notes += _repair_worksheets(raw)
    if major in (1, 2, 3):
        notes += _repair_old_cells(raw, major)
    return notes


def _repair_worksheets(raw: dict[str, Any]) -> list[str]:
    """Old notebooks keep cells in worksheets; a worksheet without a cell list is read as empty."""
    kept, broken = [], 0
    for ws in raw["worksheets"]:
        if not isinstance(ws, dict):
            broken += 1
            continue
        if not isinstance(ws.get("cells"), list):
            ws["cells"] = []
            broken += 1
        ws.setdefault("metadata", {})
        kept.append(ws)
    raw["worksheets"] = kept
    return [f"{_count(broken, 'worksheet')} had no list of cells and {_was(broken)} read as empty"] if broken else []


def _repair_old_cells(raw: dict[str, Any], major: int) -> list[str]:
    """Drop cells of v1-v3 notebooks that are not objects with a cell type (converters need one)."""
    lists = [raw["cells"]] if major == 1 else [ws["cells"] for ws in raw["worksheets"]]
    dropped = 0
    for cells in lists:
        good = [c for c in cells if isinstance(c, dict) and isinstance(c.get("cell_type"), str)]
        dropped += len(cells) - len(good)
        for cell in good:
            if cell["cell_type"] == "code":
                cell["outputs"] = []
            if not isinstance(cell.get("metadata", {}), dict):
                cell["metadata"] = {}
        cells[:] = good
    return [f"{_count(dropped, 'cell')} without a cell type {_was(dropped)} skipped"] if dropped else []


def _upgrade(raw: dict[str, Any], major: int, minor: int, name: str) -> tuple[dict[str, Any], list[str]]:
    """Convert a v1-v3 notebook to v4 with nbformat, capturing what it logs or warns."""
    import nbformat  # lazy: ~100 ms, only paid by notebooks that need it

    notes: list[str] = []
    with _captured(notes, "tolerated before upgrading: "):
        try:
            node = nbformat.versions[major].to_notebook_json(raw, minor=minor)
            nb4 = nbformat.convert(node, 4)
        except (nbformat.ValidationError, ValueError, AttributeError, KeyError, TypeError, IndexError) as exc:
            detail = _first_line(str(exc)) or type(exc).__name__
            raise _fail(name, f"its nbformat {major} structure is damaged ({detail}) and could not be upgraded") from None
    notes.insert(0, f"notebook was nbformat {major} and was upgraded to 4")
    return nb4, notes


@contextmanager
def _captured(notes: list[str], prefix: str) -> Iterator[None]:
    """Turn nbformat's log records and Python warnings into warning sentences, printing nothing.

    nbformat's v3 converter logs schema errors through traitlets' logger; left
    alone they would be printed on stderr. ``warnings.catch_warnings`` is
    process-global, so loads should not run in several threads at once.
    """
    from traitlets.log import get_logger

    logger = get_logger()
    logger = cast("logging.Logger", getattr(logger, "logger", logger))  # a LoggerAdapter when a traitlets app is running

    def keep(record: logging.LogRecord) -> bool:
        notes.append(f"{prefix}{_first_line(record.getMessage())}")
        return False

    logger.addFilter(keep)
    try:
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            yield
    finally:
        logger.removeFilter(keep)
    notes.extend(prefix + _first_line(str(w.message)) for w in caught)


def _repair_ids(cells: list[Any]) -> list[str]:
    """Give every cell a valid, unique id (nbformat >= 4.5 requires one) and count the repairs."""
    missing = invalid = duplicate = 0
    seen: set[str] = set()
    for cell in cells:
        if not isinstance(cell, dict):
            continue
        cell_id = cell.get("id")
        if "id" not in cell:
            missing += 1
        elif not (isinstance(cell_id, str) and _CELL_ID.fullmatch(cell_id)):
            invalid += 1
        elif cell_id in seen:
            duplicate += 1
        else:
            seen.add(cell_id)
            continue
        cell["id"] = _new_id(seen)
    notes = []
    if missing:
        notes.append(f"{_count(missing, 'cell')} had no id; ids were added")
    if invalid:
        notes.append(f"{_count(invalid, 'cell')} had an invalid id; new ids were given")
    if duplicate:
        notes.append(f"{_count(duplicate, 'cell')} repeated an earlier cell's id; new ids were given")
    return notes


def _new_id(seen: set[str]) -> str:
    """A fresh 8-character id like Jupyter's, unique in this notebook."""
    import uuid  # slow path only

    while (cell_id := uuid.uuid4().hex[:8]) in seen:
        pass
    seen.add(cell_id)
    return cell_id


def _schema_warnings(nb4: dict[str, Any], skip_cells: set[int]) -> list[str]:
    """Validate against the nbformat schema and describe each problem as a tolerated warning.

    ``skip_cells`` are cells already warned about while reading code, so one
    problem is not reported twice.
    """
    from nbformat.validator import iter_validate  # lazy, see module docstring

    notes: list[str] = []
    extra = 0
    try:
        with _captured(notes, "tolerated: "):
            for error in iter_validate(nb4):
                path = list(getattr(error, "absolute_path", None) or getattr(error, "path", ()) or ())
                if len(path) >= 2 and path[0] == "cells" and path[1] in skip_cells:
                    continue
                if len(notes) >= MAX_SCHEMA_WARNINGS:
                    extra += 1
                    continue
                notes.append(f"tolerated schema problem in {_where(path)}: {_describe(error)}")
    except Exception as exc:  # noqa: BLE001 - validation is advisory; it must not stop grading
        notes.append(f"the notebook could not be checked against the nbformat schema ({_first_line(str(exc))})")
    if extra:
        notes.append(f"{_count(extra, 'more schema problem')} {_was(extra)} tolerated")
    return notes


def _describe(error: Any) -> str:
    """jsonschema's message, without the repr of a whole cell that 'oneOf' failures carry."""
    if getattr(error, "validator", None) == "oneOf" and isinstance(getattr(error, "instance", None), dict):
        kind = error.instance.get("cell_type", error.instance.get("output_type"))
        return f"it matches none of the allowed shapes (type {kind!r})"
    return _first_line(getattr(error, "message", None) or str(error), 100)


def _where(path: list[Any]) -> str:
    """['cells', 3, 'metadata', 'tags'] -> 'cell 4 metadata.tags' (cells are numbered from 1 everywhere)."""
    if len(path) >= 2 and path[0] == "cells" and isinstance(path[1], int):
        rest = ".".join(str(p) for p in path[2:])
        return f"cell {path[1] + 1}" + (f" {rest}" if rest else "")
    return "notebook " + ".".join(str(p) for p in path) if path else "the notebook"


# --- v4 cells -> Cell ---------------------------------------------------------------------


def _code_cells(cells: list[Any]) -> tuple[list[Cell], list[str], set[int]]:
    """Keep code cells in order; a code cell whose source is unreadable runs as empty.

    Also returns warnings and the indices they are about, so schema validation
    does not report the same cells a second time.
    """
    found: list[Cell] = []
    notes: list[str] = []
    bad: set[int] = set()
    for index, cell in enumerate(cells):
        if not isinstance(cell, dict):
            bad.add(index)
            notes.append(f"cell {index + 1} is {_json_kind(cell)}, not a cell; it was skipped")
            continue
        if cell.get("cell_type") != "code":
            continue
        source = _source_text(cell.get("source"))
        if source is None:
            bad.add(index)
            notes.append(f"cell {index + 1} is a code cell without readable source; it was treated as empty")
            source = ""
        found.append(Cell(index=index, source=source))
    return found, notes, bad


def _source_text(source: Any) -> str | None:
    """nbformat stores source as a string or a list of lines that already end in newlines."""
    if isinstance(source, str):
        return source
    if isinstance(source, list) and all(isinstance(line, str) for line in source):
        return "".join(source)
    return None


def _count(n: int, noun: str) -> str:
    return f"{n} {noun}" + ("" if n == 1 else "s")


def _was(n: int) -> str:
    return "was" if n == 1 else "were"
