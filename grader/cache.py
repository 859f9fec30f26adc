"""Where the grader keeps what it builds once and reuses: the site view, kernel specs, matplotlib's fonts.

One function, :func:`cache_root`, decides for every module, so a service account,
a container and a developer's laptop all get a cache that works:

1. ``GRADER_CACHE_DIR`` when it is set: the operator's choice, used as is (created
   if missing). A value that cannot be used is an error naming the setting, never a
   silent fallback: the operator asked for that directory.
2. ``$XDG_CACHE_HOME/grader``, else ``~/.cache/grader``, when that can be created
   and written. The home directory must already exist: a service account's
   ``HOME=/nonexistent`` is not created, not even by root.
3. Otherwise a per-user directory in the temporary directory,
   ``<tmp>/grader-cache-<uid>``, created ``0700``. Its name is predictable, so
   before it is used it is checked to be a real directory (not a link), owned by
   this user and writable by nobody else: another user could have created it first
   to plant a site view. If it fails that check, this process uses a fresh
   ``mkdtemp`` directory of its own instead (removed at exit) and the operator is
   told.

Only the standard library, and nothing here raises for an unusable home: that case
falls through to the next choice.
"""
from __future__ import annotations

import atexit
import os
import shutil
import stat
import tempfile
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path
from typing import Literal

from grader.errors import SettingError

#: Set to a directory to keep the grader's caches there (created if missing).
CACHE_DIR_ENV = "GRADER_CACHE_DIR"

Origin = Literal["GRADER_CACHE_DIR", "XDG_CACHE_HOME", "home", "temporary", "private temporary"]

#: The same text in every process (the private directory's own name is not in it): the operator is told once.
NOTICE_FOREIGN_CACHE = ("The cache directory {path} is not a directory of this user's that only it can write "
                        "(another user may have created it), so each grader process kept its caches in a fresh "
                        "private directory beside it instead, which is slower; remove {path} or set "
                        "GRADER_CACHE_DIR to a directory of your own.")


@dataclass(frozen=True)
class CacheRoot:
    """The cache directory chosen for this process, and why (``grader doctor`` prints both)."""

    path: Path
    origin: Origin
    #: Why the earlier choices were passed over, in words; "" when the first applicable one was used.
    reason: str = ""
    #: Something the operator must be told (a foreign per-user directory); "" normally.
    notice: str = ""


def cache_root() -> Path:
    """The directory every grader cache lives under; created, and writable by this user."""
    return describe().path


def describe() -> CacheRoot:
    """The cache root with where it came from (``grader doctor``; raises ``SettingError`` for a bad setting).

    Decided once per environment: the arguments of ``_resolve`` are what the
    decision depends on, so a test or a caller that changes ``HOME`` gets a new
    answer, and every other call is a dictionary look-up.
    """
    root = _resolve(os.environ.get(CACHE_DIR_ENV) or None, os.environ.get("XDG_CACHE_HOME") or None,
                    os.path.expanduser("~"), tempfile.gettempdir(), os.geteuid())
    if root.notice:
        from grader import notices

        notices.note(root.notice)
    return root


@lru_cache(maxsize=8)
def _resolve(configured: str | None, xdg: str | None, home: str, temporary: str, uid: int) -> CacheRoot:
    """The module docstring's three choices, in order; the reasons for passing one over are kept for the doctor."""
    if configured is not None:
        path = Path(os.path.abspath(configured))
        problem = _usable(path, parents=True)
        if problem:
            raise SettingError.from_bad_value(CACHE_DIR_ENV, configured, "the environment",
                                              f"a directory this user can create and write ({problem})")
        return CacheRoot(path, "GRADER_CACHE_DIR")
    reasons: list[str] = []
    if xdg is not None and os.path.isabs(xdg):
        path = Path(xdg) / "grader"
        problem = _usable(path, parents=True)
        if not problem:
            return CacheRoot(path, "XDG_CACHE_HOME")
        reasons.append(f"XDG_CACHE_HOME={xdg} cannot be used ({problem})")
    if not os.path.isabs(home):
        reasons.append("this user has no home directory")
    elif not os.path.isdir(home):
        reasons.append(f"the home directory {home} does not exist")
    else:
        path = Path(home) / ".cache" / "grader"
        problem = _usable(path, parents=True)
        if not problem:
            return CacheRoot(path, "home", "; ".join(reasons))
        reasons.append(f"{path} cannot be used ({problem})")
    return _temporary_root(Path(temporary), uid, "; ".join(reasons))


