"""Integrity review: flag submissions that try to reach past the sandbox, for a human to look at.

Runs on the trusted side over the notebook's source (static) and over what the
sandbox reported (its audit hook's notes, and protocol violations the grader
saw itself). It never changes a score: containment and trusted-side verdicts
already make these attempts worthless, and a false alarm must not cost a
student points. It only adds ``integrity_*`` diagnoses so that an instructor
reviewing a class sees who tried what, with the cell and line.
"""
from __future__ import annotations

import ast
import re
from collections import defaultdict
from collections.abc import Callable, Iterable, Sequence
from typing import Any

from grader.load import Cell
from grader.memo import Memo
from grader.model import Diagnosis

#: Pseudo-function the integrity diagnoses are filed under in reports.
NOTEBOOK = "notebook"
MAX_EXAMPLES = 3

GRADER_IMPORT = "integrity_grader_import"
INTROSPECTION = "integrity_introspection"
FILE_ACCESS = "integrity_file_access"
PROTOCOL_TAMPER = "integrity_protocol_tamper"
MONKEYPATCH = "integrity_monkeypatch"
SIGNAL_TAMPER = "integrity_signal_tamper"
SANDBOX_ESCAPE = "integrity_sandbox_escape"

#: What each flag means, as the first words of its message.
EXPLANATIONS = {
    GRADER_IMPORT: "tries to import the grader or its reference solution",
    INTROSPECTION: "inspects the interpreter's modules, objects or frames",
    FILE_ACCESS: "opens files outside its working directory",
    PROTOCOL_TAMPER: "writes to file descriptors it was not given, or broke the grader's protocol",
    MONKEYPATCH: "replaces attributes of numpy or builtins",
    SIGNAL_TAMPER: "changes signal handling or timers (which the grader uses to stop runaway code)",
    SANDBOX_ESCAPE: "tries to change what the sandbox sees or may do (mounts, namespaces, privileges, other processes)",
}
REVIEW = "flagged for human review; the score is unchanged"

_PROTECTED_MODULES = frozenset({"grader", "reference", "rubrics"})
_PATCHABLE = frozenset({"np", "numpy", "builtins", "__builtins__", "math"})
_INTROSPECTION_CALLS = frozenset({"gc.get_objects", "gc.get_referrers", "gc.get_referents", "sys._getframe",
                                  "sys._current_frames", "inspect.stack", "inspect.currentframe",
                                  "inspect.getouterframes"})
_INTROSPECTION_ATTRS = frozenset({"f_back", "f_globals", "f_locals", "__subclasses__", "tb_frame", "gi_frame",
                                  "__globals__", "__closure__", "__code__"})
_FILE_CALLS = frozenset({"open", "io.open", "os.open", "Path", "pathlib.Path", "os.listdir", "os.scandir", "os.walk",
                         "glob.glob", "np.load", "numpy.load", "np.loadtxt", "os.remove", "os.unlink", "shutil.rmtree"})
_FD_CALLS = frozenset({"os.write", "os.read", "os.fdopen", "os.dup2", "os.close", "os.dup"})
_SIGNAL_CALLS = frozenset({"signal.signal", "signal.setitimer", "signal.alarm", "signal.pthread_sigmask",
                           "sys.settrace", "sys.setprofile", "faulthandler.dump_traceback_later"})
#: C functions (reached through ctypes) and os functions that change what a process sees or may do.
_ESCAPE_NAMES = frozenset({"mount", "umount", "umount2", "unshare", "setns", "pivot_root", "chroot", "ptrace",
                           "keyctl", "add_key", "request_key", "capset", "process_vm_readv", "process_vm_writev",
                           "perf_event_open", "init_module", "finit_module", "reboot", "setresuid", "setuid"})
#: Paths whose reading maps the sandbox itself (its mounts, namespaces, other processes).
_ESCAPE_PATHS = ("/proc/self/mountinfo", "/proc/self/mounts", "/proc/self/ns", "/proc/1/", "/proc/self/uid_map",
                 "/sys/fs/cgroup")
_MAGIC_LINE = re.compile(r"^\s*[%!]")
_SAFE_PATHS = ("/dev/null",)


def _dotted(node: ast.AST) -> str | None:
    """``np.random.seed`` for an attribute chain of names, else None."""
    parts = []
    while isinstance(node, ast.Attribute):
        parts.append(node.attr)
        node = node.value
    if isinstance(node, ast.Name):
        parts.append(node.id)
        return ".".join(reversed(parts))
    return None


def _suspicious_path(value: object) -> bool:
    if not isinstance(value, str) or value in _SAFE_PATHS:
        return False
    return value.startswith(("/", "~")) or value.startswith("..") or "/.." in value


