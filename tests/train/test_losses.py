from __future__ import annotations

import pytest
import torch

from backend.train.losses import DICE_WEIGHT, FOCAL_WEIGHT, dice_loss, mask_iou, sam_loss, sigmoid_focal_loss


def _target() -> torch.Tensor:
    target = torch.zeros(1, 8, 8, dtype=torch.bool)
    target[0, 2:6, 2:6] = True
    return target


def _logits_of(masks: list[torch.Tensor]) -> torch.Tensor:
    return torch.stack([torch.where(m, 10.0, -10.0) for m in masks])[None]


def test_loss_trains_only_the_best_candidate():
    target = _target()[0]
    shifted = torch.roll(target, 2, dims=1)
    empty = torch.zeros_like(target)
    logits = _logits_of([shifted, target, empty]).requires_grad_()
    iou_pred = torch.zeros(1, 3)
    loss = sam_loss(logits, iou_pred, _target())
    assert loss.best.tolist() == [1]
    loss.mask.backward()
    grads = logits.grad.abs().flatten(2).sum(dim=2)[0]
    assert grads[0] == 0 and grads[2] == 0 and grads[1] > 0


def test_mask_loss_is_20_focal_plus_1_dice_of_the_chosen_candidate():
    torch.manual_seed(0)
    logits = torch.randn(2, 3, 8, 8)
    targets = torch.rand(2, 8, 8) > 0.5
    loss = sam_loss(logits, torch.zeros(2, 3), targets)
    per = FOCAL_WEIGHT * sigmoid_focal_loss(logits, targets.float()) + DICE_WEIGHT * dice_loss(
        logits, targets.float()
    )
    assert torch.allclose(loss.mask, per.min(dim=1).values.mean())


def test_iou_head_loss_is_mse_to_the_actual_iou():
    target = _target()[0]
    half = target.clone()
    half[2:4] = False  # half of the object -> IoU 0.5
    logits = _logits_of([target, half, torch.zeros_like(target)])
    iou_pred = torch.tensor([[1.0, 0.0, 0.0]])
    loss = sam_loss(logits, iou_pred, _target())
    assert loss.actual_iou.tolist() == [[1.0, 0.5, 0.0]]
    assert loss.iou.item() == pytest.approx((0.5**2) / 3)
    assert loss.total.item() == pytest.approx(loss.mask.item() + loss.iou.item())


def test_focal_loss_down_weights_easy_pixels():
    targets = torch.ones(1, 1, 1)
    easy, hard = torch.tensor([[[[4.0]]]]), torch.tensor([[[[-4.0]]]])
    assert sigmoid_focal_loss(easy, targets[:, 0]) < sigmoid_focal_loss(hard, targets[:, 0]) / 100


def test_dice_loss_is_zero_for_a_confident_exact_mask():
    target = _target()
    assert dice_loss(_logits_of([target[0]]) * 10, target.float()).item() == pytest.approx(0.0, abs=1e-3)


def test_iou_of_two_empty_masks_is_one():
    empty = torch.zeros(1, 4, 4, dtype=torch.bool)
    assert mask_iou(torch.full((1, 1, 4, 4), -1.0), empty).tolist() == [[1.0]]
