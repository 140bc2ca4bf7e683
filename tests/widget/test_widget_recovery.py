"""The widget recovers as a notebook user expects: a server that lost the image, an embedding
that failed (server down, model still loading), clicks made while it was computed."""

from __future__ import annotations

import contextlib
from typing import Any

import pytest

from backend.api.answers import ImageInfo, ObjectMasks
from backend.api.errors import InvalidInput, NotFound, SamError, ServiceUnavailable
from tests.widget.conftest import RecordingClient, scene
from tests.widget.test_sam_widget import click, wait_until
from widget.sam_widget import SamWidget


class FlakyClient(RecordingClient):
    """A recording client whose next ``add_image`` calls fail (``uploads_fail``) and whose next
    ``predict`` forgets the image (``forget``), as a restarted server would."""

    def __init__(self, inner: Any) -> None:
        super().__init__(inner)
        self.uploads_fail = 0
        self.uploads = 0
        self.forget = False

    def add_image(self, image: Any, **kwargs: Any) -> ImageInfo:
        self.uploads += 1
        if self.uploads_fail:
            self.uploads_fail -= 1
            raise ServiceUnavailable("the model 'x' is still loading; retry in a few seconds")
        return super().add_image(image, **kwargs)

    def predict(self, image_id: str, prompt: Any = None, **kwargs: Any) -> list[ObjectMasks]:
        if self.forget:
            self.forget = False
            raise NotFound(
                f"unknown image_id {image_id!r}: upload the image with POST /v1/images (add_image) first"
            )
        return super().predict(image_id, prompt, **kwargs)


@pytest.fixture
def flaky(local_client: Any) -> FlakyClient:
    return FlakyClient(local_client)


def test_an_image_the_server_lost_is_uploaded_again_and_the_click_answered(flaky: FlakyClient) -> None:
    w = SamWidget(scene(), client=flaky)
    w.wait_ready(60)
    click(w, 100, 80)
    uploads = flaky.uploads
    flaky.forget = True  # the server restarted
    click(w, 140, 90)
    assert w.status_kind != "error", w.status
    assert flaky.uploads == uploads + 1 and w.current.candidates
    assert flaky.predict_calls[-1]["mask_input"] is None, "the lost answer's logits are not sent again"
    assert len(flaky.predict_calls[-1]["points"]) == 2, "both clicks are asked"


def test_a_failed_embedding_is_tried_again_by_the_next_click(flaky: FlakyClient) -> None:
    flaky.uploads_fail = 1
    w = SamWidget(scene(), client=flaky)
    with pytest.raises(ServiceUnavailable):
        w.wait_ready(60)
    assert "still loading" in w.status
    click(w, 100, 80)  # the model has loaded since
    wait_until(lambda: w.current.candidates, 60)
    assert w.image_id is not None and w.status_kind != "error", w.status


def test_wait_ready_tries_a_failed_embedding_again(flaky: FlakyClient) -> None:
    flaky.uploads_fail = 1
    w = SamWidget(scene(), client=flaky)
    with pytest.raises(ServiceUnavailable):
        w.wait_ready(60)
    w.wait_ready(60)
    assert w.image_id is not None


def test_clicks_made_while_the_embedding_runs_leave_no_unanswered_undo_step(flaky: FlakyClient) -> None:
    flaky.hold = True
    w = SamWidget(scene(), client=flaky)
    for x in (100, 120, 140):
        click(w, x, 80)
    flaky.release.set()
    w.wait_ready(60)
    answered = wait_until(lambda: w.current.candidates and w.current, 60)
    assert len(answered.points) == 3
    w.undo()
    assert not w.current.has_prompt, "undo goes back to before the clicks, not to a state no answer reaches"


def test_set_text_from_code_shows_the_text_in_the_field(flaky: FlakyClient) -> None:
    w = SamWidget(scene(), client=flaky)
    w.wait_ready(60)
    w.toolbar.text.value = "a yellow ball"
    with contextlib.suppress(
        SamError
    ):  # without CLIP weights the answer is an error; the field is what counts
        w.set_text("a blue car")
    assert w.toolbar.text.value == "a blue car"


def test_one_label_and_one_colour_need_no_list(flaky: FlakyClient) -> None:
    w = SamWidget(scene(), client=flaky, labels="cat", palette="#ff0000")
    assert w.labels == ["cat"] and w.palette == [(255, 0, 0)]
    assert SamWidget(scene(), client=flaky, palette=(0, 128, 255)).palette == [(0, 128, 255)]
    assert SamWidget(scene(), client=flaky, palette=[255, 0, 0]).palette == [(255, 0, 0)]


def test_a_refused_candidate_number_or_opacity_does_not_stick(flaky: FlakyClient) -> None:
    w = SamWidget(scene(), client=flaky)
    w.wait_ready(60)
    click(w, 100, 80)
    with pytest.raises(InvalidInput):
        w.selected = 5
    assert w.selected == w.current.selected == 0
    with pytest.raises(InvalidInput, match="opacity must lie in"):
        w.opacity = 2
    assert w.opacity == w.toolbar.opacity.value <= 1.0


def test_a_click_or_box_outside_the_image_is_said_in_the_status_line(flaky: FlakyClient) -> None:
    w = SamWidget(scene(), client=flaky)
    w.wait_ready(60)
    with pytest.raises(InvalidInput):
        w.add_point(5000, 10)
    assert w.status_kind == "error" and "outside" in w.status
    w.add_point(10, 10)
    assert w.status_kind != "error"
    with pytest.raises(InvalidInput):
        w.set_box([0, 0, 5000, 10])
    assert w.status_kind == "error" and "outside" in w.status


def test_set_text_from_code_asks_once_even_when_it_fails(flaky: FlakyClient) -> None:
    """Filling the field must not re-enter set_text through the field's observer."""
    w = SamWidget(scene(), client=flaky)
    w.wait_ready(60)
    asked = len(flaky.predict_calls)
    with contextlib.suppress(SamError):
        w.set_text("a green dog")
    texts = [c.get("text") for c in flaky.predict_calls[asked:]]
    assert texts == ["a green dog"], texts


def test_an_embedding_refused_for_good_is_not_tried_again(local_client: Any) -> None:
    class UnknownModel(FlakyClient):
        def add_image(self, image: Any, **kwargs: Any) -> ImageInfo:
            self.uploads += 1
            raise NotFound("unknown model 'nope'; this server serves ['demo']")

    client = UnknownModel(local_client)
    w = SamWidget(scene(), client=client, model="nope")
    with pytest.raises(NotFound):
        w.wait_ready(60)
    click(w, 100, 80)
    assert client.uploads == 1 and "unknown model" in w.status and "tries again" not in w.status
