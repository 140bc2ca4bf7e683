"""Concept prompts on a SAM 3 model: every instance of a text or a boxed example is a region; the batch mode `concepts`."""

from __future__ import annotations

from dataclasses import replace
from typing import Any

import numpy as np
import pytest

from backend.api.errors import InvalidInput, ServiceUnavailable
from backend.formats.mask_codecs import from_brush_rle
from sam_plugin.concepts import ConceptTextStore
from sam_plugin.label_config import EXAMPLE_CONFIG
from sam_plugin.model import SamLabelStudioModel
from sam_plugin.runtime import PluginRuntime
from sam_plugin.settings import ConceptSetting, PluginSettings
from tests.sam_plugin.fakes import CONCEPT_SCORES, LS_URL, FakeSession, ScriptedSamClient, png_bytes

W, H = 64, 40
SAM3 = "sam3"
TASK = {"id": 21, "data": {"image": "/data/upload/3/street.png"}}
CONFIG = """<View>
  <Image name="image" value="$image"/>
  <BrushLabels name="mask" toName="image">
    <Label value="Car"/>
    <Label value="Person" alias="pedestrian"/>
  </BrushLabels>
  <KeyPointLabels name="click" toName="image" smart="true">
    <Label value="Car" smart="true"/>
    <Label value="Background" smart="true"/>
  </KeyPointLabels>
  <RectangleLabels name="box" toName="image" smart="true">
    <Label value="Person" smart="true"/>
    <Label value="Background" smart="true"/>
  </RectangleLabels>
  <TextArea name="concept" toName="image" editable="true"/>
</View>"""
POLYGON_CONFIG = CONFIG.replace("BrushLabels", "PolygonLabels")


@pytest.fixture(autouse=True)
def _served(sam_client: ScriptedSamClient, fake_session: FakeSession) -> None:
    sam_client.served = ["scripted", SAM3]
    sam_client.concept_models = {SAM3}
    fake_session.add(f"{LS_URL}/data/upload/3/street.png", png_bytes(W, H, seed=5))


def model_of(runtime: PluginRuntime, *, project: str = "3", config: str = CONFIG) -> SamLabelStudioModel:
    return SamLabelStudioModel(project, config, runtime=runtime)


@pytest.fixture
def sam3_runtime(runtime: PluginRuntime) -> PluginRuntime:
    """Project 3 served by the SAM 3 model, project 4 by the server's default."""
    runtime.settings = replace(runtime.settings, project_models={"3": SAM3})
    return runtime


def text(value: str) -> dict[str, Any]:
    return {"type": "textarea", "from_name": "concept", "to_name": "image", "value": {"text": [value]}}


def rectangle(x: float, y: float, w: float, h: float, label: str = "Person") -> dict[str, Any]:
    return {
        "type": "rectanglelabels",
        "from_name": "box",
        "to_name": "image",
        "value": {"x": x, "y": y, "width": w, "height": h, "rotation": 0, "rectanglelabels": [label]},
    }


def click(x: float, y: float, label: str = "Car") -> dict[str, Any]:
    return {
        "type": "keypointlabels",
        "from_name": "click",
        "value": {"x": x, "y": y, "keypointlabels": [label]},
    }


def interactive(model: SamLabelStudioModel, *results: dict[str, Any], task: dict | None = None) -> dict:
    [answer] = model.predict([task or TASK], context={"result": list(results)})
    return answer


