"""Tests of refseg_lib.metrics: hand-computed cases and parity with pycocotools."""

from __future__ import annotations

import numpy as np
import pycocotools.mask as coco_mask
import pytest
import torch
from torch.testing import assert_close

from refseg_lib.metrics import (
    SegmentationMeter,
    accuracy_at,
    box_iou,
    breakdown_by_tag,
    choose_threshold,
    inconsistency_error,
    iou_from_counts,
    mask_intersection_union,
    mask_iou,
    mean_iou,
    overall_iou,
    precision_at,
)


def masks(*rows_per_sample: list[str]) -> torch.Tensor:
    """Bool (B, H, W) masks from pictures: '#' is foreground, '.' background."""
    return torch.tensor([[[c == "#" for c in row] for row in rows] for rows in rows_per_sample])


def f64(*values: float) -> torch.Tensor:
    return torch.tensor(values, dtype=torch.float64)


# ---------------------------------------------------------------------------------------------
# Masks
# ---------------------------------------------------------------------------------------------


def test_mask_intersection_union_by_hand() -> None:
    pred = masks(
        ["##..", "##..", "...."],  # overlap with gt: column 1 of rows 0-1 -> I = 2
        ["....", "....", "...."],  # empty prediction
        ["#...", "....", "...."],  # prediction on an empty ground truth
        ["....", "....", "...."],  # both empty
    )
    gt = masks(
        [".##.", ".##.", "...."],  # union: columns 0-2 of rows 0-1 -> U = 6
        ["##..", "....", "...."],  # I = 0, U = 2
        ["....", "....", "...."],  # I = 0, U = 1
        ["....", "....", "...."],  # I = 0, U = 0
    )
    inter, union = mask_intersection_union(pred, gt)
    assert_close(inter, torch.tensor([2, 0, 0, 0]))
    assert_close(union, torch.tensor([6, 2, 1, 0]))
    # IoU = 2/6, 0/2, 0/1, and 0 for two empty masks (pycocotools' convention)
    assert_close(mask_iou(pred, gt), f64(1 / 3, 0.0, 0.0, 0.0))


def test_empty_masks_agree_with_pycocotools() -> None:
    empty = np.zeros((3, 4), dtype=np.uint8)
    full = np.ones((3, 4), dtype=np.uint8)
    for pred, gt in [(empty, full), (full, empty), (empty, empty)]:
        expected = coco_mask.iou([encode(pred)], [encode(gt)], [0])[0, 0]
        ours = mask_iou(torch.from_numpy(pred[None]).bool(), torch.from_numpy(gt[None]).bool())
        assert_close(ours, f64(expected))
        assert expected == 0.0


def encode(mask: np.ndarray) -> dict:
    return coco_mask.encode(np.asfortranarray(mask.astype(np.uint8)))


def test_mask_iou_matches_pycocotools_on_random_masks() -> None:
    generator = torch.Generator().manual_seed(0)
    fill = torch.rand(64, 1, 1, generator=generator)  # a different density per sample
    pred = torch.rand(64, 17, 23, generator=generator) < fill
    gt = torch.rand(64, 17, 23, generator=generator) < fill.flip(0)
    pred[:3] = False  # empty predictions, one of them on ...
    gt[2] = False  # ... an empty ground truth
    dt_rles = [encode(m.numpy()) for m in pred]
    gt_rles = [encode(m.numpy()) for m in gt]
    expected = np.diag(coco_mask.iou(dt_rles, gt_rles, [0] * len(gt_rles)))
    assert_close(mask_iou(pred, gt), torch.tensor(expected))


