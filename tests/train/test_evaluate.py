from __future__ import annotations

from types import SimpleNamespace

import numpy as np
import pytest

from backend.api.errors import InvalidInput
from backend.train.datasets import TrainingImage
from backend.train.evaluate import EvalSettings, evaluate, mask_iou

SIZE = 20


def _square() -> np.ndarray:
    target = np.zeros((SIZE, SIZE), dtype=bool)
    target[5:15, 5:15] = True  # 100 pixels
    return target


class ScriptedPredictor:
    """Answers by the number of clicks so far, with masks of known IoU.

    1 click: three candidates ranked [top half (IoU 0.5), exact (1.0), empty (0)].
    2 clicks: the object minus its last row (IoU 0.9). 3+ clicks: exact.
    Low-res logits are filled with the candidate's id, to check what is fed back.
    """

    def __init__(self) -> None:
        self.calls: list[dict] = []

    def set_image(self, image: np.ndarray) -> None:
        self.image_shape = image.shape

    def predict(
        self, *, point_coords=None, point_labels=None, box=None, mask_input=None, multimask_output=True
    ):
        self.calls.append(
            {
                "coords": point_coords.copy(),
                "labels": point_labels.copy(),
                "mask_input": mask_input,
                "multi": multimask_output,
            }
        )
        target = _square()
        if len(point_coords) == 1:
            half = target.copy()
            half[10:] = False
            masks, ids = [half, target, np.zeros_like(target)], [10.0, 11.0, 12.0]
        elif len(point_coords) == 2:
            almost = target.copy()
            almost[14] = False
            masks, ids = [almost], [20.0]
        else:
            masks, ids = [target], [30.0]
        logits = np.stack([np.full((4, 4), i, dtype=np.float32) for i in ids])[None]
        return SimpleNamespace(masks=np.stack(masks)[None], low_res_logits=logits)


def _data() -> list[TrainingImage]:
    return [TrainingImage(image=np.zeros((SIZE, SIZE, 3), np.uint8), masks=_square()[None], key="a")]


def test_metrics_are_exact_on_a_scripted_predictor():
    predictor = ScriptedPredictor()
    report = evaluate(predictor, _data(), EvalSettings(clicks=5))
    assert report.objects == 1
    assert report.ious["top"][0].tolist() == pytest.approx([0.5, 0.9, 1.0, 1.0, 1.0])
    assert report.ious["oracle"][0].tolist() == [1.0] * 5
    assert report.miou("top", 1) == 0.5 and report.miou("oracle", 1) == 1.0
    assert report.noc("top", 0.85) == 2 and report.noc("top", 0.90) == 2
    assert report.noc("oracle", 0.85) == 1 and report.noc("oracle", 0.90) == 1


def test_clicks_follow_the_error_and_feed_back_the_chosen_logits():
    predictor = ScriptedPredictor()
    evaluate(predictor, _data(), EvalSettings(clicks=5))
    top = predictor.calls[:3]  # top track: 3 clicks, then the prediction is exact
    assert top[0]["coords"].tolist() == [[9, 9]] and top[0]["labels"].tolist() == [1]
    assert top[0]["mask_input"] is None and top[0]["multi"] is True
    x, y = top[1]["coords"][1]
    assert top[1]["labels"][1] == 1 and 10 <= y < 15 and 5 <= x < 15, "second click in the missed bottom half"
    assert float(top[1]["mask_input"].max()) == 10.0, "feeds back the top-ranked candidate"
    assert top[1]["multi"] is False
    assert float(top[2]["mask_input"].max()) == 20.0
    assert top[2]["coords"][2].tolist()[1] == 14, "third click on the missing last row"
    oracle = predictor.calls[3:]
    assert len(oracle) == 1, "the oracle is exact after one click and clicks no more"


def test_noc_is_capped_at_the_number_of_clicks():
    class Empty(ScriptedPredictor):
        def predict(self, **kwargs):
            out = super().predict(**kwargs)
            out.masks = np.zeros_like(out.masks)
            return out

    report = evaluate(Empty(), _data(), EvalSettings(clicks=4))
    assert report.noc("top", 0.85) == 4 and report.noc("oracle", 0.90) == 4
    assert report.miou("top", 4) == 0.0


def test_json_and_table_report_every_track():
    report = evaluate(ScriptedPredictor(), _data(), EvalSettings(clicks=3))
    data = report.to_dict()
    assert data["tracks"]["top"]["miou"] == [0.5, 0.9, 1.0]
    assert data["tracks"]["oracle"]["noc@90"] == 1.0
    assert "NoC@85" in report.table() and "oracle" in report.table()


def test_min_area_and_empty_dataset():
    with pytest.raises(InvalidInput):
        evaluate(ScriptedPredictor(), _data(), EvalSettings(clicks=2, min_area=101))


def test_mask_iou():
    a = np.zeros((4, 4), bool)
    a[:2] = True
    b = np.zeros((4, 4), bool)
    b[1:3] = True
    assert mask_iou(a, b) == pytest.approx(4 / 12)
