"""Load SAM 3 from the Hugging Face Hub or a local folder, through transformers.

The network is transformers' (``Sam3Model`` for concepts, ``Sam3TrackerModel``
for clicks and boxes, both read from the same checkpoint); this module only
finds the weights, turns the library's failures into errors that say what to
do, and shares the one ViT backbone between the two heads. transformers is
imported here, when a SAM 3 model is loaded, never by the base package.
"""

from __future__ import annotations

import os
import re
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import torch

from backend.api.errors import InvalidInput, ServiceUnavailable, WeightsUnavailable
from backend.api.prompt_kinds import CLICK_PROMPT_KINDS, CONCEPT_PROMPT_KINDS
from backend.hub import parse_dtype, pick_device
from backend.inference.sam3.record import SAM3

if TYPE_CHECKING:
    from transformers import Sam3Model, Sam3Processor, Sam3TrackerModel, Sam3TrackerProcessor

_HUB_ID = re.compile(r"^[A-Za-z0-9][\w.-]*(/[A-Za-z0-9][\w.-]*)?$")
_VIDEO_MODEL_TYPE = "sam3_video"
"""``config.json`` model type of checkpoints with both heads (the Hub's ``facebook/sam3``)."""
_DETECTOR_MODEL_TYPE = "sam3"
"""``config.json`` model type of a folder saved from ``Sam3Model`` alone (concepts only)."""


@dataclass
class Sam3Models:
    """SAM 3's networks and processors, in eval mode on one device and dtype.

    Attributes:
        detector: transformers' ``Sam3Model`` (text / exemplar boxes -> every instance).
        processor: Its ``Sam3Processor`` (image resize + normalise, CLIP tokenizer,
            box normalisation, instance post-processing).
        tracker: transformers' ``Sam3TrackerModel`` (points / box -> ranked masks)
            sharing ``detector``'s ViT backbone, or None when the weights have
            no tracker (a folder saved from ``Sam3Model``) or it was not asked for.
        tracker_processor: ``Sam3TrackerProcessor`` over the same image processor, or None.
        source: The Hub repository id or local folder the weights came from.
    """

    detector: Sam3Model
    processor: Sam3Processor
    tracker: Sam3TrackerModel | None
    tracker_processor: Sam3TrackerProcessor | None
    source: str

    @property
    def device(self) -> torch.device:
        return self.detector.device

    @property
    def dtype(self) -> torch.dtype:
        return self.detector.dtype

    @property
    def accepted_prompts(self) -> tuple[str, ...]:
        """Prompt kinds these networks answer (:mod:`backend.api.prompt_kinds`)."""
        return CONCEPT_PROMPT_KINDS + (CLICK_PROMPT_KINDS if self.tracker is not None else ())


def load_sam3(
    source: str | Path = SAM3.hub_repo,
    *,
    device: str = "cpu",
    dtype: torch.dtype | str = torch.float32,
    interactive: bool = True,
) -> Sam3Models:
    """Load SAM 3's detector (and its interactive tracker) with their processors.

    Args:
        source: A Hub repository id (``"facebook/sam3"``: read through the
            Hugging Face cache, downloaded with ``HF_TOKEN`` when missing) or a
            local folder in ``save_pretrained`` layout (``config.json``,
            ``model.safetensors``, processor and tokenizer files), e.g. one
            made with ``hf download facebook/sam3 --local-dir DIR``.
        device: ``"cpu"``, ``"cuda"``, ``"cuda:N"``, ``"mps"`` or ``"auto"``.
        dtype: Floating-point dtype of the parameters (``"float32"``, ``torch.bfloat16`` ...).
        interactive: Also load the tracker head for points and boxes, when the
            weights have it (``facebook/sam3`` has; a folder saved from
            ``Sam3Model`` alone has not).

    Returns:
        The networks in eval mode on ``device`` in ``dtype``.

    Raises:
        ServiceUnavailable: transformers (5.x) is not installed.
        InvalidInput: A malformed id, a missing or foreign folder, a checkpoint
            whose weights do not fit the network, a bad device or dtype.
        WeightsUnavailable: The Hub weights are neither cached nor downloadable
            (offline, gated licence not accepted, no token); the message says what to do.
    """
    transformers = _import_transformers()
    torch_dtype = parse_dtype(dtype)
    target = pick_device(device)
    folder = _local_folder(source)
    name = str(folder) if folder is not None else str(source)
    try:
        model_type = transformers.AutoConfig.from_pretrained(name).model_type
        if model_type not in (_VIDEO_MODEL_TYPE, _DETECTOR_MODEL_TYPE):
            raise InvalidInput(
                f"{name!r} holds a {model_type!r} model, not SAM 3 (config.json model_type "
                f"{_VIDEO_MODEL_TYPE!r} or {_DETECTOR_MODEL_TYPE!r})"
            )
        processor = transformers.Sam3Processor.from_pretrained(name)
        detector = _from_pretrained(transformers.Sam3Model, name, torch_dtype, local=folder is not None)
        tracker = None
        if interactive and model_type == _VIDEO_MODEL_TYPE:
            tracker = _from_pretrained(
                transformers.Sam3TrackerModel, name, torch_dtype, local=folder is not None
            )
    except ValueError as error:  # a config.json transformers cannot read as a model
        raise InvalidInput(f"{name!r} is not a SAM 3 model ({_first_line(error)})") from error
    except OSError as error:
        if folder is not None:
            raise InvalidInput(
                f"{folder} is not a SAM 3 folder in save_pretrained layout ({_first_line(error)})"
            ) from error
        raise WeightsUnavailable(_hub_help(name, error)) from error
    detector = detector.to(target).eval()
    tracker_processor = None
    if tracker is not None:
        # Both heads read the same ViT weights (transformers maps the checkpoint's one
        # detector backbone into each); keep one copy and run it once per image.
        tracker.vision_encoder.backbone = detector.vision_encoder.backbone
        tracker = tracker.to(target).eval()
        tracker_processor = transformers.Sam3TrackerProcessor(image_processor=processor.image_processor)
    return Sam3Models(
        detector=detector,
        processor=processor,
        tracker=tracker,
        tracker_processor=tracker_processor,
        source=name,
    )


