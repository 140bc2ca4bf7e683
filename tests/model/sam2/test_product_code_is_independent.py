"""Meta's ``sam2`` package is a test-only reference: product code never imports it."""

from __future__ import annotations

import ast
from pathlib import Path

ROOT = Path(__file__).resolve().parents[3]


def _top_level_imports(path: Path) -> set[str]:
    names: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            names.update(alias.name.split(".")[0] for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names.add(node.module.split(".")[0])
    return names


def test_product_code_never_imports_sam2():
    offenders = [
        str(path.relative_to(ROOT))
        for folder in ("backend", "sam_plugin", "widget")
        for path in sorted((ROOT / folder).rglob("*.py"))
        if "sam2" in _top_level_imports(path) or "hydra" in _top_level_imports(path)
    ]
    assert offenders == []
