"""Recurrent instance segmentation (Romera-Paredes & Torr 2016): the instance tasks on ShapeRef,
the instance metrics against hand-computed cases, the model's constants, stopping rule and
curriculum, and one short run through the harness."""

from __future__ import annotations

import math

import pytest
import torch

from refseg_lib.data import Collate, Vocabulary, build_dataset
from refseg_lib.data.instances import ALL_SENTENCE, PLURALS, InstanceTask
from refseg_lib.metrics import (
    InstanceMeter,
    average_precision,
    best_dice,
    symmetric_best_dice,
)
from refseg_lib.models import build_model
from refseg_lib.models.ris import NOTHING, emitted_count


def boxes(*spans, size=8):
    """Masks (N, size, size) with rows/cols ``[a, b)`` set, one per (a, b, c, d) span."""
    out = torch.zeros(len(spans), size, size, dtype=torch.bool)
    for k, (a, b, c, d) in enumerate(spans):
        out[k, a:b, c:d] = True
    return out


def task_batch(query="all", n=4):
    data = InstanceTask(build_dataset("shapes", split="val", num_samples=n), query)
    vocabulary = Vocabulary.build(data.sentences)
    collate = Collate(vocabulary)
    return data, vocabulary, collate, collate([data[i] for i in range(n)])


def test_all_instances_task_keeps_every_object_and_their_union():
    data, *_ = task_batch()
    base = build_dataset("shapes", split="val", num_samples=4)
    for i in range(4):
        sample, original = data[i], base[i]
        assert sample.sentence == ALL_SENTENCE
        assert torch.equal(sample.instance_masks, original.instance_masks)
        assert torch.equal(sample.mask, original.instance_masks.any(0))
        assert sample.referent_index == 0 and sample.tags == ()


def test_plural_query_selects_exactly_the_objects_with_the_named_property():
    data = InstanceTask(build_dataset("shapes", split="val", num_samples=40), "plural")
    kinds = set()
    for i in range(40):
        sample = data[i]
        objects = sample.meta["scene"].objects
        words = sample.sentence.split()
        assert words[:2] == ["all", "the"]
        if sample.tags == ("category",):
            selected = [PLURALS[o.category] == words[2] for o in objects]
        else:
            kind = "color" if sample.tags == ("attribute",) else "size"
            selected = [getattr(o, kind) == words[2] for o in objects]
        keep = [k for k, s in enumerate(selected) if s]
        assert keep and torch.equal(sample.instance_masks, data.dataset[i].instance_masks[keep])
        assert data.sentences[i] == sample.sentence  # the vocabulary sees the same sentences
        kinds.add(sample.tags)
    assert kinds == {("category",), ("attribute",), ("size",)}
    with pytest.raises(ValueError, match="use query='all'"):
        InstanceTask(torch.utils.data.TensorDataset(torch.zeros(2)), "plural")
    with pytest.raises(ValueError, match="unknown instance query"):
        InstanceTask(data.dataset, "some")


def test_symmetric_best_dice_and_ap_on_hand_computed_cases():
    gt = boxes((0, 2, 0, 2), (4, 8, 4, 8))  # areas 4 and 16
    half = boxes((0, 2, 0, 1))  # area 2 inside the first: Dice 2*2/(2+4) = 2/3
    assert best_dice(gt, gt) == pytest.approx(1.0)
    assert best_dice(half, gt) == pytest.approx(2 / 3)
    assert best_dice(gt, half) == pytest.approx((2 / 3 + 0) / 2)
    assert symmetric_best_dice(half, gt) == pytest.approx(1 / 3)
    assert symmetric_best_dice(gt[:0], gt) == 0.0
    # ranked hits T, F, T over 2 positives: precision 1, 1/2, 2/3 at recall 1/2, 1/2, 1;
    # envelope 1 then 2/3: AP = 1/2 * 1 + 1/2 * 2/3
    ap = average_precision(torch.tensor([0.9, 0.8, 0.7]), torch.tensor([True, False, True]), 2)
    assert ap == pytest.approx(0.5 + 1 / 3)
    assert average_precision(torch.tensor([0.1, 0.9]), torch.tensor([True, False]), 1) == \
        pytest.approx(0.5)


def test_instance_meter_counts_matches_and_duplicates():
    gt = boxes((0, 2, 0, 2), (4, 8, 4, 8))
    meter = InstanceMeter()
    # steps: the big object, the big object again (a duplicate), the small one, then noise
    masks = torch.stack([gt[1], gt[1], gt[0], boxes((2, 3, 6, 7))[0]])
    meter.update(masks, torch.tensor([0.9, 0.8, 0.7, 0.2]), 3, gt)
    meter.update(gt[:1], torch.tensor([0.6]), 1, gt)  # stops one short
    summary = meter.summary()
    assert summary["count_acc"] == 0.0
    assert summary["dic"] == pytest.approx((1 - 1) / 2)  # +1 and -1
    assert summary["abs_dic"] == pytest.approx(1.0)
    assert summary["best_overlap"] == pytest.approx((1.0 + 0.5) / 2)
    # ranked: 0.9 hit, 0.8 duplicate (miss), 0.7 hit, 0.6 hit, 0.2 miss; 4 positives
    expected = 0.25 * 1 + 0.25 * 0.75 + 0.25 * 0.75
    assert summary["ap@0.5"] == pytest.approx(expected)
    with pytest.raises(ValueError, match="emitted must be"):
        meter.update(masks, torch.ones(4), 5, gt)


