"""sam-train and sam-eval: what they write, their help, their errors, and Ctrl-C."""

from __future__ import annotations

import json
import os
import re
import shutil
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest
import torch

from backend.hub import load_checkpoint, save_checkpoint
from backend.train.cli import _eval_parser, _train_parser, eval_main, train_main
from tests.support.cli_help import assert_help_shows_defaults

from .conftest import TINY_CONFIG

REPO = Path(__file__).resolve().parents[2]


@pytest.fixture
def tiny_checkpoint(tiny_sam, tmp_path):
    path = tmp_path / "tiny.pt"
    save_checkpoint(path, model_state=tiny_sam.state_dict(), config=TINY_CONFIG, meta={})
    return path


@pytest.mark.slow
def test_sam_train_fine_tunes_a_base_model_and_writes_a_loadable_checkpoint(
    tiny_checkpoint, tmp_path, monkeypatch
):
    monkeypatch.chdir(tmp_path)
    out = tmp_path / "tuned.pt"
    code = train_main(
        [
            "--scenes",
            "3",
            "--base",
            str(tiny_checkpoint),
            "--out",
            str(out),
            "--steps",
            "2",
            "--batch",
            "1",
            "--masks-per-image",
            "1",
            "--rounds",
            "2",
            "--rounds-without-point",
            "1",
            "--no-progress",
            "--threads",
            "1",
        ]
    )
    assert code == 0
    config, state, meta = load_checkpoint(out)
    assert config == TINY_CONFIG and meta["step"] == 2 and meta["base"] == str(tiny_checkpoint)
    assert (tmp_path / "runs" / "tuned" / "state.pt").exists()
    _, base_state, _ = load_checkpoint(tiny_checkpoint)
    assert any(not torch.equal(state[k], base_state[k]) for k in state)


def test_sam_train_without_base_explains_what_to_do(tmp_path, capsys, monkeypatch):
    monkeypatch.chdir(tmp_path)
    assert train_main(["--scenes", "2", "--out", str(tmp_path / "x.pt")]) == 2
    assert "--base" in capsys.readouterr().err


@pytest.mark.slow
def test_sam_eval_prints_json_metrics(tiny_checkpoint, capsys):
    code = eval_main(
        [
            "--model",
            str(tiny_checkpoint),
            "--scenes",
            "2",
            "--clicks",
            "2",
            "--max-objects",
            "1",
            "--json",
            "--threads",
            "1",
        ]
    )
    assert code == 0
    report = json.loads(capsys.readouterr().out)
    assert report["objects"] == 2 and report["clicks"] == 2
    for track in ("top", "oracle"):
        assert len(report["tracks"][track]["miou"]) == 2
        assert all(0.0 <= v <= 1.0 for v in report["tracks"][track]["miou"])
        assert 1 <= report["tracks"][track]["noc@85"] <= 2
    assert report["tracks"]["oracle"]["miou"][0] >= report["tracks"]["top"]["miou"][0]


def test_sam_eval_reports_a_missing_dataset(tiny_checkpoint, tmp_path, capsys):
    assert eval_main(["--model", str(tiny_checkpoint), "--data", str(tmp_path / "missing.json")]) == 2
    assert "does not exist" in capsys.readouterr().err


def test_help_shows_every_default():
    assert_help_shows_defaults(_train_parser())
    assert_help_shows_defaults(_eval_parser())


@pytest.mark.parametrize(
    ("flags", "named"),
    [
        (["--rounds", "2", "--rounds-without-point", "5"], "--rounds-without-point"),
        (["--batch", "0"], "--batch"),
        (["--checkpoint-every", "0"], "--checkpoint-every"),
        (["--box-probability", "1.5"], "--box-probability"),
        (["--lr", "0"], "--lr"),
        (["--lr", "inf"], "--lr"),
        (["--lr", "nan"], "--lr"),
        (["--seed", "-1"], "--seed"),
        (["--decay-factor", "inf"], "--decay-factor"),
        (["--decay-factor", "0"], "--decay-factor"),
        (["--decay-factor", "1.5"], "--decay-factor"),
        (["--decay-steps", "5", "1"], "--decay-steps"),
    ],
)
def test_bad_training_settings_name_the_flag_before_loading_anything(tmp_path, capsys, flags, named):
    # no --base: the settings are checked first, so the flag is reported, not the missing base model
    assert train_main(["--scenes", "2", "--out", str(tmp_path / "x.pt"), *flags]) == 2
    err = capsys.readouterr().err
    assert named in err, err
    assert not re.search(r"\b(rounds_without_point|images_per_batch|checkpoint_every|box_probability)\b", err)


