"""What every control-tag converter does, and the control info it is given.

The SAM plugin reads prompts from some Label Studio control tags and writes
masks into others. Each tag has one :class:`ControlConverter` subclass in its
own module, registered in :data:`sam_plugin.controls.registry.CONVERTERS`
(the idea of the ``ControlModel`` classes in Label Studio's
``label-studio-ml-backend`` examples). A converter has three roles:

* :meth:`ControlConverter.matches`: which control tags of a labeling config
  it handles (``matches_result`` does the same for a result's ``type``);
* :meth:`ControlConverter.to_prompt`: one Label Studio result of the tag
  (percent of the image) -> one prompt part in pixels of the original image:
  a click with its label, a box, a text;
* :meth:`ControlConverter.from_mask`: one model mask -> the Label Studio
  results of the tag (brush RLE, polygons).

A tag that cannot play a role says so: its converter raises
:class:`~backend.api.errors.InvalidInput` with a message naming the tags that
can. Percent <-> pixel conversions go through :mod:`backend.formats.coordinates`,
mask formats through :mod:`backend.formats.mask_codecs`.
"""

from __future__ import annotations

import uuid
from collections.abc import Collection
from dataclasses import dataclass, field
from typing import Any, ClassVar

import numpy as np

from backend.api.errors import InvalidInput
from sam_plugin.controls.prompt import PromptPart


@dataclass(frozen=True)
class ControlInfo:
    """One control tag of the config.

    Attributes:
        name: The control's ``name`` (the ``from_name`` of its results).
        tag: Tag type, e.g. ``"KeyPointLabels"``.
        labels: Label values in config order.
        aliases: Label value -> its ``alias`` attribute, for labels that have one.
    """

    name: str
    tag: str
    labels: tuple[str, ...] = ()
    aliases: dict[str, str] = field(default_factory=dict)


def new_region_id() -> str:
    """A fresh 10-character region id, as Label Studio's own ids look."""
    return uuid.uuid4().hex[:10]


class ControlConverter:
    """Converts between one Label Studio control tag and SAM prompts / masks.

    Subclasses set :attr:`tag` and :attr:`result_type` and override the
    conversions their tag supports; the base methods refuse with a message.

    Attributes:
        tag: The control tag's name in a labeling config, e.g. ``"KeyPointLabels"``.
        result_type: The ``type`` of the tag's results (Label Studio writes the
            tag name in lower case, e.g. ``"keypointlabels"``).
        gives_prompt: Whether :meth:`to_prompt` converts this tag's results.
        prompt_hint: For prompt tags: how to add the tag to a config, for error messages.
        output_kind: ``"brush"`` / ``"polygon"`` (the ``SAM_OUTPUT`` value that
            picks this tag) when :meth:`from_mask` writes masks into it, else ``None``.
        one_region_per_mask: :meth:`from_mask` gives exactly one region per
            mask, so a refined object's region can keep its id (Label Studio then
            replaces it instead of adding one).
    """

    tag: ClassVar[str]
    result_type: ClassVar[str]
    gives_prompt: ClassVar[bool] = False
    prompt_hint: ClassVar[str] = ""
    output_kind: ClassVar[str | None] = None
    one_region_per_mask: ClassVar[bool] = False

    def matches(self, tag: str) -> bool:
        """Whether this converter handles control tags named ``tag`` (as written in the config)."""
        return tag == self.tag

    def matches_result(self, result: dict[str, Any]) -> bool:
        """Whether a Label Studio result (``{"type": ..., ...}``) comes from this converter's tag."""
        return result.get("type") == self.result_type

    @property
    def carries_mask(self) -> bool:
        """Whether :meth:`from_mask` writes masks into this tag."""
        return self.output_kind is not None

    def to_prompt(
        self,
        result: dict[str, Any],
        *,
        width: int,
        height: int,
        control: ControlInfo | None = None,
        negative_labels: Collection[str] = (),
    ) -> PromptPart | None:
        """One result of this tag as a prompt part in original-image pixels.

        Args:
            result: One Label Studio result of this tag (coordinates in percent).
            width: Image width in pixels (the frame of the prompt).
            height: Image height in pixels.
            control: The control the result came from (label aliases), if known.
            negative_labels: Label values or aliases that mean "background click".

        Returns:
            A :class:`~sam_plugin.controls.prompt.PromptPoint`, ``PromptBox`` or
            ``PromptText``; ``None`` when the result holds nothing usable (blank text).

        Raises:
            InvalidInput: Malformed or rotated region, or a tag that gives no prompt.
        """
        from sam_plugin.controls.registry import prompt_tags

        raise InvalidInput(
            f"<{self.tag}> regions are not SAM prompts; prompts come from "
            + ", ".join(f"<{tag}>" for tag in prompt_tags())
        )

    def from_mask(
        self,
        mask: np.ndarray,
        *,
        from_name: str,
        to_name: str,
        label: str | None,
        score: float,
    ) -> list[dict[str, Any]]:
        """The Label Studio results of this tag for one mask.

        Args:
            mask: ``HxW`` bool, in original-image pixels.
            from_name: This control's name.
            to_name: The Image tag's name.
            label: Label value to show; ``None`` gives unlabelled regions.
            score: The regions' score (0..1).

        Raises:
            InvalidInput: The tag cannot carry a mask.
        """
        from sam_plugin.controls.registry import output_tags

        raise InvalidInput(
            f"<{self.tag}> cannot carry a mask; the SAM plugin writes masks into "
            + " or ".join(f"<{tag}>" for tag in output_tags())
        )