class _Scanner(ast.NodeVisitor):
    """Collects (flag, line, what) for the flagged constructs of a tree.

    ``visit`` is ``ast.NodeVisitor``'s recursive walk. ``scan`` finds the same
    hits in the same order (pre-order, fields in order: each ``check_*`` runs
    before the node's children) with an explicit stack and a dispatch on the
    few node types that can be flagged, about three times faster. A tree deeper
    than ``MAX_FAST_DEPTH`` goes through ``visit`` instead, so that a tree too
    deep for the recursion limit still raises ``RecursionError`` (and is then
    scanned line by line) exactly as before.
    """

    MAX_FAST_DEPTH = 100

    def __init__(self) -> None:
        self.hits: list[tuple[str, int, str]] = []
        self._checks: dict[type, Callable[[Any], None]] = {
            ast.Import: self.check_Import, ast.ImportFrom: self.check_ImportFrom,
            ast.Attribute: self.check_Attribute, ast.Call: self.check_Call, ast.Constant: self.check_Constant,
            ast.Assign: self.check_Assign, ast.AugAssign: self.check_AugAssign}

    def scan(self, tree: ast.AST) -> bool:
        """Walk ``tree`` without recursion; False (hits incomplete) when it is deeper than MAX_FAST_DEPTH."""
        checks, children_of = self._checks, ast.iter_child_nodes
        stack: list[tuple[ast.AST, int]] = [(tree, 0)]
        while stack:
            node, depth = stack.pop()
            if depth > self.MAX_FAST_DEPTH:
                return False
            check = checks.get(type(node))
            if check is not None:
                check(node)
            children = [(child, depth + 1) for child in children_of(node)]
            children.reverse()
            stack.extend(children)
        return True

    def visit_Import(self, node: ast.Import) -> None:
        self.check_Import(node)
        self.generic_visit(node)

    def visit_ImportFrom(self, node: ast.ImportFrom) -> None:
        self.check_ImportFrom(node)
        self.generic_visit(node)

    def visit_Attribute(self, node: ast.Attribute) -> None:
        self.check_Attribute(node)
        self.generic_visit(node)

    def visit_Call(self, node: ast.Call) -> None:
        self.check_Call(node)
        self.generic_visit(node)

    def visit_Constant(self, node: ast.Constant) -> None:
        self.check_Constant(node)

    def visit_Assign(self, node: ast.Assign) -> None:
        self.check_Assign(node)
        self.generic_visit(node)

    def visit_AugAssign(self, node: ast.AugAssign) -> None:
        self.check_AugAssign(node)
        self.generic_visit(node)

    def _hit(self, flag: str, node: ast.AST, what: str) -> None:
        self.hits.append((flag, getattr(node, "lineno", 0), what))

    def check_Import(self, node: ast.Import) -> None:
        for alias in node.names:
            if alias.name.split(".")[0] in _PROTECTED_MODULES:
                self._hit(GRADER_IMPORT, node, f"import {alias.name}")

    def check_ImportFrom(self, node: ast.ImportFrom) -> None:
        if node.module and node.module.split(".")[0] in _PROTECTED_MODULES:
            self._hit(GRADER_IMPORT, node, f"from {node.module} import ...")

    def check_Attribute(self, node: ast.Attribute) -> None:
        name = _dotted(node)
        if name == "sys.modules":
            self._hit(INTROSPECTION, node, "sys.modules")
        elif node.attr in _ESCAPE_NAMES and (name or "").split(".")[0] not in ("np", "numpy"):
            self._hit(SANDBOX_ESCAPE, node, f".{node.attr}")
        elif node.attr in _INTROSPECTION_ATTRS:
            self._hit(INTROSPECTION, node, f".{node.attr}")

    def check_Call(self, node: ast.Call) -> None:
        name = _dotted(node.func) or ""
        first = node.args[0] if node.args else None
        literal = first.value if isinstance(first, ast.Constant) else None
        if name in ("__import__", "importlib.import_module") and isinstance(literal, str) \
                and literal.split(".")[0] in _PROTECTED_MODULES:
            self._hit(GRADER_IMPORT, node, f"{name}({literal!r})")
        elif name in _INTROSPECTION_CALLS:
            self._hit(INTROSPECTION, node, f"{name}()")
        elif name in _FILE_CALLS and _suspicious_path(literal):
            self._hit(FILE_ACCESS, node, f"{name}({literal!r})")
        elif name in _FD_CALLS and isinstance(literal, int) and literal > 2:
            self._hit(PROTOCOL_TAMPER, node, f"{name}({literal}, ...)")
        elif name in _SIGNAL_CALLS:
            self._hit(SIGNAL_TAMPER, node, f"{name}(...)")
        elif name == "setattr" and first is not None and _dotted(first) in _PATCHABLE:
            self._hit(MONKEYPATCH, node, f"setattr({_dotted(first)}, ...)")

    def check_Constant(self, node: ast.Constant) -> None:
        if isinstance(node.value, str) and "/proc/self/fd" in node.value:
            self._hit(PROTOCOL_TAMPER, node, repr(node.value[:60]))
        elif isinstance(node.value, str) and node.value.startswith(_ESCAPE_PATHS):
            self._hit(SANDBOX_ESCAPE, node, repr(node.value[:60]))

    def _assigned(self, targets: Iterable[ast.AST]) -> None:
        for target in targets:
            if isinstance(target, ast.Attribute) and (_dotted(target.value) or "").split(".")[0] in _PATCHABLE:
                self._hit(MONKEYPATCH, target, f"{_dotted(target)} = ...")

    def check_Assign(self, node: ast.Assign) -> None:
        self._assigned(node.targets)

    def check_AugAssign(self, node: ast.AugAssign) -> None:
        self._assigned([node.target])


