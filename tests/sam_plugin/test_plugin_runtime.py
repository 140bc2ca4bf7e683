"""PluginRuntime: bounded caches, model-version caching, mapping of client failures."""

from __future__ import annotations

import time

import pytest
import requests

from backend.api.errors import InvalidInput, ServiceUnavailable
from sam_plugin.runtime import PluginRuntime, as_model_server_error
from tests.sam_plugin.fakes import ScriptedSamClient


def test_model_version_is_cached_and_a_down_server_is_503(
    runtime: PluginRuntime, sam_client: ScriptedSamClient, monkeypatch: pytest.MonkeyPatch
) -> None:
    assert runtime.model_version() == "sam-scripted"
    sam_client.down = True
    assert runtime.model_version() == "sam-scripted"  # cached for a few seconds
    later = time.monotonic() + 60.0  # past the cache's lifetime
    monkeypatch.setattr("sam_plugin.runtime.time.monotonic", lambda: later)
    with pytest.raises(ServiceUnavailable):
        runtime.model_version(timeout_s=1.0)


def test_prompt_memory_is_keyed_by_task_and_mask(runtime: PluginRuntime) -> None:
    runtime.remember_prompt(1, [5, 6, 7], {"points": [[1.0, 2.0]]})
    assert runtime.recall_prompt(1, [5, 6, 7]) == {"points": [[1.0, 2.0]]}
    assert runtime.recall_prompt(2, [5, 6, 7]) is None and runtime.recall_prompt(1, [5, 6]) is None


def test_network_errors_become_service_unavailable() -> None:
    assert isinstance(as_model_server_error(requests.ConnectionError("refused")), ServiceUnavailable)
    bad = InvalidInput("x")
    assert as_model_server_error(bad) is bad
    bug = KeyError("y")
    assert as_model_server_error(bug) is bug
