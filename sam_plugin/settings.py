"""Plugin settings, read once from the environment (never at import time).

Every knob of the Label Studio plugin lives here, so the routes, the model
class and the CLI receive one frozen :class:`PluginSettings` object instead of
reading ``os.environ`` themselves.
"""

from __future__ import annotations

import json
import os
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

from backend.api.errors import InvalidInput

PreannotateMode = Literal["automask", "text", "concepts", "off"]
OutputKind = Literal["auto", "brush", "polygon"]
_MODES: tuple[str, ...] = ("automask", "text", "concepts", "off")
_OUTPUTS: tuple[str, ...] = ("auto", "brush", "polygon")


def _split_list(value: str | None) -> tuple[str, ...]:
    """``"a, b,,c"`` -> ``("a", "b", "c")``."""
    if not value:
        return ()
    return tuple(item.strip() for item in value.split(",") if item.strip())


@dataclass(frozen=True)
class PluginSettings:
    """Configuration of the Label Studio plugin.

    Attributes:
        label_studio_url: Base URL of Label Studio (``LABEL_STUDIO_URL``), the
            host that serves ``/data/upload/...`` and ``/data/local-files/...``.
        label_studio_api_key: Token sent to Label Studio only
            (``LABEL_STUDIO_API_KEY``): a legacy token or a personal access
            token (JWT, exchanged for an access token).
        allowed_hosts: Other hosts task images may come from
            (``SAM_ALLOWED_HOSTS``, comma separated; ``*.example.com`` matches
            sub-domains), e.g. the host of presigned cloud-storage URLs.
        basic_auth_user: User required on every plugin route
            (``BASIC_AUTH_USER``); basic auth is on when user and password are set.
        basic_auth_pass: Password (``BASIC_AUTH_PASS``).
        dataset_dir: Folder where ``fit()`` stores accepted annotations
            (``SAM_DATASET_DIR``); ``None`` turns storing off.
        preannotate: Batch pre-annotation (``SAM_PREANNOTATE``): ``automask``
            (segment everything), ``text`` (one CLIP text prompt per label name
            or per value of ``text_field``), ``concepts`` (SAM 3: every instance
            of each output label, see ``concepts``) or ``off``.
        text_field: Task data field holding the text prompts for ``text``
            mode (``SAM_TEXT_FIELD``): a string (comma separated) or a list.
        negative_labels: Keypoint label values or aliases that mark a
            background point (``SAM_NEGATIVE_LABELS``), in addition to
            ``is_positive: false`` and aliases starting with ``-``.
        output: Region type produced (``SAM_OUTPUT``): ``auto`` uses
            BrushLabels when the config has it, else PolygonLabels.
        automask_label: Label given to segment-everything regions
            (``SAM_AUTOMASK_LABEL``); default: the first output label.
        automask_min_score: Segment-everything regions below this predicted
            IoU are dropped (``SAM_AUTOMASK_MIN_SCORE``).
        automask_params: Segment-everything parameters passed to the model
            server (``SAM_AUTOMASK_PARAMS``, a JSON object such as
            ``{"points_per_side": 16, "pred_iou_thresh": 0.9}``).
        setup_timeout_s: Budget for asking the model server its model name
            during ``/setup`` (Label Studio gives up after 3 s).
        fetch_timeout_s: Deadline of one task image download, redirects and
            body included (``SAM_FETCH_TIMEOUT``, seconds).
        max_image_bytes: Largest task image downloaded.
        model: The model server's model for every project (``SAM_PLUGIN_MODEL``;
            None: the server's default), e.g. ``sam2.1_hiera_t``.
        concepts: Per-label concept settings of ``concepts`` mode
            (``SAM_CONCEPTS``, a JSON object such as
            ``{"Car": {"prompt": "a car", "threshold": 0.4}}``); labels not
            listed are their own prompt, with ``concept_threshold``.
        concept_threshold: Default score an instance must exceed to be kept,
            for concept prompts (``SAM_CONCEPT_THRESHOLD``, 0..1; None: the
            model server's default, 0.5).
        project_models: Models of particular projects
            (``SAM_PLUGIN_PROJECT_MODELS="3=sam2.1_hiera_t,7=vit_h"``); the
            ``model`` of a project's "Extra params" in Label Studio's model
            settings wins over both.
    """

    label_studio_url: str | None = None
    label_studio_api_key: str | None = None
    allowed_hosts: tuple[str, ...] = ()
    basic_auth_user: str | None = None
    basic_auth_pass: str | None = None
    dataset_dir: Path | None = None
    preannotate: PreannotateMode = "automask"
    text_field: str | None = None
    negative_labels: tuple[str, ...] = field(default=("negative", "background"))
    output: OutputKind = "auto"
    automask_label: str | None = None
    automask_min_score: float = 0.0
    automask_params: dict[str, Any] = field(default_factory=dict)
    setup_timeout_s: float = 2.0
    fetch_timeout_s: float = 30.0
    max_image_bytes: int = 100 * 1024 * 1024
    model: str | None = None
    project_models: dict[str, str] = field(default_factory=dict)
    concepts: dict[str, ConceptSetting] = field(default_factory=dict)
    concept_threshold: float | None = None

    def __post_init__(self) -> None:
        if self.preannotate not in _MODES:
            raise InvalidInput(
                f"SAM_PREANNOTATE must be one of {', '.join(_MODES)}, got {self.preannotate!r}"
            )
        if self.output not in _OUTPUTS:
            raise InvalidInput(f"SAM_OUTPUT must be one of {', '.join(_OUTPUTS)}, got {self.output!r}")
        if self.concept_threshold is not None and not 0.0 <= self.concept_threshold <= 1.0:
            raise InvalidInput(
                f"SAM_CONCEPT_THRESHOLD must be a number from 0 to 1, got {self.concept_threshold!r}"
            )
        if self.label_studio_url and not self.label_studio_url.startswith(("http://", "https://")):
            raise InvalidInput(
                f"LABEL_STUDIO_URL must start with http:// or https://, got {self.label_studio_url!r}"
            )

    @property
    def basic_auth(self) -> tuple[str, str] | None:
        """``(user, password)`` when basic auth is on, else ``None``."""
        if self.basic_auth_user and self.basic_auth_pass:
            return self.basic_auth_user, self.basic_auth_pass
        return None

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None) -> PluginSettings:
        """Read the settings from environment variables (see the attributes)."""
        env = os.environ if environ is None else environ
        dataset = env.get("SAM_DATASET_DIR")
        negative = env.get("SAM_NEGATIVE_LABELS")
        try:
            min_score = float(env.get("SAM_AUTOMASK_MIN_SCORE", "0") or 0)
        except ValueError as exc:
            raise InvalidInput(
                f"SAM_AUTOMASK_MIN_SCORE must be a number, got {env['SAM_AUTOMASK_MIN_SCORE']!r}"
            ) from exc
        try:
            fetch_timeout = float(env.get("SAM_FETCH_TIMEOUT", "30") or 30)
        except ValueError:
            fetch_timeout = -1.0
        if not fetch_timeout > 0:
            raise InvalidInput(
                f"SAM_FETCH_TIMEOUT must be a number of seconds > 0, got {env['SAM_FETCH_TIMEOUT']!r}"
            )
        try:
            automask_params = json.loads(env.get("SAM_AUTOMASK_PARAMS") or "{}")
        except json.JSONDecodeError as exc:
            raise InvalidInput(f"SAM_AUTOMASK_PARAMS must be a JSON object: {exc}") from exc
        if not isinstance(automask_params, dict):
            raise InvalidInput('SAM_AUTOMASK_PARAMS must be a JSON object, e.g. {"points_per_side": 16}')
        return cls(
            label_studio_url=(env.get("LABEL_STUDIO_URL") or env.get("LABEL_STUDIO_HOST") or None),
            label_studio_api_key=env.get("LABEL_STUDIO_API_KEY") or None,
            allowed_hosts=_split_list(env.get("SAM_ALLOWED_HOSTS")),
            basic_auth_user=env.get("BASIC_AUTH_USER") or None,
            basic_auth_pass=env.get("BASIC_AUTH_PASS") or None,
            dataset_dir=Path(dataset) if dataset else None,
            preannotate=env.get("SAM_PREANNOTATE", "automask"),  # type: ignore[arg-type]
            text_field=env.get("SAM_TEXT_FIELD") or None,
            negative_labels=_split_list(negative) if negative is not None else ("negative", "background"),
            output=env.get("SAM_OUTPUT", "auto"),  # type: ignore[arg-type]
            automask_label=env.get("SAM_AUTOMASK_LABEL") or None,
            automask_min_score=min_score,
            automask_params=automask_params,
            fetch_timeout_s=fetch_timeout,
            model=env.get("SAM_PLUGIN_MODEL") or None,
            project_models=_project_models(env.get("SAM_PLUGIN_PROJECT_MODELS")),
            concepts=parse_concepts(env.get("SAM_CONCEPTS")),
            concept_threshold=_optional_threshold(env.get("SAM_CONCEPT_THRESHOLD"), "SAM_CONCEPT_THRESHOLD"),
        )

    def concept_for(self, label: str) -> tuple[str, float | None]:
        """``(prompt, threshold)`` of an output label in ``concepts`` mode.

        The label's entry in ``concepts`` when it has one, else the label
        text; the threshold falls back to ``concept_threshold``.
        """
        setting = self.concepts.get(label, ConceptSetting())
        threshold = setting.threshold if setting.threshold is not None else self.concept_threshold
        return setting.prompt or label, threshold


