"""The ipywidgets controls under the canvas; layout only, no behaviour.

:class:`SamWidget` wires the callbacks; this module builds the controls and
formats what they show (candidate scores, status line).
"""

from __future__ import annotations

from collections.abc import Sequence

import ipywidgets as widgets

from widget.state import Candidate


class Toolbar:
    """Label picker, accept / undo / clear, candidates, opacity, text prompt and status line.

    Args:
        labels: Label names offered in the dropdown (at least one).
        opacity: Initial overlay opacity, 0..1.
    """

    def __init__(self, labels: Sequence[str], *, opacity: float) -> None:
        def fit() -> widgets.Layout:
            return widgets.Layout(width="auto", flex="0 0 auto")

        described = {"description_width": "initial"}
        self.label = widgets.Dropdown(
            options=list(labels), value=labels[0], description="label", layout=fit(), style=described
        )
        self.accept = widgets.Button(
            description="accept",
            icon="check",
            button_style="success",
            tooltip="Keep the shown mask (Enter)",
            layout=fit(),
        )
        self.undo = widgets.Button(
            description="undo", icon="undo", tooltip="Undo the last prompt (Ctrl+Z)", layout=fit()
        )
        self.clear = widgets.Button(
            description="clear", icon="times", tooltip="Forget this object's prompts (Escape)", layout=fit()
        )
        self.opacity = widgets.FloatSlider(
            value=opacity,
            min=0.0,
            max=1.0,
            step=0.05,
            description="opacity",
            readout_format=".2f",
            layout=widgets.Layout(width="260px", flex="0 0 auto"),
            style=described,
        )
        self.candidates = widgets.ToggleButtons(
            options=[], description="masks", tooltips=[], style={"button_width": "auto", **described}
        )
        self.text = widgets.Text(
            placeholder="describe the object, press Enter",
            description="text",
            continuous_update=False,
            layout=widgets.Layout(width="320px"),
            style=described,
        )
        self.status = widgets.Label(value="")
        self.progress = widgets.FloatProgress(
            value=0.0, min=0.0, max=1.0, layout=widgets.Layout(width="160px", visibility="hidden")
        )
        self.box = widgets.VBox(
            [
                widgets.HBox(
                    [self.label, self.accept, self.undo, self.clear, self.opacity],
                    layout=widgets.Layout(flex_flow="row wrap", align_items="center"),
                ),
                widgets.HBox(
                    [self.candidates, self.text],
                    layout=widgets.Layout(flex_flow="row wrap", align_items="center"),
                ),
                widgets.HBox([self.progress, self.status]),
            ]
        )

    def show_candidates(self, candidates: Sequence[Candidate], selected: int) -> None:
        """One toggle per candidate, ``"1: 0.93"``, the selected one pressed."""
        options = [(f"{i + 1}: {c.score:.2f}", i) for i, c in enumerate(candidates)]
        tooltips = [
            f"predicted IoU {c.score:.3f}, stability {c.stability_score:.3f}, {c.area} px (key {i + 1})"
            for i, c in enumerate(candidates)
        ]
        if list(self.candidates.options) != options:
            self.candidates.options = options
            self.candidates.tooltips = tooltips
        if options:
            self.candidates.value = selected

    def show_status(self, message: str, *, progress: float | None = None) -> None:
        """Set the status line; ``progress`` 0..1 shows the bar, None hides it."""
        self.status.value = message
        if progress is None:
            self.progress.layout.visibility = "hidden"
        else:
            self.progress.value = progress
            self.progress.layout.visibility = "visible"