@pytest.mark.parametrize(
    ("flags", "named"), [(["--clicks", "0"], "--clicks"), (["--max-objects", "-1"], "--max-objects")]
)
def test_bad_evaluation_settings_name_the_flag(capsys, flags, named):
    assert eval_main(["--scenes", "2", *flags]) == 2
    err = capsys.readouterr().err
    assert named in err and "max_objects" not in err, err


class _Stderr:
    """Collects a process's stderr on a thread, so the test can wait for progress without blocking."""

    def __init__(self, process: subprocess.Popen[bytes]) -> None:
        self.text = ""
        self._process = process
        self._thread = threading.Thread(target=self._read, daemon=True)
        self._thread.start()

    def _read(self) -> None:
        stream = self._process.stderr
        assert stream is not None
        while chunk := stream.read1(4096):
            self.text += chunk.decode("utf-8", "replace")

    def wait_for_step(self, step: int, total: int, timeout: float) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline and self._process.poll() is None:
            done = [int(n) for n in re.findall(rf"(\d+)/{total} \[", self.text)]
            if done and max(done) >= step:
                return
            time.sleep(0.05)
        raise AssertionError(f"no progress to step {step}:\n{self.text[-3000:]}")

    def finish(self) -> str:
        self._thread.join(timeout=30)
        return self.text


def _sam_train(*args: str) -> list[str]:
    executable = shutil.which("sam-train", path=os.path.dirname(sys.executable))
    prefix = (
        [executable]
        if executable
        else [
            sys.executable,
            "-c",
            "import sys; from backend.train.cli import train_main; sys.exit(train_main())",
        ]
    )
    return [*prefix, *args]


@pytest.mark.slow
def test_sigint_saves_the_state_at_the_current_step_and_the_same_command_resumes_there(
    tiny_checkpoint, tmp_path
):
    steps = 80
    command = _sam_train(
        "--scenes", "4", "--base", str(tiny_checkpoint), "--out", str(tmp_path / "tuned.pt"),
        "--steps", str(steps), "--checkpoint-every", "1000", "--batch", "1", "--masks-per-image", "1",
        "--rounds", "2", "--rounds-without-point", "1", "--threads", "1",
    )  # fmt: skip
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    process = subprocess.Popen(command, cwd=tmp_path, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    try:
        stderr = _Stderr(process)
        stderr.wait_for_step(3, steps, timeout=120)
        process.send_signal(signal.SIGINT)
        assert process.wait(timeout=60) == 130
    finally:
        if process.poll() is None:
            process.kill()
            process.wait(10)
    err = stderr.finish()
    assert "Traceback" not in err, err
    [stopped_at] = [int(n) for n in re.findall(r"interrupted at step (\d+)", err)]
    assert 3 <= stopped_at < steps and "run the same command again" in err
    _, _, meta = load_checkpoint(tmp_path / "runs" / "tuned" / "state.pt")
    assert meta["step"] == stopped_at, "saved at the step it stopped at, not at the last --checkpoint-every"
    assert not (tmp_path / "tuned.pt").exists()

    resumed = subprocess.run(
        command + ["--no-progress"], cwd=tmp_path, env=env, capture_output=True, text=True, timeout=300
    )
    assert resumed.returncode == 0, resumed.stderr
    assert f"trained to step {steps} (" in resumed.stdout
    assert f" in this call, resumed at step {stopped_at}, " in resumed.stdout
    assert load_checkpoint(tmp_path / "tuned.pt")[2]["step"] == steps