def test_overall_and_mean_iou_differ_on_big_and_small_objects() -> None:
    pred = torch.zeros(2, 12, 12, dtype=torch.bool)
    gt = torch.zeros(2, 12, 12, dtype=torch.bool)
    gt[0, 1:11, 1:11] = True  # big object, 10 x 10 = 100 pixels
    pred[0, 1:10, 1:11] = True  # 9 x 10 = 90 of them, nothing else: I = 90, U = 100
    gt[1, 0:2, 0:2] = True  # small object, 2 x 2 = 4 pixels
    pred[1, 0:2, 1:3] = True  # shifted one column: I = 2, U = 6
    inter, union = mask_intersection_union(pred, gt)
    assert_close(inter, torch.tensor([90, 2]))
    assert_close(union, torch.tensor([100, 6]))
    # overall IoU = (90 + 2) / (100 + 6) = 92 / 106 ~ 0.868: the big object dominates
    assert_close(overall_iou(inter, union), 92 / 106)
    # mean IoU = (90/100 + 2/6) / 2 = 37 / 60 ~ 0.617: the small miss counts as much
    assert_close(mean_iou(iou_from_counts(inter, union)), 37 / 60)


def test_overall_iou_of_only_empty_unions_is_zero() -> None:
    assert overall_iou(torch.tensor([0, 0]), torch.tensor([0, 0])) == 0.0


def test_precision_at_counts_iou_exactly_at_the_threshold() -> None:
    # IoUs exactly 1/2, 3/5, 7/10, 4/5, 9/10, from integer counts as an evaluation makes them
    ious = iou_from_counts(torch.tensor([1, 3, 7, 4, 9]), torch.tensor([2, 5, 10, 5, 10]))
    assert precision_at(ious) == {
        "Pr@0.5": 5 / 5,  # >= : every IoU reaches its own threshold
        "Pr@0.6": 4 / 5,
        "Pr@0.7": 3 / 5,
        "Pr@0.8": 2 / 5,
        "Pr@0.9": 1 / 5,
    }
    assert precision_at(ious, strict=True) == {  # MCN's ">": the one at the threshold fails
        "Pr@0.5": 4 / 5,
        "Pr@0.6": 3 / 5,
        "Pr@0.7": 2 / 5,
        "Pr@0.8": 1 / 5,
        "Pr@0.9": 0 / 5,
    }
    float32_ious = torch.tensor([0.7, 0.69], dtype=torch.float32)  # compared in float32
    assert precision_at(float32_ious, (0.7,)) == {"Pr@0.7": 0.5}


# ---------------------------------------------------------------------------------------------
# Boxes and the Inconsistency Error
# ---------------------------------------------------------------------------------------------


def test_box_iou_by_hand() -> None:
    a = torch.tensor([[0.0, 0.0, 2.0, 2.0], [0.0, 0.0, 2.0, 2.0], [0.0, 0.0, 1.0, 1.0]])
    b = torch.tensor([[1.0, 1.0, 3.0, 3.0], [0.0, 0.0, 2.0, 1.0], [2.0, 2.0, 3.0, 3.0]])
    # 1: overlap 1 x 1 = 1, union 4 + 4 - 1 = 7 -> 1/7
    # 2: b inside a: 2 / 4 -> 1/2 (continuous areas, no +1)
    # 3: disjoint -> 0
    assert_close(box_iou(a, b), f64(1 / 7, 1 / 2, 0.0))
    zero = torch.zeros(1, 4)
    assert_close(box_iou(zero, zero), f64(0.0))  # two zero-area boxes, as pycocotools


def test_box_iou_matches_pycocotools_on_random_boxes() -> None:
    generator = torch.Generator().manual_seed(1)
    corners = torch.rand(200, 2, 2, generator=generator, dtype=torch.float64) * 40  # (B, 2, xy)
    sizes = torch.rand(200, 2, 2, generator=generator, dtype=torch.float64) * 30
    a = torch.cat([corners[:, 0], corners[:, 0] + sizes[:, 0]], dim=1)  # (B, 4) xyxy
    b = torch.cat([corners[:, 1], corners[:, 1] + sizes[:, 1]], dim=1)

    def xywh(boxes: torch.Tensor) -> np.ndarray:
        return torch.cat([boxes[:, :2], boxes[:, 2:] - boxes[:, :2]], dim=1).numpy()

    expected = np.diag(coco_mask.iou(xywh(a), xywh(b), [0] * len(b)))
    assert_close(box_iou(a, b), torch.tensor(expected))
    assert 0 < (box_iou(a, b) == 0).sum() < len(a)  # both overlapping and disjoint pairs