def test_model_constants_outputs_and_the_stopping_rule():
    data, vocabulary, collate, batch = task_batch()
    torch.manual_seed(0)
    model = build_model("ris", vocab_size=len(vocabulary))
    assert model.lstm.cells[0].gates.bias[0].item() == 1.0  # i, f, o biases at 1
    assert model.confidence_head.bias.item() == 10.0
    model.eval()
    with torch.no_grad():
        out = model(batch.images, batch.tokens, batch.lengths)
    steps = model.config.max_steps
    side = -(-batch.images.shape[-1] // 8)  # the quick profile's stride-8 state
    assert out.instances.shape == (4, steps, side, side) and out.confidence.shape == (4, steps)
    # spatial inhibition: exp(logit - b) sums to one over the pixels of every step
    mass = (out.instances - model.mask_bias).exp().sum((2, 3))
    torch.testing.assert_close(mass, torch.ones_like(mass))
    assert (out.aux["emitted"] == steps).all()  # every step starts confident (bias 10)
    torch.testing.assert_close(out.mask_logits, out.instances.amax(1))
    confidence = torch.tensor([[0.9, 0.4, 0.8], [0.2, 0.9, 0.9], [0.6, 0.7, 0.5]])
    assert emitted_count(confidence).tolist() == [1, 0, 3]


def test_union_covers_only_the_emitted_steps():
    data, vocabulary, collate, batch = task_batch()
    model = build_model("ris", vocab_size=len(vocabulary)).eval()
    with torch.no_grad():
        model.confidence_head.bias.fill_(-10.0)  # nothing is confident: nothing is emitted
        out = model(batch.images, batch.tokens, batch.lengths)
    assert (out.aux["emitted"] == 0).all() and (out.mask_logits == NOTHING).all()


def test_curriculum_steps_and_the_loss_train_masks_and_confidences():
    data, vocabulary, collate, batch = task_batch()
    model = build_model("ris", vocab_size=len(vocabulary), train_steps=2).train()
    assert model(batch.images, batch.tokens, batch.lengths).instances.shape[1] == 2
    model.eval()
    assert model(batch.images, batch.tokens, batch.lengths).instances.shape[1] == 8
    model = build_model("ris", vocab_size=len(vocabulary)).train()
    out = model(batch.images, batch.tokens, batch.lengths)
    loss, parts = model.training_loss(out, batch)
    loss.backward()
    assert math.isfinite(loss.item())
    assert parts["matched_per_image"] == pytest.approx(
        sum(m.shape[0] for m in batch.instance_masks) / 4)  # every object matched (n + 2 steps)
    for name in ("mask_head.weight", "mask_bias", "confidence_head.weight",
                 "lstm.cells.0.gates.weight", "backbone.stages.0.0.0.weight"):
        assert model.get_parameter(name).grad.abs().sum() > 0, name


def test_conditioned_model_reads_the_sentence():
    data, vocabulary, collate, batch = task_batch("plural")
    torch.manual_seed(0)
    model = build_model("ris", vocab_size=len(vocabulary), conditioned=True).eval()
    other = collate([data[0].replace(sentence="all the stars")] * 4)
    with torch.no_grad():
        a = model(batch.images[:1], batch.tokens[:1], batch.lengths[:1]).instances
        b = model(batch.images[:1], other.tokens[:1], other.lengths[:1]).instances
    assert not torch.allclose(a, b)
    with pytest.raises(TypeError, match="vocab_size"):
        build_model("ris", conditioned=True)
    with pytest.raises(ValueError, match="loss_form"):
        build_model("ris", loss_form="other")


def test_run_ris_records_the_curriculum_stages_and_instance_metrics(tmp_path, monkeypatch):
    from refseg_lib.experiments import run_ris
    from refseg_lib.records import load_run_records

    monkeypatch.setenv("REFSEG_REPORTS", str(tmp_path / "reports"))
    monkeypatch.setenv("REFSEG_CHECKPOINTS", str(tmp_path / "checkpoints"))
    experiment = run_ris("all", steps=3, curriculum_steps=1, eval_samples=8, progress=False,
                         train_overrides={"batch_size": 4})
    assert experiment.train.steps == 2  # stage 2: 3 - 1 steps
    records = load_run_records(tmp_path / "reports" / "runs")
    assert sorted(records["variant"]) == ["all-curriculum", "all-stage1"]
    final = records[records["variant"] == "all-curriculum"].iloc[0]
    assert final["config"]["task"] == "all" and final["config"]["init_from"]
    assert {"count_acc", "abs_dic", "sbd", "best_overlap", "ap@0.5"} <= set(records.columns)
    assert 0 <= final["count_acc"] <= 1
    assert [p["step"] for p in final["curve"]] == [1, 2] and "count_acc" in final["curve"][0]


def test_all_instances_task_on_a_refer_dataset(tmp_path):
    from refseg_lib.data.refer_fixture import write_refer_fixture

    root = write_refer_fixture(tmp_path)
    base = build_dataset("refcoco", split="val", root=root)
    data = InstanceTask(base, "all")
    assert data.sentences == [ALL_SENTENCE] * len(base)
    sample, original = data[0], base[0]
    assert torch.equal(sample.instance_masks, original.instance_masks)
    assert torch.equal(sample.mask, original.instance_masks.any(0))
    with pytest.raises(ValueError, match="symbolic scenes"):
        InstanceTask(base, "plural")