def quarter(index: int) -> np.ndarray:
    mask = np.zeros((H, W), dtype=bool)
    mask[:, index * W // 4 : (index + 1) * W // 4] = True
    return mask


def decoded(region: dict[str, Any]) -> np.ndarray:
    return from_brush_rle(region["value"]["rle"], region["original_height"], region["original_width"])


# ---------------------------------------------------------------- interactive


def test_a_typed_concept_adds_every_instance_with_its_score_label_and_the_model_version(
    sam3_runtime: PluginRuntime, sam_client: ScriptedSamClient
) -> None:
    answer = interactive(model_of(sam3_runtime), text("car"))
    regions = answer["result"]
    assert [r["score"] for r in regions] == pytest.approx(CONCEPT_SCORES[:2])  # above the default 0.5
    for index, region in enumerate(regions):
        np.testing.assert_array_equal(decoded(region), quarter(index))
        assert region["value"]["brushlabels"] == ["Car"]  # the concept names an output label (any case)
        assert region["meta"] == {"text": ["car"]}
    assert len({r["id"] for r in regions}) == 2
    assert answer["model_version"] == f"sam-{SAM3}"
    call = sam_client.calls[-1]
    assert call["model"] == SAM3 and call["text"] == "car" and call["exemplars"] is None
    assert call["points"] is None and call["box"] is None


def test_a_second_concept_typed_in_the_text_area_replaces_the_first(
    sam3_runtime: PluginRuntime, sam_client: ScriptedSamClient
) -> None:
    # Label Studio's TextArea keeps every entry: the second concept arrives as ["car", "person"]
    both = {**text("car"), "value": {"text": ["car", "person"]}}
    answer = interactive(model_of(sam3_runtime), both)
    assert sam_client.calls[-1]["text"] == "person"
    assert answer["result"] and all(region["meta"] == {"text": ["person"]} for region in answer["result"])


def test_a_concept_matching_a_label_alias_takes_that_label_and_another_the_first_label(
    sam3_runtime: PluginRuntime,
) -> None:
    model = model_of(sam3_runtime)
    assert {r["value"]["brushlabels"][0] for r in interactive(model, text("Pedestrian"))["result"]} == {
        "Person"
    }
    regions = interactive(model, text("bicycle"))["result"]
    assert {r["value"]["brushlabels"][0] for r in regions} == {"Car"} and regions[0]["meta"]["text"] == [
        "bicycle"
    ]


def test_the_concept_threshold_setting_is_sent_and_keeps_what_scores_above_it(
    sam3_runtime: PluginRuntime, sam_client: ScriptedSamClient
) -> None:
    sam3_runtime.settings = replace(sam3_runtime.settings, concept_threshold=0.1)
    regions = interactive(model_of(sam3_runtime), text("car"))["result"]
    assert [r["score"] for r in regions] == pytest.approx(CONCEPT_SCORES)
    assert sam_client.calls[-1]["threshold"] == 0.1


def test_a_smart_box_is_a_positive_exemplar_and_every_instance_like_it_is_added(
    sam3_runtime: PluginRuntime, sam_client: ScriptedSamClient
) -> None:
    regions = interactive(model_of(sam3_runtime), rectangle(25.0, 25.0, 50.0, 50.0))["result"]
    call = sam_client.calls[-1]
    assert call["exemplars"] == [{"box": [16.0, 10.0, 48.0, 30.0], "positive": True}]
    assert call["text"] is None and call["box"] is None and call["boxes"] is None
    assert [r["score"] for r in regions] == pytest.approx([0.95, *CONCEPT_SCORES[:2]])
    assert all(r["value"]["brushlabels"] == ["Person"] for r in regions)  # the box's label
    assert all("meta" not in r for r in regions)  # no text: nothing to show


def test_a_box_goes_with_the_concept_typed_last_on_the_task_and_a_background_box_is_a_counter_example(
    sam3_runtime: PluginRuntime, sam_client: ScriptedSamClient
) -> None:
    model = model_of(sam3_runtime)
    interactive(model, text("person"))
    regions = interactive(model, rectangle(25.0, 25.0, 50.0, 50.0))["result"]
    assert sam_client.calls[-1]["text"] == "person" and sam_client.calls[-1]["exemplars"][0]["positive"]
    assert all(r["meta"] == {"text": ["person"]} and r["value"]["brushlabels"] == ["Person"] for r in regions)
    # a background box on the first quarter: "persons, but not like this"
    interactive(model, rectangle(5.0, 25.0, 10.0, 10.0, label="Background"))
    call = sam_client.calls[-1]
    assert call["text"] == "person" and call["exemplars"] == [
        {"box": [3.2, 10.0, 9.6, 14.0], "positive": False}
    ]
    # another task, or the same task on another project, has no concept typed yet
    with pytest.raises(InvalidInput, match="type the concept in the text box first"):
        interactive(model, rectangle(5.0, 25.0, 10.0, 10.0, label="Background"), task={**TASK, "id": 22})


def test_text_and_boxes_sent_together_make_one_concept(
    sam3_runtime: PluginRuntime, sam_client: ScriptedSamClient
) -> None:
    interactive(
        model_of(sam3_runtime), text("car"), rectangle(25.0, 25.0, 50.0, 50.0), rectangle(0, 0, 10, 10)
    )
    call = sam_client.calls[-1]
    assert call["text"] == "car" and [e["positive"] for e in call["exemplars"]] == [True, True]


def test_clicks_on_a_sam3_model_still_outline_one_object_and_refine_it(
    sam3_runtime: PluginRuntime, sam_client: ScriptedSamClient
) -> None:
    model = model_of(sam3_runtime)
    [first] = interactive(model, click(50.0, 50.0))["result"]
    assert sam_client.calls[-1]["points"] == [[32.0, 20.0]] and sam_client.calls[-1]["exemplars"] is None
    [refined] = interactive(model, click(55.0, 50.0, label="Background"))["result"]
    assert refined["id"] == first["id"] and sam_client.calls[-1]["mask_input"] is not None


def test_a_concept_is_not_an_object_to_refine_and_clicks_with_a_concept_are_refused(
    sam3_runtime: PluginRuntime,
) -> None:
    model = model_of(sam3_runtime)
    interactive(model, text("car"))
    with pytest.raises(InvalidInput, match="there is none on this task"):
        interactive(model, click(10.0, 50.0, label="Background"))
    with pytest.raises(InvalidInput, match="clicks in a request of their own"):
        interactive(model, text("car"), click(10.0, 50.0))


def test_no_instance_found_says_what_to_try(sam3_runtime: PluginRuntime) -> None:
    sam3_runtime.settings = replace(sam3_runtime.settings, concept_threshold=0.99)
    with pytest.raises(InvalidInput, match=r"no instance of 'car' scoring above 0\.99"):
        interactive(model_of(sam3_runtime), text("car"))


def test_polygon_output_gives_one_polygon_per_instance(sam3_runtime: PluginRuntime) -> None:
    regions = interactive(model_of(sam3_runtime, config=POLYGON_CONFIG), text("car"))["result"]
    assert [r["type"] for r in regions] == ["polygonlabels"] * 2
    assert [r["score"] for r in regions] == pytest.approx(CONCEPT_SCORES[:2])
    assert all(r["value"]["polygonlabels"] == ["Car"] and r["meta"] == {"text": ["car"]} for r in regions)


def test_on_other_models_text_and_boxes_work_as_before(
    runtime: PluginRuntime, sam_client: ScriptedSamClient
) -> None:
    model = model_of(runtime, project="4")
    [region] = interactive(model, text("car"))["result"]
    call = sam_client.calls[-1]
    assert call["text"] == "car" and call["exemplars"] is None and call["threshold"] is None
    assert "meta" not in region
    interactive(model, rectangle(25.0, 25.0, 50.0, 50.0))
    call = sam_client.calls[-1]
    assert call["box"] == [16.0, 10.0, 48.0, 30.0] and call["exemplars"] is None


def test_the_model_family_is_asked_once_and_again_while_the_model_loads(
    sam3_runtime: PluginRuntime, sam_client: ScriptedSamClient, monkeypatch: pytest.MonkeyPatch
) -> None:
    model = model_of(sam3_runtime)
    interactive(model, text("car"))
    interactive(model, text("car"))
    assert sam_client.models_calls == 1
    assert sam3_runtime.answers_concepts(None) is False and sam3_runtime.answers_concepts(SAM3) is True
    loading = [{"name": "later", "ready": False}]
    monkeypatch.setattr(sam_client, "models", lambda: loading)
    assert sam3_runtime.answers_concepts("later") is None
    loading[0] = {"name": "later", "ready": True, "prompts": ["text", "exemplars"]}
    assert sam3_runtime.answers_concepts("later") is True  # a loading model is asked again


def test_the_concept_store_forgets_idle_texts_and_a_named_annotator_adopts_the_unnamed_one() -> None:
    now = [0.0]
    store = ConceptTextStore(ttl_s=10.0, clock=lambda: now[0])
    store.put(("1", "2", ""), "car")
    assert store.find(("1", "2", "7")) == "car" and store.find(("1", "2", "")) is None
    now[0] = 11.0
    assert store.find(("1", "2", "7")) is None


# ---------------------------------------------------------------- batch


def batch(runtime: PluginRuntime, project: str = "3", config: str = CONFIG) -> dict[str, Any]:
    runtime.settings = replace(runtime.settings, preannotate="concepts")
    [answer] = model_of(runtime, project=project, config=config).predict([TASK])
    return answer


def test_concepts_mode_adds_every_instance_of_every_label_best_score_first(
    sam3_runtime: PluginRuntime, sam_client: ScriptedSamClient
) -> None:
    sam3_runtime.settings = replace(
        sam3_runtime.settings,
        concepts={
            "Car": ConceptSetting(prompt="a car", threshold=0.1),
            "Person": ConceptSetting(threshold=0.6),
        },
    )
    answer = batch(sam3_runtime)
    asked = [(c["text"], c["threshold"]) for c in sam_client.calls]
    assert asked == [("a car", 0.1), ("Person", 0.6)]
    regions = answer["result"]
    scores = [r["score"] for r in regions]
    assert scores == sorted(scores, reverse=True) == pytest.approx([0.9, 0.9, 0.7, 0.7, 0.45, 0.2])
    labels = [(r["value"]["brushlabels"][0], r["meta"]["text"][0]) for r in regions]
    assert labels == [
        ("Car", "a car"),
        ("Person", "Person"),
        ("Car", "a car"),
        ("Person", "Person"),
        ("Car", "a car"),
        ("Car", "a car"),
    ]
    assert answer["model_version"] == f"sam-{SAM3}" and answer["score"] == pytest.approx(np.mean(scores))
    assert sam_client.priorities[-1].name == "BULK"


def test_labels_not_listed_use_the_default_threshold_setting(
    sam3_runtime: PluginRuntime, sam_client: ScriptedSamClient
) -> None:
    sam3_runtime.settings = replace(sam3_runtime.settings, concept_threshold=0.3)
    assert len(batch(sam3_runtime)["result"]) == 6
    assert [c["threshold"] for c in sam_client.calls] == [0.3, 0.3]


def test_concepts_mode_on_another_model_says_to_pick_a_sam3_model(http: Any, runtime: PluginRuntime) -> None:
    runtime.settings = replace(runtime.settings, preannotate="concepts")
    body = {"tasks": [TASK], "project": "4.1700000000", "label_config": CONFIG, "params": {}}
    answer = http.post("/ls/predict", json=body)
    assert answer.status_code == 400
    detail = answer.get_json()["detail"]
    assert (
        "needs a SAM 3 model" in detail and "'scripted' (family sam)" in detail and "Extra params" in detail
    )
    assert "pick a SAM 3 model" in answer.status  # Label Studio shows the reason phrase


def test_concepts_mode_on_a_model_still_loading_asks_to_retry(
    runtime: PluginRuntime, sam_client: ScriptedSamClient, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(sam_client, "models", lambda: [{"name": "scripted", "ready": False}])
    with pytest.raises(ServiceUnavailable, match="still loading"):
        batch(runtime, project="4")


def test_concepts_mode_needs_output_labels_at_setup(runtime: PluginRuntime) -> None:
    runtime.settings = replace(runtime.settings, preannotate="concepts")
    unlabelled = '<View><Image name="image" value="$image"/><BrushLabels name="mask" toName="image"/></View>'
    with pytest.raises(InvalidInput, match="add <Label"):
        model_of(runtime, config=unlabelled).setup()
    assert model_of(runtime, config=EXAMPLE_CONFIG).setup() == "sam-scripted"


# ---------------------------------------------------------------- settings


def test_concept_settings_are_read_from_the_environment() -> None:
    settings = PluginSettings.from_env(
        {
            "SAM_PREANNOTATE": "concepts",
            "SAM_CONCEPTS": '{"Car": {"prompt": " a car ", "threshold": 0.4}, "Person": {"threshold": 1}, "Dog": "a dog"}',
            "SAM_CONCEPT_THRESHOLD": "0.25",
        }
    )
    assert settings.preannotate == "concepts"
    assert settings.concept_for("Car") == ("a car", 0.4)
    assert settings.concept_for("Person") == ("Person", 1.0)
    assert settings.concept_for("Dog") == ("a dog", 0.25)
    assert settings.concept_for("Tree") == ("Tree", 0.25)
    assert PluginSettings.from_env({}).concept_for("Tree") == ("Tree", None)


@pytest.mark.parametrize(
    ("value", "needle"),
    [
        ("{not json", "SAM_CONCEPTS must be a JSON object"),
        ('["Car"]', "SAM_CONCEPTS must be a JSON object"),
        ('{"Car": 3}', r"SAM_CONCEPTS\['Car'\] must be an object"),
        ('{"Car": {"prompt": "car", "score": 0.3}}', r"unknown keys \['score'\]"),
        ('{"Car": {"prompt": " "}}', r"SAM_CONCEPTS\['Car'\]\.prompt must be non-blank text"),
        ('{"Car": {"threshold": 1.5}}', "threshold must be a number from 0 to 1"),
        ('{"Car": {"threshold": "high"}}', "threshold must be a number from 0 to 1"),
        ('{"Car": {"threshold": true}}', "threshold must be a number from 0 to 1"),
    ],
)
def test_bad_concept_settings_say_how_to_fix_them(value: str, needle: str) -> None:
    with pytest.raises(InvalidInput, match=needle):
        PluginSettings.from_env({"SAM_CONCEPTS": value})


@pytest.mark.parametrize("value", ["high", "1.5", "-0.1", "nan"])
def test_a_bad_default_concept_threshold_is_refused(value: str) -> None:
    with pytest.raises(InvalidInput, match="SAM_CONCEPT_THRESHOLD must be a number from 0 to 1"):
        PluginSettings.from_env({"SAM_CONCEPT_THRESHOLD": value})
