"""Architecture configurations of the SAM 2.1 image network.

A :class:`Sam2Config` describes the image path of one SAM 2.1 model: the
Hiera trunk (:class:`HieraConfig`), the FPN neck, the prompt encoder and the
mask decoder with its high-resolution inputs, object-score head and dynamic
multimask fallback. The four official sizes are :data:`SAM2_1_HIERA_T`,
``_S``, ``_B_PLUS`` and ``_L`` (Meta's ``configs/sam2.1/sam2.1_hiera_*.yaml``);
:func:`sam2_config` finds one by name and :func:`sam2_config_from_state_dict`
recognises one from a checkpoint's layout.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field, replace
from typing import Any

import torch


@dataclass(frozen=True, kw_only=True)
class HieraConfig:
    """The Hiera trunk: four stages, each halving the grid and doubling the width.

    Attributes:
        embed_dim: Token width of stage 1 (after the 4x patch embedding).
        num_heads: Attention heads of stage 1.
        stages: Blocks per stage.
        global_att_blocks: Blocks (indices over all stages) that attend over
            the whole grid; the others attend inside windows.
        window_spec: Window side per stage, in tokens. A stage's first block
            still uses the previous stage's window (and pools its queries).
        window_pos_embed_bkg_spatial_size: Side of the background position
            embedding, interpolated (bicubic) to the stage-1 grid.
        q_pool: Number of stage transitions that pool the queries (2x2 max).
        q_stride: Pooling stride at a stage transition.
        dim_mul: Width factor at a stage transition.
        head_mul: Head-count factor at a stage transition.
        mlp_ratio: MLP hidden width / block width.
    """

    embed_dim: int = 96
    num_heads: int = 1
    stages: tuple[int, ...] = (2, 3, 16, 3)
    global_att_blocks: tuple[int, ...] = (12, 16, 20)
    window_spec: tuple[int, ...] = (8, 4, 14, 7)
    window_pos_embed_bkg_spatial_size: tuple[int, int] = (14, 14)
    q_pool: int = 3
    q_stride: tuple[int, int] = (2, 2)
    dim_mul: float = 2.0
    head_mul: float = 2.0
    mlp_ratio: float = 4.0

    @property
    def stage_ends(self) -> list[int]:
        """Index of the last block of each stage."""
        return [sum(self.stages[: i + 1]) - 1 for i in range(len(self.stages))]

    @property
    def channel_list(self) -> list[int]:
        """Width of each stage's output, lowest resolution first (the neck's order)."""
        widths = [int(self.embed_dim * self.dim_mul**i) for i in range(len(self.stages))]
        return widths[::-1]


@dataclass(frozen=True, kw_only=True)
class Sam2Config:
    """One SAM 2.1 image network.

    Attributes:
        hiera: The trunk.
        image_size: Side of the square model input (the image is resized to
            it, aspect ratio not kept); 1024 for the official models.
        backbone_stride: Stride of the image embedding (16).
        hidden_dim: Width of the neck outputs, prompt tokens and image embedding.
        fpn_top_down_levels: Neck levels (0 = highest resolution) that also
            receive the upsampled coarser level.
        fpn_interp_mode: Upsampling of the top-down path (``"nearest"``).
        scalp: Lowest-resolution neck levels dropped from the output.
        mask_in_chans: Hidden channels of the dense mask-prompt downscaler.
        decoder_depth: Two-way transformer blocks in the mask decoder.
        decoder_mlp_dim: MLP hidden width inside the two-way transformer.
        decoder_num_heads: Attention heads inside the two-way transformer.
        iou_head_depth: Layers of the IoU prediction MLP.
        iou_head_hidden_dim: Hidden width of the IoU prediction MLP.
        num_multimask_outputs: Candidate masks for an ambiguous prompt (3).
        use_high_res_features: The decoder adds the stride-4 and stride-8
            neck levels (through ``conv_s0`` / ``conv_s1``) to its upscaling.
        iou_prediction_use_sigmoid: The IoU head ends with a sigmoid.
        pred_obj_scores: The decoder has an object-score token and head.
        pred_obj_scores_mlp: The object-score head is a 3-layer MLP (else linear).
        dynamic_multimask_via_stability: With one mask asked for, fall back to
            the best multimask candidate when the single mask is unstable.
        dynamic_multimask_stability_delta: Logit offset of that stability test.
        dynamic_multimask_stability_thresh: Stability below which it falls back.
        directly_add_no_mem_embed: Add ``no_mem_embed`` to a single image's
            embedding (what the video model sees on a frame without memory).
        pixel_mean: Per-channel RGB mean on the 0..1 scale (ImageNet).
        pixel_std: Per-channel RGB standard deviation on the 0..1 scale.
    """

    hiera: HieraConfig = field(default_factory=HieraConfig)
    image_size: int = 1024
    backbone_stride: int = 16
    hidden_dim: int = 256
    fpn_top_down_levels: tuple[int, ...] = (2, 3)
    fpn_interp_mode: str = "nearest"
    scalp: int = 1
    mask_in_chans: int = 16
    decoder_depth: int = 2
    decoder_mlp_dim: int = 2048
    decoder_num_heads: int = 8
    iou_head_depth: int = 3
    iou_head_hidden_dim: int = 256
    num_multimask_outputs: int = 3
    use_high_res_features: bool = True
    iou_prediction_use_sigmoid: bool = True
    pred_obj_scores: bool = True
    pred_obj_scores_mlp: bool = True
    dynamic_multimask_via_stability: bool = True
    dynamic_multimask_stability_delta: float = 0.05
    dynamic_multimask_stability_thresh: float = 0.98
    directly_add_no_mem_embed: bool = True
    pixel_mean: tuple[float, float, float] = (0.485, 0.456, 0.406)
    pixel_std: tuple[float, float, float] = (0.229, 0.224, 0.225)

    @property
    def embedding_size(self) -> int:
        """Side of the image-embedding grid (64 for 1024-pixel inputs)."""
        return self.image_size // self.backbone_stride

    @property
    def low_res_size(self) -> int:
        """Side of the low-resolution mask logits (256 for 1024-pixel inputs)."""
        return 4 * self.embedding_size

    @property
    def prompt_embed_dim(self) -> int:
        """Width of the prompt tokens and of the image embedding (``hidden_dim``)."""
        return self.hidden_dim

    def to_dict(self) -> dict[str, Any]:
        """Plain JSON-serialisable form."""
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Sam2Config:
        """Inverse of :meth:`to_dict`; unknown keys raise ``TypeError``."""
        data = dict(data)
        hiera = HieraConfig(**_tuples(data.pop("hiera", {})))
        return cls(hiera=hiera, **_tuples(data))


def _tuples(data: dict[str, Any]) -> dict[str, Any]:
    """JSON turns tuples into lists; turn them back so configs stay hashable."""
    return {k: tuple(v) if isinstance(v, list) else v for k, v in data.items()}


SAM2_1_HIERA_T = Sam2Config(
    hiera=HieraConfig(
        embed_dim=96,
        num_heads=1,
        stages=(1, 2, 7, 2),
        global_att_blocks=(5, 7, 9),
        window_pos_embed_bkg_spatial_size=(7, 7),
    )
)
SAM2_1_HIERA_S = Sam2Config(
    hiera=HieraConfig(
        embed_dim=96,
        num_heads=1,
        stages=(1, 2, 11, 2),
        global_att_blocks=(7, 10, 13),
        window_pos_embed_bkg_spatial_size=(7, 7),
    )
)
SAM2_1_HIERA_B_PLUS = Sam2Config(hiera=HieraConfig(embed_dim=112, num_heads=2))
SAM2_1_HIERA_L = Sam2Config(
    hiera=HieraConfig(
        embed_dim=144,
        num_heads=2,
        stages=(2, 6, 36, 4),
        global_att_blocks=(23, 33, 43),
        window_pos_embed_bkg_spatial_size=(7, 7),
        window_spec=(8, 4, 16, 8),
    )
)

SAM2_CONFIGS: dict[str, Sam2Config] = {
    "sam2.1_hiera_t": SAM2_1_HIERA_T,
    "sam2.1_hiera_s": SAM2_1_HIERA_S,
    "sam2.1_hiera_b+": SAM2_1_HIERA_B_PLUS,
    "sam2.1_hiera_l": SAM2_1_HIERA_L,
}
"""The official SAM 2.1 image networks by registry name."""


def sam2_config(name: str, *, image_size: int | None = None) -> Sam2Config:
    """The official configuration called ``name`` (e.g. ``"sam2.1_hiera_b+"``).

    Args:
        name: A key of :data:`SAM2_CONFIGS`; ``"sam2.1_hiera_base_plus"`` and
            the long size names (``tiny``, ``small``, ``large``) are accepted too.
        image_size: Another model input side (a multiple of 32), e.g. small
            inputs for tests; the weights do not depend on it.
    """
    aliases = {"tiny": "t", "small": "s", "base_plus": "b+", "base+": "b+", "large": "l"}
    key = name.strip().lower()
    for long, short in aliases.items():
        if key.endswith("_" + long):
            key = key[: -len(long)] + short
    if key not in SAM2_CONFIGS:
        known = ", ".join(SAM2_CONFIGS)
        raise ValueError(f"unknown SAM 2.1 model {name!r}; known: {known}")
    config = SAM2_CONFIGS[key]
    return config if image_size is None else replace(config, image_size=image_size)


def sam2_config_from_state_dict(
    state_dict: dict[str, torch.Tensor], *, image_size: int | None = None
) -> Sam2Config:
    """Recognise the official configuration whose layout a state dict has.

    Widths, depths and the position-embedding sizes are read from the tensor
    shapes; head counts and window sizes leave no trace in the weights, so
    the layout is matched against the official sizes (:data:`SAM2_CONFIGS`).

    Args:
        state_dict: Meta's ``model`` state dict (``{"model": ...}`` in a
            ``sam2.1_hiera_*.pt`` file) or ours; a ``{"model": ...}`` wrapper
            is unwrapped.
        image_size: As in :func:`sam2_config`.

    Raises:
        ValueError: The layout is none of the official ones (the message says
            what was found).
    """
    if "model" in state_dict and isinstance(state_dict["model"], dict):
        state_dict = state_dict["model"]
    prefix = "image_encoder.trunk."
    try:
        embed_dim = int(state_dict[prefix + "patch_embed.proj.weight"].shape[0])
        background = tuple(int(s) for s in state_dict[prefix + "pos_embed"].shape[-2:])
        first_window = int(state_dict[prefix + "pos_embed_window"].shape[-1])
    except KeyError as exc:
        raise ValueError(f"not a SAM 2 image-encoder state dict: no {exc.args[0]!r}") from None
    depth = 1 + max(int(k.split(".")[3]) for k in state_dict if k.startswith(prefix + "blocks."))
    # A block that widens the tokens (the first of stages 2..4) has a shortcut projection.
    starts = sorted(
        int(k.split(".")[3])
        for k in state_dict
        if k.startswith(prefix + "blocks.") and k.endswith(".proj.weight") and k.count(".") == 5
    )
    bounds = [0, *starts, depth]
    stages = tuple(b - a for a, b in zip(bounds[:-1], bounds[1:], strict=True))
    found = (embed_dim, stages, background, first_window)
    for config in SAM2_CONFIGS.values():
        h = config.hiera
        if (h.embed_dim, h.stages, h.window_pos_embed_bkg_spatial_size, h.window_spec[0]) == found:
            return config if image_size is None else replace(config, image_size=image_size)
    raise ValueError(
        "the weights' layout (embed_dim={}, stages={}, pos_embed {}, first window {}) is none of "
        "the official SAM 2.1 sizes ({}); build the network from an explicit Sam2Config".format(
            *found, ", ".join(SAM2_CONFIGS)
        )
    )
