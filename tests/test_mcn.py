"""MCN: anchors and the REC loss (eq. 4), GARAN, the structures of Tables 2-3, the joint loss
(eq. 12), test-time post-processing and the experiment path that records Table 1."""

from __future__ import annotations

import math
from types import SimpleNamespace

import pytest
import torch
from test_dmn import VOCAB, inputs

from refseg_lib.experiments import PAPER_IMAGE_SIZE, PAPER_TRAIN, run_mcn
from refseg_lib.losses import downsampled_mask_bce, rec_loss
from refseg_lib.models import build_model
from refseg_lib.models.mcn import GARAN, VARIANTS, MCNConfig
from refseg_lib.nn.anchors import anchor_kmeans, best_box, decode_boxes
from refseg_lib.records import load_run_records

ANCHORS = torch.tensor([[8.0, 8.0], [16.0, 16.0], [32.0, 16.0]])


def encode(box, anchor, stride):
    """The head's raw numbers that decode to ``box`` (xyxy) at ``anchor``: the inverse of
    YOLOv3's parametrisation, written out."""
    cx, cy = (box[0] + box[2]) / 2 / stride, (box[1] + box[3]) / 2 / stride
    fx, fy = cx - math.floor(cx), cy - math.floor(cy)
    w, h = box[2] - box[0], box[3] - box[1]
    return [math.log(fx / (1 - fx)), math.log(fy / (1 - fy)), math.log(w / anchor[0]),
            math.log(h / anchor[1])], (math.floor(cy), math.floor(cx))


def test_decoding_inverts_the_yolo_parametrisation_and_picks_the_best_anchor():
    raw = torch.full((1, 3, 5, 2, 2), -6.0)  # every score ~0
    numbers, (row, col) = encode([40.0, 10.0, 56.0, 30.0], ANCHORS[1], stride=32)
    raw[0, 1, :4, row, col] = torch.tensor(numbers)
    raw[0, 1, 4, row, col] = 3.0
    boxes, logits = decode_boxes(raw, ANCHORS, 32)
    torch.testing.assert_close(boxes[0, 1, row, col], torch.tensor([40.0, 10.0, 56.0, 30.0]))
    box, score = best_box(raw, ANCHORS, 32)
    torch.testing.assert_close(box[0], torch.tensor([40.0, 10.0, 56.0, 30.0]))
    assert score[0] == pytest.approx(torch.sigmoid(torch.tensor(3.0)).item())


def test_anchor_kmeans_finds_three_planted_sizes():
    generator = torch.Generator().manual_seed(0)
    planted = torch.tensor([[6.0, 6.0], [12.0, 20.0], [30.0, 28.0]])
    wh = (planted.repeat(100, 1) * (1 + 0.05 * torch.randn(300, 2, generator=generator)))
    torch.testing.assert_close(anchor_kmeans(wh), planted, atol=1.0, rtol=0.05)


def test_rec_loss_is_lowest_for_the_encoded_truth_and_ignores_good_anchors():
    gt = torch.tensor([[40.0, 10.0, 56.0, 30.0]])  # 16 x 20: best shape IoU with anchor 1
    numbers, (row, col) = encode(gt[0].tolist(), ANCHORS[1], stride=32)
    truth = torch.full((1, 3, 5, 2, 2), -9.0)
    truth[0, :, :4] = 0.0
    truth[0, 1, :4, row, col] = torch.tensor(numbers)
    truth[0, 1, 4, row, col] = 9.0
    best, parts = rec_loss(truth, gt, ANCHORS, 32, (64, 64))
    # at the truth only the centre's BCE is left, the entropy of its targets (eq. 4's weight)
    entropy = sum(-p * math.log(p) - (1 - p) * math.log(1 - p)
                  for p in torch.sigmoid(torch.tensor(numbers[:2])).tolist())
    assert parts["rec_box"] == pytest.approx((2 - 16 * 20 / 64**2) * entropy, rel=1e-5)
    for shift in ([0, 1], [2, 3]):  # a wrong centre, a wrong size: both cost more
        worse = truth.clone()
        worse[0, 1, shift, row, col] += 1.0
        assert rec_loss(worse, gt, ANCHORS, 32, (64, 64))[0] > best
    # an anchor whose box already overlaps the referent by IoU > 0.5 is not penalised for its
    # score (YOLOv3's ignore rule); one that does not, is
    overlapping, away = truth.clone(), truth.clone()
    overlapping[0, 0, :4, row, col] = torch.tensor([*numbers[:2], math.log(2.0), math.log(2.5)])
    overlapping[0, 0, 4, row, col] = away[0, 0, 4, 1 - row, 1 - col] = 5.0
    assert rec_loss(overlapping, gt, ANCHORS, 32, (64, 64))[1]["rec_conf"] == pytest.approx(
        parts["rec_conf"], abs=1e-3)
    assert rec_loss(away, gt, ANCHORS, 32, (64, 64))[1]["rec_conf"] > parts["rec_conf"] + 4


