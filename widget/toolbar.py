"""The ipywidgets controls under the canvas; layout and rendering only, no behaviour.

:class:`SamWidget` wires the callbacks and decides what to show;
:mod:`widget.feedback` computes it; this module builds the controls and puts
a :class:`~widget.feedback.Controls` or :class:`~widget.feedback.Status` on
them. The status line is HTML that wraps, so a long error is read in full.
"""

from __future__ import annotations

import html
from collections.abc import Callable, Sequence
from typing import Any

import ipywidgets as widgets

from widget.drawing import hex_color, instance_color
from widget.events import CONCEPT_GESTURES, GESTURES
from widget.feedback import Controls, Status, kept_text
from widget.state import DEFAULT_THRESHOLD

STATUS_COLORS = {"info": "inherit", "busy": "#1f6fb2", "error": "#c62828"}


def status_html(status: Status) -> str:
    """The status line as HTML: escaped, wrapping at the widget's width, coloured by kind."""
    icon = '<i class="fa fa-spinner fa-spin" aria-hidden="true"></i> ' if status.kind == "busy" else ""
    return (
        f'<div class="sam-status sam-status-{status.kind}" role="status" '
        f'style="white-space: pre-wrap; overflow-wrap: anywhere; line-height: 1.4; '
        f'color: {STATUS_COLORS[status.kind]}">{icon}{html.escape(status.text)}</div>'
    )


def legend_html(gestures: Sequence[tuple[str, str]] = GESTURES) -> str:
    """Every gesture and its effect, as a compact two-column table."""
    rows = "".join(
        f"<tr><td style='padding: 0 12px 0 0'><b>{html.escape(g)}</b></td><td>{html.escape(e)}</td></tr>"
        for g, e in gestures
    )
    return (
        "<div class='sam-legend' style='line-height: 1.4'>"
        f"<table style='border-collapse: collapse'>{rows}</table>"
        "<i>Keys act while the mouse is over the image.</i></div>"
    )


def _fit() -> widgets.Layout:
    return widgets.Layout(width="auto", flex="0 0 auto")


def _button(description: str, icon: str, tooltip: str, **style: str) -> widgets.Button:
    return widgets.Button(description=description, icon=icon, tooltip=tooltip, layout=_fit(), **style)


def _row(children: Sequence[widgets.Widget]) -> widgets.HBox:
    return widgets.HBox(list(children), layout=widgets.Layout(flex_flow="row wrap", align_items="center"))


TEXT_PLACEHOLDER = "describe the object, press Enter"
CONCEPT_PLACEHOLDER = "name the objects, press Enter"
FIND_TOOLTIP = "Find the object the text describes"
CONCEPT_FIND_TOOLTIP = "Find every instance of the word scoring above the threshold"