def _from_pretrained(model_class: Any, name: str, dtype: torch.dtype, *, local: bool) -> Any:
    """``model_class.from_pretrained`` that fails on missing or mis-shaped weights.

    ``local``: the weights are a folder on disk, read without progress bars
    (a Hub download keeps its bars).
    """
    from transformers.utils import logging as hf_logging

    verbosity, bars = hf_logging.get_verbosity(), hf_logging.is_progress_bar_enabled()
    # The tracker warns that it is built from a sam3_video checkpoint: that is the documented way.
    hf_logging.set_verbosity_error()
    if local:
        hf_logging.disable_progress_bar()
    try:
        model, info = model_class.from_pretrained(name, dtype=dtype, output_loading_info=True)
    finally:
        hf_logging.set_verbosity(verbosity)
        if local and bars:
            hf_logging.enable_progress_bar()
    missing = sorted(info.get("missing_keys") or ())
    mismatched = sorted(str(item) for item in info.get("mismatched_keys") or ())
    if missing or mismatched:
        raise InvalidInput(
            f"the weights in {name!r} do not fit transformers' {model_class.__name__}: "
            f"{len(missing)} missing keys {missing[:8]}, {len(mismatched)} mis-shaped {mismatched[:8]}"
        )
    return model


def _local_folder(source: str | Path) -> Path | None:
    """The folder ``source`` names, None for a Hub id; a path that does not exist is an error."""
    path = Path(source).expanduser()
    if path.is_dir():
        if not (path / "config.json").is_file():
            raise InvalidInput(f"{path} is not a SAM 3 folder in save_pretrained layout (no config.json)")
        return path
    text = str(source)
    if isinstance(source, Path) or not _HUB_ID.match(text):
        raise InvalidInput(
            f"no folder {text!r}: give a local folder in save_pretrained layout "
            f"or a Hugging Face Hub id such as {SAM3.hub_repo!r}"
        )
    return None


def _hub_help(repo: str, error: BaseException) -> str:
    from huggingface_hub import constants

    offline = os.environ.get("HF_HUB_OFFLINE", "").strip().lower() in ("1", "true", "yes", "on")
    mode = (
        "HF_HUB_OFFLINE is set, so only the cache is read"
        if offline
        else "set HF_HUB_OFFLINE=1 to use only the cache"
    )
    return (
        f"SAM 3 weights {repo!r} are not in the Hugging Face cache ({constants.HF_HUB_CACHE}) and could "
        f"not be downloaded: {_first_line(error)} They are gated under Meta's SAM License: accept the "
        f"licence at https://huggingface.co/{repo}, then set HF_TOKEN to a token of that account "
        f"(or run `hf auth login`) on a machine that can reach huggingface.co; or pass a local folder "
        f"saved with save_pretrained (e.g. `hf download {repo} --local-dir DIR`, copied here). "
        f"{mode}."
    )


def _first_line(error: BaseException) -> str:
    lines = str(error).strip().splitlines()
    return lines[0] if lines else type(error).__name__


def _import_transformers() -> Any:
    """Import transformers 5.x or say how to install it."""
    try:
        import transformers
    except ImportError as error:
        raise ServiceUnavailable(
            "SAM 3 needs Hugging Face transformers 5.x: pip install 'sam-server[sam3]'"
        ) from error
    if not hasattr(transformers, "Sam3Model"):
        raise ServiceUnavailable(
            f"SAM 3 needs transformers 5.x with Sam3Model (found {transformers.__version__}): "
            "pip install 'sam-server[sam3]'"
        )
    return transformers
