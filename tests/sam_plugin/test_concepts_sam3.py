"""Concept prompts through the plugin against a real in-process SAM 3 (tiny, random weights).

The weights are random, so the instances are arbitrary: the tests check the
conversion (one region per instance, labels, scores best first, the masks the
model server answered), not their quality.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import replace
from typing import Any

import numpy as np
import pytest

pytest.importorskip("transformers", minversion="5")

from backend.client.base import SamClientBase  # noqa: E402
from backend.formats.mask_codecs import from_brush_rle  # noqa: E402
from backend.formats.scores import as_probability  # noqa: E402
from sam_plugin.image_fetcher import TaskImageFetcher  # noqa: E402
from sam_plugin.model import SamLabelStudioModel  # noqa: E402
from sam_plugin.runtime import PluginRuntime  # noqa: E402
from sam_plugin.settings import ConceptSetting, PluginSettings  # noqa: E402
from tests.sam_plugin.fakes import LS_URL, FakeSession, public_resolver  # noqa: E402
from tests.sam_plugin.labelstudio_env import H, W, shapes_png  # noqa: E402

pytestmark = pytest.mark.slow

SAM3 = "sam3-tiny"
TASK = {"id": 1, "data": {"image": "/data/upload/1/shapes.png"}}
CONFIG = """<View>
  <Image name="image" value="$image"/>
  <BrushLabels name="mask" toName="image">
    <Label value="shape"/>
    <Label value="Thing"/>
  </BrushLabels>
  <RectangleLabels name="box" toName="image" smart="true">
    <Label value="Thing" smart="true"/>
  </RectangleLabels>
  <TextArea name="concept" toName="image"/>
</View>"""


@pytest.fixture(scope="module")
def client(tmp_path_factory: pytest.TempPathFactory) -> Iterator[SamClientBase]:
    from backend.inference.sam3 import load_sam3
    from backend.serving.config import ServerConfig
    from backend.serving.local_client import LocalSamClient
    from backend.serving.service import SamService
    from tests.inference.sam3.tiny_sam3 import save_tiny_sam3

    folder = tmp_path_factory.mktemp("sam3") / "tiny-sam3"
    save_tiny_sam3(folder)
    config = ServerConfig(model=(SAM3, load_sam3(folder)), device="cpu", cache_dtype="float32", plugins=False)
    service = SamService(config).start()
    assert service.wait_ready(60)
    yield LocalSamClient.from_service(service)
    service.close()


@pytest.fixture
def runtime(client: SamClientBase) -> PluginRuntime:
    session = FakeSession()
    session.add(f"{LS_URL}/data/upload/1/shapes.png", shapes_png())
    settings = PluginSettings(label_studio_url=LS_URL, label_studio_api_key="k", concept_threshold=0.0)
    fetcher = TaskImageFetcher(
        label_studio_url=LS_URL,
        api_key="k",
        resolver=public_resolver,
        session=session,  # type: ignore[arg-type]
    )
    return PluginRuntime(client, settings, fetcher)


def expected(client: SamClientBase, **prompt: Any) -> list[tuple[np.ndarray, float]]:
    """The model server's non-empty instances of a concept, best first: ``(mask, score)``."""
    image_id = client.add_image(shapes_png()).image_id
    objects = client.predict(image_id, **prompt)
    return [(o.best, float(o.scores[0])) for o in objects if o.best.any()]


def brush(region: dict[str, Any]) -> np.ndarray:
    assert region["type"] == "brushlabels" and (region["original_width"], region["original_height"]) == (W, H)
    return from_brush_rle(region["value"]["rle"], H, W)


def assert_instances(regions: list[dict[str, Any]], instances: list[tuple[np.ndarray, float]]) -> None:
    """One region per instance, in the server's order (best first), with its mask and score."""
    assert len(regions) == len(instances) > 1
    scores = [r["score"] for r in regions]
    assert scores == sorted(scores, reverse=True)
    for region, (mask, score) in zip(regions, instances, strict=True):
        np.testing.assert_array_equal(brush(region), mask)
        assert region["score"] == pytest.approx(as_probability(score))


def test_the_answer_says_the_model_answers_concepts(runtime: PluginRuntime) -> None:
    assert runtime.answers_concepts(SAM3) is True and runtime.model_version() == f"sam-{SAM3}"


def test_concepts_mode_stores_one_region_per_instance_with_its_label_and_score(
    runtime: PluginRuntime, client: SamClientBase
) -> None:
    runtime.settings = replace(
        runtime.settings,
        preannotate="concepts",
        concept_threshold=None,
        concepts={
            "shape": ConceptSetting(threshold=0.0),
            "Thing": ConceptSetting(prompt="a thing", threshold=1.0),
        },
    )
    [answer] = SamLabelStudioModel("1", CONFIG, runtime=runtime).predict([TASK])
    regions = answer["result"]
    assert_instances(regions, expected(client, text="shape", threshold=0.0))
    assert all(r["value"]["brushlabels"] == ["shape"] and r["meta"] == {"text": ["shape"]} for r in regions)
    assert answer["model_version"] == f"sam-{SAM3}"  # "Thing" kept nothing above 1.0


def test_a_typed_concept_and_a_smart_box_give_every_instance(
    runtime: PluginRuntime, client: SamClientBase
) -> None:
    model = SamLabelStudioModel("1", CONFIG, runtime=runtime)
    typed = {"type": "textarea", "from_name": "concept", "to_name": "image", "value": {"text": ["shape"]}}
    [answer] = model.predict([TASK], context={"result": [typed]})
    assert_instances(answer["result"], expected(client, text="shape", threshold=0.0))
    assert all(r["value"]["brushlabels"] == ["shape"] for r in answer["result"])
    box = {
        "type": "rectanglelabels",
        "from_name": "box",
        "to_name": "image",
        "value": {
            "x": 9.375,
            "y": 20.0,
            "width": 25.0,
            "height": 40.0,
            "rotation": 0,
            "rectanglelabels": ["Thing"],
        },
    }
    [answer] = model.predict([TASK], context={"result": [box]})  # with the concept typed before
    exemplar = {"box": [30.0, 40.0, 110.0, 120.0], "positive": True}
    assert_instances(answer["result"], expected(client, text="shape", exemplars=[exemplar], threshold=0.0))
    # the concept names an output label: it wins over the box's label
    assert all(r["value"]["brushlabels"] == ["shape"] for r in answer["result"])