class Toolbar:
    """Label picker, accept / accept all / undo / clear, kept count, candidates or instances,
    opacity, text prompt and threshold, legend, status.

    Args:
        labels: Label names offered in the dropdown (at least one).
        opacity: Initial overlay opacity, 0..1.
        width: CSS width of the toolbar (the canvas width), so the status wraps under the image.
        threshold: Initial concept threshold, 0..1 (its slider shows on models that answer concepts).

    Attributes:
        instance_buttons: One toggle per concept instance, best first (pressed: picked).
    """

    def __init__(
        self,
        labels: Sequence[str],
        *,
        opacity: float,
        width: str = "100%",
        threshold: float = DEFAULT_THRESHOLD,
    ) -> None:
        described = {"description_width": "initial"}
        self.label = widgets.Dropdown(
            options=list(labels), value=labels[0], description="label", layout=_fit(), style=described
        )
        self.accept = _button(
            "accept", "check", "Keep the shown mask, or the picked instances (Enter)", button_style="success"
        )
        self.accept_all = _button(
            "accept all", "check-square", "Keep every instance shown, each as its own mask (Shift+Enter)"
        )
        self.accept_all.layout.display = "none"
        self.undo = _button("undo", "undo", "Undo the last prompt (Ctrl+Z)")
        self.clear = _button("clear", "times", "Forget this object's prompts (Esc)")
        self.find = _button("find", "search", FIND_TOOLTIP)
        self.kept = widgets.HTML(value=kept_text(0), layout=_fit())
        self.candidates = widgets.ToggleButtons(
            options=[], description="masks", tooltips=[], style={"button_width": "auto", **described}
        )
        self.instance_buttons: list[widgets.ToggleButton] = []
        self.instances = widgets.HBox(
            [], layout=widgets.Layout(flex_flow="row wrap", align_items="center", display="none")
        )
        self.instances.add_class("sam-instances")
        self._on_instance: Callable[[int, bool], None] | None = None
        self._showing = False
        self.text = widgets.Text(
            placeholder=TEXT_PLACEHOLDER,
            description="text",
            continuous_update=False,
            layout=widgets.Layout(width="300px"),
            style=described,
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
        self.threshold = widgets.FloatSlider(
            value=threshold,
            min=0.0,
            max=1.0,
            step=0.05,
            description="threshold",
            readout_format=".2f",
            tooltip="Instances scoring above this come back (press find again after changing it)",
            layout=widgets.Layout(width="260px", flex="0 0 auto", display="none"),
            style=described,
        )
        self.help = widgets.ToggleButton(
            value=True,
            description="gestures",
            icon="question",
            tooltip="Show or hide the gestures",
            layout=_fit(),
        )
        self.help.observe(lambda change: self.show_legend(bool(change["new"])), "value")
        self.legend = widgets.HTML(value=legend_html())
        self._legend_concepts = False
        self.progress = widgets.FloatProgress(
            value=0.0, min=0.0, max=1.0, layout=widgets.Layout(width="120px", flex="0 0 auto", display="none")
        )
        self.status = widgets.HTML(value=status_html(Status("")), layout=widgets.Layout(flex="1 1 auto"))
        self.box = self._arrange(width)

    def _arrange(self, width: str) -> widgets.VBox:
        """The rows: buttons and kept count; candidates; instances; text prompt and threshold; status;
        opacity and legend toggle; legend."""
        return widgets.VBox(
            [
                _row([self.label, self.accept, self.accept_all, self.undo, self.clear, self.kept]),
                _row([self.candidates]),
                self.instances,
                _row([self.text, self.find, self.threshold]),
                widgets.HBox([self.progress, self.status], layout=widgets.Layout(align_items="center")),
                _row([self.opacity, self.help]),
                self.legend,
            ],
            layout=widgets.Layout(width=width, max_width="100%"),
        )

    def show_controls(self, controls: Controls) -> None:
        """One toggle per candidate (``"1: 0.93"``, the selected one pressed); buttons that can act."""
        options = list(controls.candidates)
        if list(self.candidates.options) != options:
            self.candidates.options = options
            self.candidates.tooltips = list(controls.tooltips)
        self.candidates.value = controls.selected
        # ipywidgets' ToggleButtons view keeps its old buttons when the options become empty: hide it
        self.candidates.layout.display = None if options else "none"
        self.candidates.disabled = not controls.prompts
        self.accept.disabled = not controls.accept
        self.undo.disabled = not controls.undo
        self.clear.disabled = not controls.clear
        self.text.disabled = not controls.prompts
        self.find.disabled = not controls.prompts
        self.kept.value = kept_text(controls.kept)
        self.threshold.layout.display = None if controls.concepts else "none"
        self.threshold.disabled = not controls.prompts
        self.text.placeholder = CONCEPT_PLACEHOLDER if controls.concepts else TEXT_PLACEHOLDER
        self.find.tooltip = CONCEPT_FIND_TOOLTIP if controls.concepts else FIND_TOOLTIP
        if controls.concepts != self._legend_concepts:
            self._legend_concepts = controls.concepts
            self.legend.value = legend_html(GESTURES + CONCEPT_GESTURES if controls.concepts else GESTURES)
        self.accept_all.layout.display = None if controls.instances else "none"
        self.accept_all.disabled = not controls.accept_all
        self._show_instances(controls)

    def on_instance(self, callback: Callable[[int, bool], None]) -> None:
        """Call ``callback(index, pressed)`` when a person presses or releases an instance button."""
        self._on_instance = callback

    def _show_instances(self, controls: Controls) -> None:
        """One toggle per instance (``"1: 0.91"``, a stripe in its overlay colour), the picked ones pressed."""
        texts = list(controls.instances)
        self._showing = True
        try:
            if [b.description for b in self.instance_buttons] != texts:
                self.instance_buttons = [self._instance_button(i, text) for i, text in enumerate(texts)]
                title = widgets.HTML("instances", layout=widgets.Layout(margin="0 8px 0 0"))
                self.instances.children = [title, *self.instance_buttons] if texts else []
            for i, button in enumerate(self.instance_buttons):
                button.tooltip = controls.instance_tooltips[i]
                button.value = i in controls.picked
                button.disabled = not controls.prompts
        finally:
            self._showing = False
        self.instances.layout.display = None if texts else "none"

    def _instance_button(self, index: int, text: str) -> widgets.ToggleButton:
        button = widgets.ToggleButton(
            value=False,
            description=text,
            layout=widgets.Layout(
                width="auto", flex="0 0 auto", border_left=f"6px solid {hex_color(instance_color(index))}"
            ),
        )
        button.add_class("sam-instance")

        def pressed(change: dict[str, Any]) -> None:
            if not self._showing and self._on_instance is not None:
                self._on_instance(index, bool(change["new"]))

        button.observe(pressed, "value")
        return button

    def show_status(self, status: Status) -> None:
        """Set the status line; a ``progress`` shows the moving bar, None hides it."""
        self.status.value = status_html(status)
        if status.progress is None:
            self.progress.layout.display = "none"
        else:
            self.progress.value = status.progress
            self.progress.layout.display = None

    def show_legend(self, visible: bool) -> None:
        """Show or hide the gestures legend (the "gestures" toggle)."""
        self.legend.layout.display = None if visible else "none"
