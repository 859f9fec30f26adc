"""Shared helpers: build notebooks the way students leave them, and grade them."""
from __future__ import annotations

import json
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