def test_eq3_downsamples_the_truth_by_area():
    masks = torch.zeros(1, 8, 8, dtype=torch.bool)
    masks[0, :4, :2] = True  # covers cell (0, 0) of a 2x2 map by half
    logits = torch.zeros(1, 2, 2, requires_grad=True)
    loss = downsampled_mask_bce(logits, masks)
    assert loss.item() == pytest.approx(4 * math.log(2))  # BCE at logit 0 is log 2 anywhere
    (grad,) = torch.autograd.grad(loss, logits)
    torch.testing.assert_close(grad, torch.tensor([[[0.0, 0.5], [0.5, 0.5]]]))  # sigmoid - g


def test_garan_equals_its_heads_written_out():
    torch.manual_seed(0)
    module = GARAN(4, 3, heads=2).double().eval()
    x, text = torch.randn(2, 4, 3, 5, dtype=torch.double), torch.randn(2, 3, dtype=torch.double)
    out, f_att, collect = module(x, text)
    k_c, v, k_d = module.keys_values(x).chunk(3, dim=1)
    q = module.query(text)
    expected = torch.zeros_like(x)
    for b in range(2):
        for h, sl in enumerate((slice(0, 2), slice(2, 4))):
            qh = q[b, sl]
            a = torch.softmax(torch.einsum("c,cyx->yx", qh, k_c[b, sl]).flatten() / math.sqrt(2), 0)
            torch.testing.assert_close(collect[b, h].flatten(), a)
            gathered = v[b, sl].flatten(1) @ a  # (2,)
            d = torch.sigmoid(torch.einsum("c,cyx->yx", qh, k_d[b, sl]) / math.sqrt(2))
            expected[b, sl] = gathered[:, None, None] * d[None]
    torch.testing.assert_close(f_att, expected)
    torch.testing.assert_close(out, torch.nn.functional.leaky_relu(module.norm(expected + x), 0.1))


@pytest.mark.parametrize("variant", list(VARIANTS))
def test_every_structure_builds_trains_every_parameter_and_gives_its_outputs(variant):
    torch.manual_seed(0)
    model = build_model("mcn", vocab_size=VOCAB, **VARIANTS[variant][0])
    images, tokens, lengths = inputs(steps=5)
    masks = torch.zeros(3, 64, 64, dtype=torch.bool)
    masks[:, 10:30, 20:40] = True
    batch = SimpleNamespace(images=images, masks=masks,
                            boxes=torch.tensor([[20.0, 10.0, 40.0, 30.0]] * 3))
    out = model(images, tokens, lengths)
    loss, parts = model.training_loss(out, batch)
    loss.backward()
    assert [n for n, p in model.named_parameters() if p.grad is None] == []
    config = model.config
    assert ("rec" in parts) == (config.rec_scale is not None)
    assert ("res" in parts) == (config.res_scale is not None)
    assert ("cem" in parts) == (config.cem != "off")
    assert (out.box is None) == (config.rec_scale is None)
    side = {"13": 2, "52": 8, None: 64}[config.res_scale]  # Single_REC: its box as the mask
    assert out.mask_logits.shape == (3, side, side)
    if out.box is not None:
        assert out.box.shape == (3, 4) and ((out.confidence >= 0) & (out.confidence <= 1)).all()