@dataclass(frozen=True)
class ConceptSetting:
    """How ``concepts`` mode prompts SAM 3 for one output label.

    Attributes:
        prompt: The text sent for the label (None: the label itself).
        threshold: Keep instances scoring above this (None: the default threshold).
    """

    prompt: str | None = None
    threshold: float | None = None


_CONCEPT_EXAMPLE = '{"Car": {"prompt": "a car", "threshold": 0.4}, "Person": {"threshold": 0.6}}'


def parse_concepts(value: str | None) -> dict[str, ConceptSetting]:
    """``SAM_CONCEPTS`` (JSON) -> label -> :class:`ConceptSetting`.

    Each label maps to an object with an optional ``prompt`` (non-blank text)
    and ``threshold`` (0..1), or to a string, short for ``{"prompt": ...}``.

    Raises:
        InvalidInput: Not JSON, not an object, or an entry with other keys or
            values out of range; the message names the label and shows an example.
    """
    if not value or not value.strip():
        return {}
    try:
        raw = json.loads(value)
    except json.JSONDecodeError as exc:
        raise InvalidInput(f"SAM_CONCEPTS must be a JSON object such as {_CONCEPT_EXAMPLE}: {exc}") from exc
    if not isinstance(raw, dict):
        raise InvalidInput(f"SAM_CONCEPTS must be a JSON object such as {_CONCEPT_EXAMPLE}")
    return {str(label): _concept_setting(str(label), entry) for label, entry in raw.items()}


