"""Writing files so that a reader never sees half of one: ``write_atomic``.

The one place the grader writes a file atomically (feedback pages, stored
reports, the gradebook, the class summary, the kernelspec it caches). A
batch that is killed, a disk that fills up or a machine that loses power
leaves each file either as it was or complete, never empty or cut short,
and a re-run trusts what it finds on disk.
"""
from __future__ import annotations

import os
import tempfile
from pathlib import Path

__all__ = ["write_atomic"]

#: Permissions of a new file before the umask, as ``open()`` would create it (``mkstemp`` makes 0600,
#: which would leave feedback pages and the gradebook unreadable to a web server or a colleague).
DEFAULT_MODE = 0o666

_umask: int | None = None


def _current_umask() -> int:
    """The process's umask, read without changing it where Linux says it (``/proc/self/status``).

    Elsewhere it is read by setting and restoring it, once per process: that briefly changes the
    umask of every thread, so it is done the first time only and remembered.
    """
    global _umask
    if _umask is None:
        try:
            with open("/proc/self/status", encoding="ascii", errors="replace") as status:
                line = next(line for line in status if line.startswith("Umask:"))
            _umask = int(line.split()[1], 8)
        except (OSError, StopIteration, ValueError, IndexError):
            _umask = os.umask(0)
            os.umask(_umask)
    return _umask


def write_atomic(path: str | os.PathLike[str], data: bytes | str, *, mode: int | None = None,
                 durable: bool = True) -> None:
    """Replace ``path`` with ``data`` all at once: a reader sees the old file or the new one, whole.

    The data goes to a temporary file in the same directory (created with its parents when
    missing), is flushed and ``fsync``-ed, and only then renamed over ``path`` with
    ``os.replace``; should anything fail, the temporary file is removed and the error raised,
    and ``path`` is left as it was. A ``str`` is written as UTF-8, with anything UTF-8 cannot
    hold (a lone surrogate) backslash-escaped: what the grader writes is safe text already, and
    should one piece not be, it must still never stop a batch. ``mode`` defaults to ``0o666``
    less the umask, what ``open()`` gives a new file.

    ``durable=False`` skips the ``fsync``: the rename is still atomic (a reader never sees half a
    file), but a power loss may lose the newest version. Per-student files use it: they are
    rewritten by the next run anyway (a report missing on disk is regraded), and an fsync each
    costs 13-16 ms of waiting in the batch's main process (benchmarks/bench_batch.py), more than
    the 20 ms a notebook takes at 50 notebooks/s.
    """
    target = Path(path)
    payload = data.encode("utf-8", "backslashreplace") if isinstance(data, str) else bytes(data)
    target.parent.mkdir(parents=True, exist_ok=True)
    handle, temporary = tempfile.mkstemp(dir=target.parent, prefix=f".{target.name}.", suffix=".tmp")
    try:
        try:
            os.fchmod(handle, DEFAULT_MODE & ~_current_umask() if mode is None else mode)
            view = memoryview(payload)
            while view:
                view = view[os.write(handle, view):]
            if durable:
                os.fsync(handle)
        finally:
            os.close(handle)
        os.replace(temporary, target)
    except BaseException:
        try:
            os.unlink(temporary)
        except OSError:
            pass
        raise
