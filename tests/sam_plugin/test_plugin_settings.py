"""PluginSettings.from_env: parsing and clear errors."""

from __future__ import annotations

from pathlib import Path

import pytest

from backend.api.errors import InvalidInput
from sam_plugin.settings import PluginSettings


def test_environment_is_parsed() -> None:
    settings = PluginSettings.from_env(
        {
            "LABEL_STUDIO_URL": "http://ls:8080",
            "LABEL_STUDIO_API_KEY": "k",
            "SAM_ALLOWED_HOSTS": "a.com, *.b.org,,",
            "BASIC_AUTH_USER": "u",
            "BASIC_AUTH_PASS": "p",
            "SAM_DATASET_DIR": "/tmp/ds",
            "SAM_PREANNOTATE": "text",
            "SAM_NEGATIVE_LABELS": "bg,neg",
            "SAM_AUTOMASK_PARAMS": '{"points_per_side": 8}',
        }
    )
    assert settings.allowed_hosts == ("a.com", "*.b.org")
    assert settings.basic_auth == ("u", "p")
    assert settings.dataset_dir == Path("/tmp/ds") and settings.preannotate == "text"
    assert settings.negative_labels == ("bg", "neg")
    assert settings.automask_params == {"points_per_side": 8}


def test_defaults_leave_auth_and_storage_off() -> None:
    settings = PluginSettings.from_env({})
    assert settings.basic_auth is None and settings.dataset_dir is None
    assert settings.preannotate == "automask" and settings.negative_labels == ("negative", "background")


@pytest.mark.parametrize(
    ("env", "needle"),
    [
        ({"SAM_PREANNOTATE": "everything"}, "SAM_PREANNOTATE"),
        ({"SAM_OUTPUT": "png"}, "SAM_OUTPUT"),
        ({"LABEL_STUDIO_URL": "localhost:8080"}, "http://"),
        ({"SAM_AUTOMASK_PARAMS": "[1]"}, "JSON object"),
        ({"SAM_AUTOMASK_MIN_SCORE": "high"}, "number"),
    ],
)
def test_bad_values_say_how_to_fix_them(env: dict[str, str], needle: str) -> None:
    with pytest.raises(InvalidInput, match=needle):
        PluginSettings.from_env(env)
