"""sam-annotate --model with a SAM 2.1 checkpoint: segment-everything with SAM 2's generator, to COCO."""

from __future__ import annotations

import pytest
import torch

from backend.annotate.cli import main
from backend.model.sam2 import build_sam2, sam2_config
from tests.annotate.conftest import LOW_THRESHOLDS


@pytest.mark.slow
def test_a_sam2_checkpoint_annotates_a_folder_to_coco(images_dir, tmp_path):
    from pycocotools.coco import COCO

    torch.manual_seed(2)
    checkpoint = tmp_path / "sam2.1_hiera_tiny.pt"
    torch.save({"model": build_sam2(sam2_config("sam2.1_hiera_t")).state_dict()}, checkpoint)
    out = tmp_path / "out.json"
    argv = [str(images_dir), "--everything", "--model", str(checkpoint), "--out", str(out), "--no-progress"]
    assert main([*argv, *LOW_THRESHOLDS]) == 0
    coco = COCO(str(out))
    assert len(coco.dataset["images"]) == 3
    assert coco.dataset["annotations"], "random weights with no thresholds keep some masks"
    for ann in coco.dataset["annotations"]:
        image = coco.imgs[ann["image_id"]]
        assert coco.annToMask(ann).shape == (image["height"], image["width"])
