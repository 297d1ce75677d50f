"""Reference predictors (floors and ceilings) and the best IoU a stride allows."""

import pytest
import torch

from refseg_lib.data import build_dataset
from refseg_lib.metrics import mask_iou
from refseg_lib.reference import (
    REFERENCE_PREDICTORS,
    perfect_at_stride,
    reference_mask,
    reference_metrics,
    stride_ceiling,
    stride_ceilings,
)


@pytest.fixture(scope="module")
def val():
    return build_dataset("shapes", split="val", style="refshape", image_size=64, seed=0)


def test_each_predictor_answers_with_an_object_of_the_scene(val):
    for i in range(20):
        sample, scene = val[i], val.scene(i)
        answers = {k: reference_mask(k, sample, scene) for k in REFERENCE_PREDICTORS}
        areas = sample.instance_masks.flatten(1).sum(1)
        assert torch.equal(answers["largest object"], sample.instance_masks[int(areas.argmax())])
        assert torch.equal(answers["resolver"], sample.mask)
        picked = [k for k, m in enumerate(sample.instance_masks)
                  if torch.equal(m, answers["category reader"])]
        named = scene.objects[sample.referent_index].category
        assert any(scene.objects[k].category == named for k in picked)
    with pytest.raises(ValueError, match="unknown reference predictor"):
        reference_mask("oracle", sample, scene)


def test_floors_sit_between_nothing_and_the_resolver():
    table = reference_metrics(("val",), num_samples=100)
    iou = table["overall_iou"].xs("val", level="split")
    assert iou["resolver"] == 1.0
    assert 0 < iou["largest object"] < iou["category reader"] < 1.0


def test_a_perfect_predictor_at_stride_one_is_exact_and_coarser_strides_lose():
    ceilings = stride_ceilings(num_samples=100)
    assert ceilings[1] == 1.0
    assert ceilings.is_monotonic_decreasing and ceilings[32] < ceilings[8] < ceilings[4]


def test_what_a_stride_keeps_and_loses():
    masks = torch.zeros(3, 32, 32, dtype=torch.bool)
    masks[0] = True  # everything: kept at any stride
    masks[1, 9:12, 9:12] = True  # 9 pixels, under half of any 8x8 cell: lost at stride 8
    masks[2, 8:24, 8:24] = True  # two by two cells: kept up to a blurred edge
    at_8 = perfect_at_stride(masks, 8)
    assert at_8[0].all() and not at_8[1].any()
    assert mask_iou(at_8[2:], masks[2:]).item() > 0.5
    assert stride_ceiling(masks[:1], 16) == 1.0
    # a stride that does not divide the side: ceil(side / stride) cells, as a padded backbone's
    assert perfect_at_stride(masks[:1, :, :30], 8).all()
    pooled = torch.nn.functional.avg_pool2d(masks[2:, None].float(), 8)
    assert torch.equal(torch.nn.functional.adaptive_avg_pool2d(masks[2:, None].float(), 4), pooled)


def test_shaperef_referents_have_refcoco_sizes_and_stride_8_keeps_80_percent():
    """The referent's box covers a median 10-18% of the image (RefCOCO val: 13.8%), 10th
    percentile >= 4%, 90th 30-45%; at the quick profile's size a perfect stride-8 predictor
    reaches >= 80% overall IoU on val (the evaluation's 500 samples)."""
    from refseg_lib.experiments import get_profile
    from refseg_lib.reference import box_area_fractions

    size = get_profile("quick").image_size
    fractions = box_area_fractions("val", image_size=size, num_samples=500)
    p10, p50, p90 = fractions.quantile([0.1, 0.5, 0.9])
    assert 0.10 <= p50 <= 0.18 and p10 >= 0.04 and 0.30 <= p90 <= 0.45, (p10, p50, p90)
    assert stride_ceilings("val", image_size=size, num_samples=500, strides=(8,))[8] >= 0.80


def test_the_harness_records_the_floors_and_the_ceiling(tmp_path, monkeypatch):
    """experiments.run_reference: one record per predictor and split, scored as a model's
    (0.5 and MCN's 0.35, boxes, tags), which every comparison table then shows."""
    from refseg_lib.experiments import run_reference
    from refseg_lib.records import load_run_records
    from refseg_lib.reports.tables import REFERENCE_ROWS, versus_table

    monkeypatch.setenv("REFSEG_REPORTS", str(tmp_path))
    paths = run_reference(eval_splits=("val", "testA"), eval_samples=20)
    assert len(paths) == 6
    records = load_run_records()
    assert set(records["model"]) == {"reference"}
    resolver = records[records["variant"] == "resolver"].iloc[0]
    assert resolver["overall_iou"] == resolver["overall_iou@0.35"] == resolver["Acc@0.5"] == 1.0
    floors = records[(records["split"] == "val") & (records["variant"] != "resolver")]
    assert (floors["overall_iou"] < 1).all() and (floors["n"] == 20).all()
    assert "overall_iou[category only]" in records
    table = versus_table(records.assign(model=records["model"].where(
        records["variant"] != "resolver", "dmn"), variant=records["variant"].where(
        records["variant"] != "resolver", "base")), {("dmn", "base"): "DMN"})
    assert list(table.index) == ["DMN", *list(REFERENCE_ROWS.values())[:2]]
