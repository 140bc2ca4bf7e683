"""Importing the widget package stays light: no torch, no ipycanvas until a widget is built."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]


def test_import_widget_loads_neither_torch_nor_ipycanvas() -> None:
    code = "import sys, widget; print(sorted(m for m in ('torch', 'ipycanvas', 'ipyevents') if m in sys.modules))"
    out = subprocess.run(
        [sys.executable, "-c", code], cwd=REPO, capture_output=True, text=True, check=True
    ).stdout
    assert out.strip() == "[]"
