"""Install a student pack the way a student does, into an environment that holds nothing else of the grader.

A student's environment has the pack and its dependencies only. This checkout's own environment also
has the full grader (an editable install's import hook would even find ``grader.reference`` for a pack's
``grader``), so the pack goes into a fresh virtual environment whose only other entries are the sandbox's
*site view* (``grader.sandbox.confine.build_site_view``: links to every installed distribution except
the grader), linked entry by entry into the new environment. Child processes (the batch's workers, the
sandbox) start from that environment's own interpreter, so they see exactly what a student's would.
"""
from __future__ import annotations

import subprocess
import sys
from pathlib import Path

from grader.sandbox.confine import build_site_view


def environment(root: Path) -> tuple[Path, Path]:
    """A virtual environment at ``root`` with the grader's dependencies and no grader: (python, site-packages)."""
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(root)], check=True)
    python = root / "bin" / "python"
    site = Path(subprocess.run([str(python), "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"],
                               check=True, capture_output=True, text=True).stdout.strip())
    for entry in Path(build_site_view()).iterdir():  # links, not a .pth: the sandbox builds its view from entries
        (site / entry.name).symlink_to(entry.resolve())
    return python, site


def pip_install(wheel: Path, site: Path) -> None:
    """What a student's ``pip install numpy_nn_grader_pack-*.whl`` does once numpy & co. are installed."""
    subprocess.run([sys.executable, "-m", "pip", "install", "--quiet", "--no-deps", "--disable-pip-version-check",
                    "--target", str(site), str(wheel)], check=True)


def install(wheel: Path, root: Path) -> Path:
    """A virtual environment at ``root`` with ``wheel`` installed; its interpreter."""
    python, site = environment(root)
    pip_install(wheel, site)
    return python
