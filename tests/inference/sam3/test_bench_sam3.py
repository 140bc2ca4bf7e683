"""benchmarks/bench_sam3.py runs on the tiny model, so that it cannot rot."""

from __future__ import annotations

import pytest

from benchmarks import bench_sam3


@pytest.mark.slow
def test_every_row_is_timed_once(sam3_models):
    rows = bench_sam3.run(sam3_models, repeats=1)
    names = [name for name, _, _ in rows]
    assert names[:2] == ["first concept on an image (total)", "  of which set_image (ViT + neck)"]
    assert "further click" in names and len(names) == 8
    assert all(seconds > 0 for _, seconds, _ in rows)
    kept = {name: instances for name, _, instances in rows}
    assert kept["  the same keeping 8 instances"] == "8"
