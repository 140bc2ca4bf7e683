"""sam-server's scheduling flags and variables reach ServerConfig and the service; bad values name the flag."""

from __future__ import annotations

import pytest

from backend.api.priority import Priority
from backend.serving.cli import config_from_args
from backend.serving.service import SamService
from tests.serving.tiny_model import make_config

FLAGS = {
    "--interactive-timeout": ("SAM_INTERACTIVE_TIMEOUT", "timeout_s", "12.5", 12.5),
    "--bulk-timeout": ("SAM_BULK_TIMEOUT", "bulk_timeout_s", "90", 90.0),
    "--max-queue": ("SAM_MAX_QUEUE", "max_queue", "32", 32),
    "--max-bulk-jobs": ("SAM_MAX_BULK_JOBS", "max_bulk_jobs", "2", 2),
    "--max-automask-points": ("SAM_MAX_AUTOMASK_POINTS", "max_automask_points", "5120", 5120),
}


def test_defaults_allow_metas_segment_everything_and_bound_every_queue(monkeypatch):
    for variable, *_ in FLAGS.values():
        monkeypatch.delenv(variable, raising=False)
    config = config_from_args([])
    assert (config.timeout_s, config.bulk_timeout_s) == (60.0, 600.0)
    assert (config.max_queue, config.max_bulk_jobs, config.max_automask_points) == (256, 4, 8192)


@pytest.mark.parametrize("flag", sorted(FLAGS))
def test_each_flag_and_its_variable_set_the_config(monkeypatch, flag):
    variable, field, text, value = FLAGS[flag]
    assert getattr(config_from_args([flag, text]), field) == value
    monkeypatch.setenv(variable, text)
    assert getattr(config_from_args([]), field) == value


@pytest.mark.parametrize("flag", sorted(FLAGS))
def test_zero_is_refused_naming_the_flag(capsys, flag):
    with pytest.raises(SystemExit):
        config_from_args([flag, "0"])
    assert flag in capsys.readouterr().err


def test_the_service_applies_the_limits(tiny_sam):
    config = make_config(tiny_sam, max_queue=3, max_bulk_jobs=2, max_automask_points=100, bulk_timeout_s=9.0)
    service = SamService(config)
    assert service.worker.queue_bounds == (3, 2)
    assert service.automask_limit == 100
    assert service.ticket(Priority.BULK).timeout_s == 9.0
    assert service.ticket(Priority.INTERACTIVE).timeout_s == 60.0