#: Cells longer than this (a template cell is a few hundred characters) are scanned every
#: time rather than kept: the cache then holds at most ~20 MB even of pathological cells.
MAX_CACHED_SOURCE = 5_000
#: Scan results by cell source: the template's cells recur in every notebook of a class.
_SCANS = Memo(maxsize=1024)


def scan_source(source: str) -> list[tuple[str, int, str]]:
    """(flag, line, what) for one cell; cells that do not parse are scanned line by line for imports.

    The result depends on the text alone (an immutable string, its own key), so
    it is computed once per process for each distinct cell of moderate length.
    """
    key = source if isinstance(source, str) and len(source) <= MAX_CACHED_SOURCE else None
    found, hits = _SCANS.lookup(key)
    if found:
        return list(hits)
    code = "\n".join("" if _MAGIC_LINE.match(line) else line for line in source.splitlines())
    scanner = _Scanner()
    try:
        tree = ast.parse(code)
        if not scanner.scan(tree):
            # Too deep for the fast walk: the recursive one, called from here as it always
            # was, so that the recursion limit is met (or not) at the same depth.
            scanner.hits.clear()
            scanner.visit(tree)
    except (SyntaxError, ValueError, RecursionError):
        for number, line in enumerate(code.splitlines(), 1):
            try:
                for flag, _, what in _scan_line(line):
                    scanner.hits.append((flag, number, what))
            except (SyntaxError, ValueError, RecursionError):
                continue
    _SCANS.store(key, tuple(scanner.hits))
    return scanner.hits


def _scan_line(line: str) -> list[tuple[str, int, str]]:
    scanner = _Scanner()
    scanner.visit(ast.parse(line.strip()))
    return scanner.hits


def _from_runtime(seen: Sequence[str]) -> list[tuple[str, str]]:
    """Map the sandbox's audit notes ("opened /x", "tried to import grader", "called gc.get_objects")."""
    flags = []
    for note in seen:
        if note.startswith("opened "):
            flags.append((FILE_ACCESS, f"at run time: {note}"))
        elif note.startswith("tried to import "):
            flags.append((GRADER_IMPORT, f"at run time: {note}"))
        elif note.startswith("called "):
            flags.append((INTROSPECTION, f"at run time: {note}"))
        elif note.startswith("looked up the C function "):
            flags.append((SANDBOX_ESCAPE, f"at run time: {note}"))
    return flags


def review(cells: Sequence[Cell], seen: Sequence[str] = (), tampering: Sequence[str] = ()) -> list[Diagnosis]:
    """One ``integrity_*`` diagnosis per kind of attempt, citing up to three places."""
    examples: dict[str, list[str]] = defaultdict(list)
    for cell in cells:
        for flag, line, what in scan_source(cell.source):
            examples[flag].append(f"cell {cell.index + 1} line {line}: `{what}`")
    for flag, what in _from_runtime(seen):
        examples[flag].append(what)
    for what in tampering:
        examples[PROTOCOL_TAMPER].append(what)
    diagnoses = []
    for flag in EXPLANATIONS:
        found = list(dict.fromkeys(examples.get(flag, [])))
        if not found:
            continue
        shown = "; ".join(found[:MAX_EXAMPLES]) + (f"; and {len(found) - MAX_EXAMPLES} more" if len(found) > MAX_EXAMPLES else "")
        diagnoses.append(Diagnosis(flag, NOTEBOOK, f"The notebook {EXPLANATIONS[flag]} ({shown}); {REVIEW}."))
    return diagnoses