def _usable(path: Path, parents: bool) -> str:
    """"" when ``path`` is (now) a directory this user can write, else what is wrong, in a few words."""
    if path.exists() and not path.is_dir():
        return "not a directory"
    try:
        path.mkdir(parents=parents, exist_ok=True, mode=0o700)
    except OSError as exc:
        words = exc.strerror or type(exc).__name__
        return words[:1].lower() + words[1:]
    if not path.is_dir():
        return "not a directory"
    if not os.access(path, os.W_OK | os.X_OK):
        return "not writable"
    return ""


def _temporary_root(temporary: Path, uid: int, reason: str) -> CacheRoot:
    """``<tmp>/grader-cache-<uid>`` when it is provably this user's alone, else a fresh private directory."""
    shared = temporary / f"grader-cache-{uid}"
    try:
        os.mkdir(shared, 0o700)
    except FileExistsError:
        pass
    except OSError:
        pass  # checked below like any other state of that path
    if _private_to(shared, uid):
        return CacheRoot(shared, "temporary", reason)
    private = Path(tempfile.mkdtemp(prefix=f"grader-cache-{uid}-", dir=temporary))
    creator = os.getpid()

    def remove() -> None:  # in the process that made it, not in a forked child
        if os.getpid() == creator:
            shutil.rmtree(private, ignore_errors=True)

    atexit.register(remove)
    return CacheRoot(private, "private temporary", reason, NOTICE_FOREIGN_CACHE.format(path=shared))


def _private_to(path: Path, uid: int) -> bool:
    """Whether ``path`` is a real directory owned by ``uid`` that no one else can write (then made 0700).

    ``lstat``, not ``stat``: a symbolic link planted under that name is refused,
    not followed. In a sticky temporary directory no other user can rename or
    remove it once it is ours, so the check cannot be raced.
    """
    try:
        info = os.lstat(path)
    except OSError:
        return False
    if not stat.S_ISDIR(info.st_mode) or info.st_uid != uid or info.st_mode & 0o022:
        return False
    if stat.S_IMODE(info.st_mode) != 0o700:
        try:
            os.chmod(path, 0o700)
        except OSError:
            return False
    return os.access(path, os.W_OK | os.X_OK)


def matplotlib_config_default() -> None:
    """Give the grader's own matplotlib (charts in feedback pages and the summary) a writable config directory.

    matplotlib keeps its font list under ``~/.config/matplotlib``; without a writable
    home it warns on stderr in every process and rebuilds the list each time (about a
    second). Only when neither ``MPLCONFIGDIR`` nor ``XDG_CONFIG_HOME`` is set and the
    home directory cannot be written is it pointed into the cache; sandboxes get their
    own setting regardless (``execute.sandbox_environment``). Never raises: a cache
    that cannot be made is reported where it is needed.
    """
    if os.environ.get("MPLCONFIGDIR") or os.environ.get("XDG_CONFIG_HOME"):
        return
    home = os.path.expanduser("~")
    config = os.path.join(home, ".config")
    if os.path.isdir(config) and os.access(config, os.W_OK | os.X_OK):
        return
    if os.path.isdir(home) and not os.path.exists(config) and os.access(home, os.W_OK | os.X_OK):
        return
    try:
        target = cache_root() / "matplotlib-config"
        target.mkdir(exist_ok=True)
    except (OSError, SettingError):
        return
    os.environ["MPLCONFIGDIR"] = str(target)