def test_accuracy_at() -> None:
    box_ious = f64(0.5, 0.49, 0.8, 0.2)
    assert accuracy_at(box_ious) == 2 / 4  # 0.5 counts (>=)
    assert accuracy_at(box_ious, strict=True) == 1 / 4  # MCN's ">"


def test_inconsistency_error_by_hand() -> None:
    box_ious = f64(0.8, 0.3, 0.9, 0.2, 0.5)
    mask_ious = f64(0.2, 0.7, 0.6, 0.1, 0.6)
    # 1 box right, mask wrong: inconsistent   2 mask right, box wrong: inconsistent
    # 3 both right: consistent                4 both wrong: consistent
    # 5 box IoU exactly 0.5 is not "> 0.5", the mask is right: inconsistent
    assert_close(inconsistency_error(box_ious, mask_ious), 3 / 5)


# ---------------------------------------------------------------------------------------------
# Breakdown by phenomenon
# ---------------------------------------------------------------------------------------------


def test_breakdown_by_tag_counts_each_tag() -> None:
    inter = torch.tensor([1, 3, 0, 2])
    union = torch.tensor([2, 4, 5, 2])  # IoU 0.5, 0.75, 0, 1
    tags = [("category",), ("location", "relation"), ("category", "location"), ()]
    table = breakdown_by_tag(inter, union, tags)
    assert list(table.index) == ["all", "category", "location", "relation"]
    assert table["n"].to_dict() == {"all": 4, "category": 2, "location": 2, "relation": 1}
    # category: samples 1, 3 -> overall (1 + 0) / (2 + 5) = 1/7, mean (0.5 + 0) / 2 = 0.25
    assert_close(table.loc["category", "overall_iou"], 1 / 7)
    assert_close(table.loc["category", "mean_iou"], 0.25)
    # location: samples 2, 3 -> Pr@0.5 = 1/2; all: (1 + 3 + 0 + 2) / (2 + 4 + 5 + 2) = 6/13
    assert_close(table.loc["location", "Pr@0.5"], 0.5)
    assert_close(table.loc["all", "overall_iou"], 6 / 13)
    with pytest.raises(ValueError, match="unknown phenomenon"):
        breakdown_by_tag(inter, union, [("colour",), (), (), ()])


# ---------------------------------------------------------------------------------------------
# SegmentationMeter
# ---------------------------------------------------------------------------------------------


def test_meter_reports_extra_threshold_beside_the_fixed_half() -> None:
    probs = torch.tensor([[[0.9, 0.4], [0.1, 0.2]]])  # (1, 2, 2)
    gt = masks(["##", ".."])
    # at 0.5: predicted {(0,0)} -> I = 1, U = 2, IoU 0.5; at 0.35: {(0,0), (0,1)} -> IoU 1
    meter = SegmentationMeter(thresholds=(0.5, 0.35))
    meter.update(probs, gt, from_logits=False)
    summary = meter.summary()
    assert summary["n"] == 1
    assert_close(summary["overall_iou"], 0.5)
    assert_close(summary["mean_iou"], 0.5)
    assert summary["Pr@0.5"] == 1.0 and summary["Pr@0.6"] == 0.0
    assert_close(summary["overall_iou@0.35"], 1.0)
    assert_close(summary["mean_iou@0.35"], 1.0)
    assert summary["Pr@0.9@0.35"] == 1.0
    assert "Acc@0.5" not in summary and "IE" not in summary

    from_logits = SegmentationMeter(thresholds=(0.35,))  # 0.5 is always added, first
    from_logits.update(torch.logit(probs), gt)
    assert from_logits.thresholds == (0.5, 0.35)
    assert from_logits.summary() == summary
    assert list(from_logits.per_sample().columns) == [
        "intersection", "union", "iou", "intersection@0.35", "union@0.35", "iou@0.35", "tags",
    ]  # fmt: skip


