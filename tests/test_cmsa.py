"""CMSA: eqs. 1-6 against direct computations, the variants of Tables 2 and 3, DenseCRF."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from test_dmn import VOCAB, inputs  # one random padded batch for the model tests

from refseg_lib.data.text import PAD_INDEX
from refseg_lib.experiments import PAPER_TRAIN, run_cmsa
from refseg_lib.models import build_model
from refseg_lib.models.cmsa import (
    ATTENTIONS,
    VARIANTS,
    CrossModalSelfAttention,
    GatedFusion,
    multimodal_features,
)


def reference_attention(module: CrossModalSelfAttention, visual, words, lengths):
    """Eqs. (1)-(4) written out: f for every (n, p), the (NP x NP) weights of eq. (3) with the
    keys each variant allows, the residual, the mean over the real words."""
    f = multimodal_features(visual, words)  # (B, N, h, w, D)
    batch, n, h, w, dim = f.shape
    f = f.reshape(batch, n * h * w, dim)
    c_v = module.visual_dim
    if module.attention == "none":
        out = f
    else:
        Wv, Ww = module.project_visual.weight, module.project_words.weight
        W = torch.cat([Wv[:, :c_v], Ww, Wv[:, c_v:]], dim=1)  # the weight on [v, w, s]
        q, k, v = (f @ W.T + module.project_visual.bias).chunk(3, dim=-1)
        word_of = torch.arange(n).repeat_interleave(h * w)
        pixel_of = torch.arange(h * w).repeat(n)
        valid = word_of[None] < lengths[:, None]  # (B, NP) real-word keys
        same_pixel = pixel_of[:, None] == pixel_of[None]
        same_word = word_of[:, None] == word_of[None]
        allowed = {"full": valid[:, None, :],
                   "word": same_pixel[None] & valid[:, None, :],
                   "pixel": same_word[None].expand(batch, -1, -1),
                   "pair": (same_pixel[None] & valid[:, None, :]) | same_word[None]}
        scores = (q @ k.transpose(1, 2)).masked_fill(~allowed[module.attention], -torch.inf)
        v_hat = torch.softmax(scores, dim=-1) @ v  # eqs. (2)-(3)
        out = module.output(v_hat) + f  # eq. (4), before the mean
    out = out.view(batch, n, h * w, dim)
    real = (torch.arange(n)[None] < lengths[:, None]).float()[:, :, None, None]
    mean = (out * real).sum(1) / lengths[:, None, None]
    return mean.transpose(1, 2).reshape(batch, dim, h, w)


@pytest.mark.parametrize("attention", ATTENTIONS)
def test_attention_equals_eqs_1_to_4_written_out_forward_and_gradients(attention):
    torch.manual_seed(0)
    module = CrossModalSelfAttention(6, 5, 4, attention).double()
    visual = torch.randn(3, 6, 3, 4, dtype=torch.double, requires_grad=True)
    words = torch.randn(3, 4, 5, dtype=torch.double, requires_grad=True)
    lengths = torch.tensor([4, 2, 1])
    ours, _ = module(visual, words, lengths)
    ref = reference_attention(module, visual, words, lengths)
    torch.testing.assert_close(ours, ref)
    weight = torch.randn_like(ref)
    params = [visual, words, *module.parameters()]
    g_ours = torch.autograd.grad((ours * weight).sum(), params)
    g_ref = torch.autograd.grad((ref * weight).sum(), params)
    for a, b in zip(g_ours, g_ref, strict=True):
        torch.testing.assert_close(a, b)


@pytest.mark.parametrize("attention", ["full", "word"])
def test_long_padding_stays_finite_in_the_fused_kernels(attention):
    """Quick-profile sizes (8x8 map, 20 words) with a 1-word sentence: over a thousand padded
    keys in a row, whole key blocks of the fused CPU kernel masked (NaN with -inf masks)."""
    torch.manual_seed(0)
    module = CrossModalSelfAttention(16, 8, 8, attention)
    visual = torch.randn(3, 16, 8, 8, requires_grad=True)
    words = torch.randn(3, 20, 8, requires_grad=True)
    lengths = torch.tensor([20, 3, 1])
    ours, _ = module(visual, words, lengths)
    torch.testing.assert_close(ours, reference_attention(module, visual, words, lengths),
                               rtol=1e-4, atol=1e-4)
    grads = torch.autograd.grad(ours.square().sum(), [visual, words, *module.parameters()])
    assert all(torch.isfinite(g).all() for g in grads)


def test_word_attention_mass_is_a_distribution_over_the_real_words():
    torch.manual_seed(0)
    module = CrossModalSelfAttention(6, 5, 4).eval()
    lengths = torch.tensor([4, 2])
    _, mass = module(torch.randn(2, 6, 3, 3), torch.randn(2, 4, 5), lengths)
    torch.testing.assert_close(mass.sum(1), torch.ones(2))
    assert (mass[1, 2:] == 0).all() and (mass[1, :2] > 0).all()


def reference_gated_fusion(module: GatedFusion, xs):
    """Eqs. (5)-(6) written out level by level, gates [m, r] = sigmoid(Conv3x3(X) + 1)."""
    gates = [torch.sigmoid(conv(x) + 1) for conv, x in zip(module.gates, xs, strict=True)]
    m = [g[:, : x.shape[1]] for g, x in zip(gates, xs, strict=True)]
    r = [g[:, x.shape[1]:] for g, x in zip(gates, xs, strict=True)]
    total = 0
    for i, x in enumerate(xs):
        if module.self_gated:
            g = m[i] * x
        else:
            g = (1 - m[i]) * x
            for j in range(len(xs)):
                if j != i:
                    g = g + module.gamma[j] * m[j] * xs[j]
        total = total + r[i] * torch.tanh(g) + (1 - r[i]) * x
    return total


@pytest.mark.parametrize("self_gated", [False, True])
def test_gated_fusion_equals_eqs_5_and_6_forward_and_gradients(self_gated):
    torch.manual_seed(0)
    module = GatedFusion(4, 3, self_gated=self_gated).double()
    xs = [torch.randn(2, 4, 5, 5, dtype=torch.double, requires_grad=True) for _ in range(3)]
    ours, gates = module(xs)
    ref = reference_gated_fusion(module, xs)
    torch.testing.assert_close(ours, ref)
    assert gates["memory_gates"].shape == (2, 3, 4, 5, 5)
    params = [*xs, *module.parameters()]
    for a, b in zip(torch.autograd.grad(ours.sum(), params), torch.autograd.grad(ref.sum(), params),
                    strict=True):
        torch.testing.assert_close(a, b)


@pytest.mark.parametrize("variant", list(VARIANTS))
def test_every_variant_runs_and_trains_every_parameter(variant):
    torch.manual_seed(0)
    model = build_model("cmsa", vocab_size=VOCAB, **VARIANTS[variant][0])
    out = model(*inputs(steps=5))
    assert out.mask_logits.shape == (3, 8, 8)
    out.mask_logits.square().mean().backward()
    unused = [name for name, p in model.named_parameters() if p.grad is None]
    assert not unused, f"parameters without gradient (DDP would fail): {unused}"


@pytest.mark.parametrize(("single_level", "stride"), [(0, 8), (1, 16), (-1, 32)])
def test_one_level_alone_reads_the_chosen_backbone_map(single_level, stride):
    torch.manual_seed(0)
    model = build_model("cmsa", vocab_size=VOCAB, fusion="none", single_level=single_level)
    batch = inputs(steps=5)
    images = batch[0]
    seen = []
    model.attention[0].register_forward_pre_hook(lambda _, args: seen.append(args[0].shape))
    model(*batch)
    level = model.backbone(images)[-3:][single_level]
    assert images.shape[-1] // level.shape[-1] == stride
    assert seen == [(3, level.shape[1], 8, 8)]  # brought to the stride-8 size
    with pytest.raises(ValueError, match="single_level indexes the 3 levels"):
        build_model("cmsa", vocab_size=VOCAB, fusion="none", single_level=3)


@pytest.mark.parametrize("variant", ["base", "att_pair", "cmsa_s"])
def test_padding_does_not_change_the_prediction(variant):
    torch.manual_seed(0)
    model = build_model("cmsa", vocab_size=VOCAB, **VARIANTS[variant][0]).eval()
    images, tokens, lengths = inputs(steps=5)
    longer = torch.cat([tokens, torch.full((3, 3), PAD_INDEX)], dim=1)
    with torch.no_grad():
        torch.testing.assert_close(model(images, tokens, lengths).mask_logits,
                                   model(images, longer, lengths).mask_logits)


def test_the_prediction_depends_on_the_sentence_and_word_attention_is_reported():
    torch.manual_seed(0)
    model = build_model("cmsa", vocab_size=VOCAB).eval()
    images, tokens, lengths = inputs(steps=5)
    other = tokens.clone()
    other[0, 0] = (tokens[0, 0] + 1) % VOCAB or 2
    with torch.no_grad():
        a, b = model(images, tokens, lengths), model(images, other, lengths)
    assert not torch.allclose(a.mask_logits[0], b.mask_logits[0])
    torch.testing.assert_close(a.mask_logits[1:], b.mask_logits[1:])
    assert a.attention["word_attention"].shape == (3, 3, 5)
    assert a.attention["memory_gates"].shape == (3, 3, 64, 8, 8)


def test_unknown_settings_fail_with_the_choices():
    with pytest.raises(ValueError, match="attention must be one of"):
        build_model("cmsa", vocab_size=VOCAB, attention="global")
    with pytest.raises(ValueError, match="unknown CMSA variant"):
        run_cmsa("gf")


def test_paper_profile_builds_the_dilated_resnet101_and_takes_a_training_step():
    torch.manual_seed(0)
    model = build_model("cmsa", profile="paper", vocab_size=VOCAB, pretrained=False)
    assert model.backbone.strides[-3:] == [8, 8, 8]
    assert model.backbone.channels[-3:] == [512, 1024, 2048]
    images, tokens, lengths = inputs(batch=1, size=64, steps=3)
    out = model(images, tokens, lengths[:1])
    assert out.mask_logits.shape == (1, 8, 8)
    out.mask_logits.mean().backward()
    assert PAPER_TRAIN["cmsa"]["lr"] == 2.5e-4 and PAPER_TRAIN["cmsa"]["weight_decay"] == 5e-4


def test_dense_crf_snaps_a_blurred_probability_to_the_image_edges():
    pytest.importorskip("pydensecrf", reason="the optional [crf] extra is not installed")
    from refseg_lib.postprocess import crf_refine

    image = torch.zeros(1, 3, 32, 32)
    image[:, :, 8:24, 8:24] = 1.0  # a white square on black
    yy, xx = torch.meshgrid(torch.arange(32.0), torch.arange(32.0), indexing="ij")
    blurred = 4.0 - ((yy - 15.5) ** 2 + (xx - 15.5) ** 2).sqrt() / 3  # a soft disc of logits
    refined = crf_refine(image, blurred[None])
    truth = image[0, 0] > 0.5
    def iou(mask):
        return float((mask & truth).sum() / (mask | truth).sum())
    assert iou(refined[0] > 0) > iou(blurred > 0) + 0.05
    assert np.isfinite(refined.numpy()).all()


def test_full_attention_by_length_groups_equals_attention_over_the_padded_positions():
    """_attend_full cuts each group of equal-length sentences to its real words: the same
    values and gradients at every real query as one softmax over the padded N x P keys with
    the padded words masked (its speed-up is the padding it skips)."""
    import torch.nn.functional as F

    from refseg_lib.models import cmsa

    torch.manual_seed(0)
    batch, n, p, d = 6, 5, 12, 4
    lengths = torch.tensor([5, 2, 3, 2, 1, 5])
    valid = torch.arange(n)[None] < lengths[:, None]
    q, k, v = (torch.randn(batch, n, p, d, requires_grad=True) for _ in range(3))
    keys = valid[:, :, None].expand(batch, n, p).reshape(batch, 1, 1, n * p)
    flat = [x.reshape(batch, 1, n * p, d) for x in (q, k, v)]
    padded = F.scaled_dot_product_attention(*flat, attn_mask=cmsa._additive(keys, q.dtype),
                                            scale=1.0).view(batch, n, p, d)
    grouped = cmsa._attend_full(q, k, v, valid)
    real = valid[:, :, None, None]
    torch.testing.assert_close(grouped * real, padded * real)
    assert (grouped[~valid] == 0).all()
    for a, b in zip(torch.autograd.grad((padded * real).sum(), (q, k, v)),
                    torch.autograd.grad((grouped * real).sum(), (q, k, v)), strict=True):
        torch.testing.assert_close(a, b)