def _concept_setting(label: str, entry: Any) -> ConceptSetting:
    """One ``SAM_CONCEPTS`` entry, checked."""
    where = f"SAM_CONCEPTS[{label!r}]"
    if isinstance(entry, str):
        entry = {"prompt": entry}
    if not isinstance(entry, dict):
        raise InvalidInput(
            f'{where} must be an object with "prompt" and/or "threshold", e.g. {{"prompt": "a car", "threshold": 0.4}}'
        )
    unknown = sorted(set(entry) - {"prompt", "threshold"})
    if unknown:
        raise InvalidInput(f'{where} has unknown keys {unknown}; the keys are "prompt" and "threshold"')
    prompt = entry.get("prompt")
    if prompt is not None and (not isinstance(prompt, str) or not prompt.strip()):
        raise InvalidInput(f"{where}.prompt must be non-blank text, got {prompt!r}")
    threshold = entry.get("threshold")
    if threshold is not None:
        if isinstance(threshold, bool) or not isinstance(threshold, (int, float)) or not 0 <= threshold <= 1:
            raise InvalidInput(f"{where}.threshold must be a number from 0 to 1, got {threshold!r}")
        threshold = float(threshold)
    return ConceptSetting(prompt=prompt.strip() if prompt else None, threshold=threshold)


def _optional_threshold(value: str | None, name: str) -> float | None:
    """A 0..1 number from the environment, or None when unset.

    Raises:
        InvalidInput: Not a number (the range is checked by :class:`PluginSettings`).
    """
    if value is None or not value.strip():
        return None
    try:
        return float(value)
    except ValueError:
        raise InvalidInput(f"{name} must be a number from 0 to 1, got {value!r}") from None


def _project_models(value: str | None) -> dict[str, str]:
    """``"3=sam2.1_hiera_t, 7=vit_h"`` -> ``{"3": "sam2.1_hiera_t", "7": "vit_h"}``.

    Raises:
        InvalidInput: An item that is not ``project=model``.
    """
    pairs = {}
    for item in _split_list(value):
        project, sep, model = item.partition("=")
        if not sep or not project.strip() or not model.strip():
            raise InvalidInput(
                f"SAM_PLUGIN_PROJECT_MODELS takes project=model pairs, e.g. '3=sam2.1_hiera_t,7=vit_h'; got {item!r}"
            )
        pairs[project.strip()] = model.strip()
    return pairs