def test_meter_boxes_give_accuracy_and_inconsistency_error() -> None:
    gt = masks(["##..", "##.."], ["##..", "##.."], ["##..", "##.."])
    probs = torch.stack(
        [
            masks(["..##", "..##"])[0],  # mask wrong (IoU 0) ...
            gt[1],  # mask right
            gt[2],  # mask right
        ]
    ).double()
    gt_boxes = torch.tensor([[0.0, 0.0, 2.0, 2.0]]).repeat(3, 1)
    pred_boxes = torch.tensor(
        [
            [0.0, 0.0, 2.0, 2.0],  # ... box right: inconsistent
            [2.0, 0.0, 4.0, 2.0],  # box wrong (disjoint): inconsistent
            [0.0, 0.0, 2.0, 2.0],  # both right
        ]
    )
    meter = SegmentationMeter()
    meter.update(probs, gt, [("size",), ("location",), ()], pred_boxes, gt_boxes, from_logits=False)
    summary = meter.summary()
    assert_close(summary["Acc@0.5"], 2 / 3)
    assert_close(summary["IE"], 2 / 3)
    assert_close(summary["mean_iou"], 2 / 3)
    assert_close(torch.tensor(meter.per_sample()["box_iou"].to_numpy()), f64(1.0, 0.0, 1.0))
    assert meter.by_tag()["n"].to_dict() == {"all": 3, "size": 1, "location": 1}
    with pytest.raises(ValueError, match="every update or in none"):
        meter.update(probs, gt, from_logits=False)


def test_meter_accumulates_batches() -> None:
    gt = masks(["#.", ".."], ["##", "##"])
    logits = torch.tensor([[[5.0, -5.0], [-5.0, -5.0]], [[5.0, 5.0], [-5.0, -5.0]]])
    meter = SegmentationMeter()
    meter.update(logits[:1], gt[:1])  # I = 1, U = 1
    meter.update(logits[1:], gt[1:])  # I = 2, U = 4
    assert_close(meter.summary()["overall_iou"], 3 / 5)
    assert_close(meter.summary()["mean_iou"], (1 + 0.5) / 2)
    assert len(meter) == 2


def test_shape_errors_are_clear() -> None:
    with pytest.raises(ValueError, match=r"\(B, H, W\)"):
        mask_iou(torch.zeros(2, 3, 3, dtype=torch.bool), torch.zeros(2, 3, 4, dtype=torch.bool))
    with pytest.raises(ValueError, match="must be bool"):
        mask_iou(torch.zeros(1, 3, 3), torch.zeros(1, 3, 3, dtype=torch.bool))
    with pytest.raises(ValueError, match=r"\(B, 4\)"):
        box_iou(torch.zeros(2, 4), torch.zeros(2, 5))
    with pytest.raises(ValueError, match="no samples"):
        SegmentationMeter().summary()


# ---------------------------------------------------------------------------------------------
# Choosing a threshold
# ---------------------------------------------------------------------------------------------


def toy_validation_set() -> tuple[torch.Tensor, torch.Tensor]:
    probs = torch.tensor([[[0.2, 0.45, 0.7, 0.9]]])  # (1, 1, 4)
    gt = masks([".###"])
    # candidates 0.1 -> I 3 / U 4 = 0.75, 0.3 -> 3/3 = 1, 0.5 -> 2/3, 0.8 -> 1/3: pick 0.3
    return probs, gt


def test_choose_threshold_picks_the_best_on_val() -> None:
    probs, gt = toy_validation_set()
    candidates = (0.1, 0.3, 0.5, 0.8)
    assert choose_threshold(probs, gt, split="val", candidates=candidates) == 0.3
    batches = [(probs, gt), (probs[0], gt[0])]  # a (B, H, W) batch, then one (H, W) sample
    assert choose_threshold(batches, split="val", candidates=candidates) == 0.3
    assert choose_threshold([probs[0]], [gt[0]], split="val", candidates=candidates) == 0.3


@pytest.mark.parametrize("split", ["test", "testA", "testB"])
def test_choose_threshold_refuses_test_splits(split: str) -> None:
    def never_read():
        raise AssertionError("the data were read before the split was checked")
        yield

    with pytest.raises(ValueError, match="validation split only"):
        choose_threshold(never_read(), split=split)
