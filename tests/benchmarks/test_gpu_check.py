"""benchmarks/gpu_check.py: its fencing, budget and report logic, and a ``--dry-run``
that runs the GPU script's own code on the CPU at tiny sizes, so that it cannot rot."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from benchmarks import gpu_check
from benchmarks.gpu_check import Check, Context, dry_profile, evaluate_targets, markdown, run_check

ROOT = Path(__file__).resolve().parents[2]
SCRIPT = ROOT / "benchmarks" / "gpu_check.py"


def _context(*, budget_s: float = 60.0, dry_run: bool = False) -> Context:
    return Context(profile=dry_profile(), budget_s=budget_s, dry_run=dry_run)


def _boom(ctx: Context) -> dict:
    raise RuntimeError("out of memory, say")


def test_a_failing_check_is_recorded_not_raised():
    entry = run_check(Check("boom", "raises", _boom, needs_s=0), _context())
    assert entry["status"] == "error"
    assert "RuntimeError: out of memory, say" in entry["headline"]
    assert "_boom" in entry["traceback"]
    assert entry["seconds"] >= 0


def test_a_check_that_no_longer_fits_the_budget_is_skipped():
    ran = []
    check = Check("late", "needs time", lambda ctx: ran.append(1) or {"status": "done"}, needs_s=100)
    entry = run_check(check, _context(budget_s=50))
    assert entry["status"] == "skipped" and "budget" in entry["headline"]
    assert ran == []


def test_targets_pass_fail_and_not_measured():
    ctx = _context()
    ctx.results["encoder_speed_vit_h"] = {
        "rows": [
            {"batch": 8, "variant": "ours bf16", "images_per_s": 31.0},
            {"batch": 8, "variant": "reference fp32", "images_per_s": 99.0},
        ]
    }
    ctx.results["prompt_latency"] = {"rows": [{"variant": "ours fp32", "p50_ms": 6.5}]}
    targets = {t["target"]: t for t in evaluate_targets(ctx)}
    speed, prompt, server = targets.values()
    assert speed["pass"] is True and speed["value"] == 31.0 and "batch 8" in speed["detail"]
    assert prompt["pass"] is False
    assert server["pass"] is None and server["value"] is None


def test_markdown_has_targets_checks_and_rows():
    report = {
        "meta": {
            "device": "cuda",
            "gpu": "NVIDIA H200",
            "mode": "full",
            "torch": "2",
            "commit": "abc",
            "started": "now",
        },
        "targets": [{"target": "t", "goal": ">= 1", "value": 2.0, "pass": True, "detail": None}],
        "checks": [
            {
                "name": "c",
                "summary": "s",
                "status": "done",
                "seconds": 1.5,
                "headline": "h",
                "rows": [{"a": 1}],
            }
        ],
    }
    text = markdown(report)
    assert text.startswith("# GPU check: NVIDIA H200")
    assert "| t | >= 1 | 2 | yes | - |" in text
    assert "| c | done | 1.5 | h |" in text
    assert "### c" in text and "| 1 |" in text


def test_unknown_check_names_are_refused():
    with pytest.raises(SystemExit, match="unknown checks"):
        gpu_check.select_checks("equivalence_vit_b,no_such_check")


@pytest.mark.skipif(torch.cuda.is_available(), reason="this machine has CUDA")
def test_full_run_needs_cuda(tmp_path):
    with pytest.raises(SystemExit, match="no CUDA device"):
        gpu_check.main(["--out", str(tmp_path)])


@pytest.mark.slow
def test_dry_run_writes_the_report(tmp_path):
    out = subprocess.run(
        [sys.executable, str(SCRIPT), "--dry-run", "--out", str(tmp_path)],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert out.returncode == 0, out.stdout[-4000:] + out.stderr[-4000:]
    checks = gpu_check.all_checks()
    for check in checks:  # every check is listed, the full run's too
        assert check.name in out.stdout
    report = json.loads((tmp_path / "gpu_check.json").read_text())
    text = (tmp_path / "gpu_check.md").read_text()
    ran = {c["name"]: c for c in report["checks"]}
    assert list(ran) == [c.name for c in checks if c.in_dry_run]
    assert ran["equivalence_vit_b"]["status"] == "pass", ran["equivalence_vit_b"]
    assert ran["equivalence_sam2"]["status"] == "pass", ran["equivalence_sam2"]  # sam2 is a test dependency
    for entry in ran.values():
        assert entry["status"] in ("pass", "fail", "done", "skipped"), entry
        assert f"| {entry['name']} | {entry['status']} |" in text
    assert report["meta"]["mode"].startswith("dry run")
    assert [t["pass"] for t in report["targets"]] == [None, None, None]
    assert "## Targets" in text