def test_bottom_up_connection_lets_the_fine_map_reach_rec():
    torch.manual_seed(0)
    images, tokens, lengths = inputs(steps=5)
    for bottom_up in (True, False):
        model = build_model("mcn", vocab_size=VOCAB, bottom_up=bottom_up).eval()
        fused, *_ = model.fuse(images, tokens, lengths)
        grad = torch.autograd.grad(fused["13"].sum(), fused["52"], allow_unused=True)[0]
        assert (grad is not None) == bottom_up


def test_eval_mode_post_processes_the_mask_with_the_box():
    torch.manual_seed(0)
    model = build_model("mcn", vocab_size=VOCAB).eval()
    images, tokens, lengths = inputs(steps=5)
    with torch.no_grad():
        outputs = {}
        for name in ("none", "roi", "soft_nls", "asnls"):
            model.postprocess = name
            outputs[name] = model(images, tokens, lengths)
    raw = torch.sigmoid(outputs["none"].mask_logits)
    box = outputs["none"].box / 8
    from refseg_lib.postprocess import asnls, inside_box

    inside = inside_box(box, raw.shape[-2:])
    roi = torch.sigmoid(outputs["roi"].mask_logits)
    assert (roi[~inside] < 1e-5).all()
    torch.testing.assert_close(roi[inside], raw[inside])
    expected = asnls(raw, box, outputs["none"].confidence).clamp(1e-6, 1 - 1e-6)
    torch.testing.assert_close(torch.sigmoid(outputs["asnls"].mask_logits), expected)
    model.train()
    assert model(images, tokens, lengths).mask_logits.shape == (3, 8, 8)  # raw in training


def test_invalid_structures_fail_with_a_clear_message():
    with pytest.raises(ValueError, match="CEM ties two separate branches"):
        MCNConfig.quick(vocab_size=5, rec_scale=None)
    with pytest.raises(ValueError, match="rec_scale == res_scale"):
        MCNConfig.quick(vocab_size=5, shared_branch=True)
    with pytest.raises(ValueError, match="postprocess must be one of"):
        MCNConfig.quick(vocab_size=5, postprocess="crop")
    with pytest.raises(ValueError, match="unknown MCN variant"):
        run_mcn("mcn_plus")


def test_run_mcn_records_each_post_processing(tmp_path, monkeypatch):
    monkeypatch.setenv("REFSEG_REPORTS", str(tmp_path / "reports"))
    monkeypatch.setenv("REFSEG_CHECKPOINTS", str(tmp_path / "checkpoints"))
    experiment = run_mcn("cem", train_overrides={"max_steps": 2, "batch_size": 4},
                         eval_samples=8, progress=False, resume=False)
    assert set(experiment.evaluations) == {"val", "val+roi", "val+soft_nls", "val+asnls"}
    assert experiment.model.postprocess == "none"  # restored after the evaluations
    records = load_run_records(tmp_path / "reports" / "runs")
    assert sorted(records["variant"]) == ["cem", "cem+asnls", "cem+roi", "cem+soft_nls"]
    summary = experiment.evaluations["val+asnls"].summary
    assert {"Acc@0.5", "IE@0.35", "overall_iou@0.35", "mean_iou@0.35"} <= set(summary)
    assert "loss" in experiment.train.history_frame() and \
        {"res", "rec", "cem"} <= set(experiment.train.history_frame())


def test_paper_profile_builds_darknet53_and_takes_a_training_step():
    torch.manual_seed(0)
    model = build_model("mcn", profile="paper", vocab_size=VOCAB, pretrained=False)
    assert [model.backbone.strides[i] for i in model.levels] == [32, 16, 8]
    assert model.config.gru_dim == 1024 and model.config.proj_dim == 512
    images, tokens, lengths = inputs(batch=2, size=64, steps=3)
    masks = torch.zeros(2, 64, 64, dtype=torch.bool)
    masks[:, 8:40, 8:40] = True
    batch = SimpleNamespace(images=images, masks=masks, boxes=torch.tensor([[8.0, 8, 40, 40]] * 2))
    out = model(images, tokens, lengths[:2])
    loss, _ = model.training_loss(out, batch)
    loss.backward()
    assert out.mask_logits.shape == (2, 8, 8) and math.isfinite(loss.item())
    assert PAPER_IMAGE_SIZE["mcn"] == 416 and PAPER_TRAIN["mcn"]["batch_size"] == 35
