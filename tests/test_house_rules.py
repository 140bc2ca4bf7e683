"""The import rules of the house plan (../shared/ARCHITECTURE.md), checked on the real code."""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]

THIN_MODULES = [
    "backend",
    "backend.client",
    "backend.client.http_client",
    "backend.formats.coordinates",
    "backend.formats.images",
    "backend.formats.mask_codecs",
    "sam_plugin",
    "sam_plugin.blueprint",
    "widget",
]


@pytest.mark.parametrize("module", THIN_MODULES)
def test_thin_modules_do_not_import_torch(module):
    code = f"import sys, {module}; print('torch' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "False", f"importing {module} imported torch"


def _imported_modules(path: Path) -> set[str]:
    tree = ast.parse(path.read_text())
    names: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names.add(node.module)
    return names


def _python_files(folder: str) -> list[Path]:
    return sorted((ROOT / folder).rglob("*.py"))


def test_backend_never_imports_plugin_or_widget():
    offenders = [
        str(path.relative_to(ROOT))
        for path in _python_files("backend")
        if any(name.split(".")[0] in {"sam_plugin", "widget"} for name in _imported_modules(path))
    ]
    assert offenders == []


def test_network_imports_only_torch():
    allowed = {
        "torch",
        "math",
        "typing",
        "dataclasses",
        "functools",
        "__future__",
        "collections",
        "itertools",
    }
    offenders = {}
    for path in _python_files("backend/model"):
        bad = {
            n
            for n in _imported_modules(path)
            if n.split(".")[0] not in allowed and not n.startswith("backend.model")
        }
        if bad:
            offenders[str(path.relative_to(ROOT))] = sorted(bad)
    assert offenders == {}


def test_product_code_never_imports_reference_packages():
    offenders = [
        str(path.relative_to(ROOT))
        for folder in ("backend", "sam_plugin", "widget")
        for path in _python_files(folder)
        if any(name.split(".")[0] in {"segment_anything", "mobile_sam"} for name in _imported_modules(path))
    ]
    assert offenders == []
