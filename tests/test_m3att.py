"""M3Att components (our reading of the abstract; refseg_lib.models.m3att): the attention
written out, the abstract's claim that M3Att's output carries language, padding, IMI, LFR."""

from __future__ import annotations

import math

import pytest
import torch

from refseg_lib.models.m3att import CrossAttention, M3DecLayer, MutualAttention, lfr_loss


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
