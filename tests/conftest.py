"""Shared helpers: build notebooks the way students leave them, and grade them."""
from __future__ import annotations

import base64
import json
import struct
from html.parser import HTMLParser
from pathlib import Path
from typing import Callable

import pytest

REPO = Path(__file__).resolve().parents[1]
SEED = REPO / "examples" / "simple_nn_seed.ipynb"

CORRECT_CELLS = [
    "import numpy as np\nimport matplotlib.pyplot as plt",
    "def activation(z):\n    return np.maximum(0, z)\n\ndef d_activation(z):\n    return (z > 0).astype(float)",
    "def L(y_hat, y):\n    return 0.5 * (y_hat - y)**2\n\ndef d_L(y_hat, y):\n    return (y_hat - y)",
    "def forward(x, w1, w2):\n    return activation(x @ w1) @ w2",
    "def backward(x, y, y_hat, w1, w2, eta):\n"
    "    h = x @ w1\n"
    "    w2_partials = d_L(y_hat, y) * activation(h)\n"
    "    w1_partials = np.outer(x, d_L(y_hat, y) * w2 * d_activation(h))\n"
    "    return w1 - eta * w1_partials, w2 - eta * w2_partials",
]


def notebook_json(cells: list[str], markdown_first: bool = True) -> str:
    """A v4 notebook whose code cells are ``cells`` (strings), as Jupyter would save it."""
    body = []
    if markdown_first:
        body.append({"cell_type": "markdown", "id": "intro", "metadata": {}, "source": "# A simple neural network"})
    for i, source in enumerate(cells):
        body.append({"cell_type": "code", "id": f"c{i}", "metadata": {}, "execution_count": None,
                     "outputs": [], "source": source})
    return json.dumps({"cells": body, "metadata": {"kernelspec": {"name": "python3", "display_name": "Python 3",
                                                                  "language": "python"}},
                       "nbformat": 4, "nbformat_minor": 5}, indent=1)


@pytest.fixture
def write_notebook(tmp_path: Path) -> Callable[..., Path]:
    def write(cells: list[str], name: str = "submission.ipynb") -> Path:
        path = tmp_path / name
        path.write_text(notebook_json(cells))
        return path
    return write


# --- reading rendered pages the way a browser would (HTML renderers, summary, batch output) ---

PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"


class HtmlPage(HTMLParser):
    """Collects start tags with their attributes and the text, as a browser would see them."""

    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.tags: list[tuple[str, dict[str, str | None]]] = []
        self.text: list[str] = []

    def handle_starttag(self, tag, attrs):
        self.tags.append((tag, dict(attrs)))

    def handle_startendtag(self, tag, attrs):
        self.tags.append((tag, dict(attrs)))

    def handle_data(self, data):
        self.text.append(data)

    def named(self, tag: str) -> list[dict[str, str | None]]:
        return [attrs for name, attrs in self.tags if name == tag]

    def classes(self, cls: str) -> int:
        return sum(1 for _, attrs in self.tags if cls in (attrs.get("class") or "").split())


def parse_html(document: str) -> HtmlPage:
    page = HtmlPage()
    page.feed(document)
    page.close()
    return page


def png_size(data: bytes) -> tuple[int, int]:
    """Width and height from the IHDR chunk, read without any imaging library."""
    assert data[:8] == PNG_SIGNATURE
    length, kind = struct.unpack(">I4s", data[8:16])
    assert kind == b"IHDR" and length == 13
    return struct.unpack(">II", data[16:24])


def embedded_pngs(page: HtmlPage) -> list[bytes]:
    """The bytes of every ``<img>``, which must all be inline PNG data URLs (self-contained pages)."""
    prefix = "data:image/png;base64,"
    sources = [attrs.get("src") or "" for attrs in page.named("img")]
    assert all(src.startswith(prefix) for src in sources), sources
    return [base64.b64decode(src[len(prefix):], validate=True) for src in sources]


def pytest_configure(config: pytest.Config) -> None:
    """``slow`` marks end-to-end tests (tests/test_sandbox_holds.py): they still run by default,
    the marker only lets a quick local run leave them out with ``-m 'not slow'``."""
    config.addinivalue_line("markers", "slow: slow end-to-end test (runs by default; -m 'not slow' skips it)")


# ----------------------------------------------------------------------------- the student pack

@pytest.fixture(scope="session")
def pack(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A student pack of the default assignment, built once per session with ``grader pack``."""
    from grader.cli import main

    out = tmp_path_factory.mktemp("pack")
    assert main(["pack", "--out", str(out)]) == 0
    (wheel,) = out.glob("numpy_nn_grader_pack-*.whl")
    return wheel


@pytest.fixture(scope="session")
def student_python(pack: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The interpreter of an environment holding the pack and its dependencies, nothing else of the grader
    (``tests/student_pack.py``)."""
    from tests import student_pack

    return student_pack.install(pack, tmp_path_factory.mktemp("student") / "venv")
