"""DMN: the variants of Table 1, the equations against direct computations, staged training."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from refseg_lib import engine
from refseg_lib.data.text import PAD_INDEX
from refseg_lib.engine import init_weights_from
from refseg_lib.models import build_model
from refseg_lib.models.dmn import VARIANTS, DMNConfig
from refseg_lib.nn.coords import append_coordinates

VOCAB = 20


def inputs(batch=3, size=64, steps=6, seed=0):
    generator = torch.Generator().manual_seed(seed)
    images = torch.rand(batch, 3, size, size, generator=generator)
    tokens = torch.randint(2, VOCAB, (batch, steps), generator=generator)
    lengths = torch.tensor([steps, 3, 1, 5][:batch])
    for row, length in enumerate(lengths):
        tokens[row, length:] = PAD_INDEX
    return images, tokens, lengths


@pytest.mark.parametrize("variant", list(VARIANTS))
@pytest.mark.parametrize("upsampling", [True, False])
def test_every_variant_runs_and_trains_every_parameter(variant, upsampling):
    torch.manual_seed(0)
    model = build_model("dmn", vocab_size=VOCAB, upsampling=upsampling, **VARIANTS[variant][0])
    out = model(*inputs())
    assert out.mask_logits.shape == ((3, 64, 64) if upsampling else (3, 8, 8))
    out.mask_logits.square().mean().backward()
    unused = [name for name, p in model.named_parameters() if p.grad is None]
    assert not unused, f"parameters without gradient (DDP would fail): {unused}"


def test_padding_does_not_change_the_prediction():
    model = build_model("dmn", vocab_size=VOCAB).eval()
    images, tokens, lengths = inputs()
    longer = torch.cat([tokens, torch.full((3, 4), PAD_INDEX)], dim=1)
    with torch.no_grad():
        torch.testing.assert_close(model(images, tokens, lengths).mask_logits,
                                   model(images, longer, lengths).mask_logits)


def test_the_prediction_depends_on_the_sentence():
    model = build_model("dmn", vocab_size=VOCAB).eval()
    images, tokens, lengths = inputs()
    other = tokens.clone()
    other[0, 0] = (tokens[0, 0] + 1) % VOCAB or 2
    with torch.no_grad():
        a, b = model(images, tokens, lengths).mask_logits, model(images, other, lengths).mask_logits
    assert not torch.allclose(a[0], b[0]) and torch.allclose(a[1:], b[1:])


def test_filter_responses_and_eq9_equal_their_direct_definitions():
    """F_t = {f_{k,t} * [I_N, LOC]}_k as K 1x1 convolutions, and M_t = Conv1x1([I_N, F_t, LOC,
    r_t]) as one convolution over the explicit concatenation (eq. 9)."""
    torch.manual_seed(0)
    model = build_model("dmn", vocab_size=VOCAB, upsampling=False).eval()
    images, tokens, lengths = inputs()
    with torch.no_grad():
        visual = model.backbone(images)[model.levels[-1]]
        r, f = model.language_module(tokens, lengths)
        _, responses = model.synthesis_module(visual, r, f, lengths)
        loc_visual = append_coordinates(visual)  # (B, C+8, h, w)
        b, t = 1, 2
        direct = F.conv2d(loc_visual[b:b + 1], f[b, t][:, :, None, None])[0]  # (K, h, w)
        torch.testing.assert_close(responses[b, t], direct)

        C = visual.shape[1]
        weight = torch.cat([model.mix_visual.weight[:, :C], model.mix_responses.weight,
                            model.mix_visual.weight[:, C:],
                            model.mix_language.weight[:, :, None, None]], dim=1)
        h, w = visual.shape[-2:]
        concat = torch.cat([visual[b], responses[b, t], loc_visual[b, C:],
                            r[b, t][:, None, None].expand(-1, h, w)])  # [I_N, F_t, LOC, r_t]
        M_direct = F.conv2d(concat[None], weight, model.mix_visual.bias)[0]
        M_ours = (model.mix_visual(loc_visual)[b] + model.mix_responses(responses[b])[t]
                  + model.mix_language(r[b, t])[:, None, None])
        torch.testing.assert_close(M_ours, M_direct, rtol=1e-5, atol=1e-5)


def test_the_upsampling_stage_starts_from_the_low_resolution_stage(tmp_path):
    torch.manual_seed(0)
    low = build_model("dmn", vocab_size=VOCAB, upsampling=False)
    path = tmp_path / "low.pt"
    checkpoint = {key: None for key in engine.CHECKPOINT_KEYS}
    torch.save({**checkpoint, "format": engine.CHECKPOINT_FORMAT, "model": low.state_dict()},
               path)
    torch.manual_seed(1)
    full = build_model("dmn", vocab_size=VOCAB)
    loaded = init_weights_from(full, path)
    assert set(loaded) == set(low.state_dict()) - {"low_res_classifier.weight",
                                                   "low_res_classifier.bias"}
    torch.testing.assert_close(full.msru.rnn.layers[0].weight, low.msru.rnn.layers[0].weight)


def test_config_errors_are_clear():
    with pytest.raises(ValueError, match="rnn must be one of"):
        DMNConfig(vocab_size=5, rnn="gru")
    with pytest.raises(ValueError, match="one stage per scale"):
        DMNConfig.quick(vocab_size=5, um_channels=(8, 8))
    with pytest.raises(TypeError, match="vocab_size"):
        build_model("dmn")


def test_paper_profile_builds_with_dpn92_and_takes_a_training_step():
    """Smoke test at the paper's sizes (sec. 4.3) on a tiny input: 64 px, 2x2 maps at stride 32."""
    torch.manual_seed(0)
    model = build_model("dmn", profile="paper", vocab_size=50, pretrained=False)
    assert model.backbone.channels == [64, 336, 704, 1552, 2688]
    assert model.filters.out_features == 10 * (2688 + 8)  # K filters over [I_5, LOC]
    images, tokens, lengths = inputs(batch=1, steps=4)
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-5)
    out = model(images, torch.clamp(tokens, max=49), lengths)
    assert out.mask_logits.shape == (1, 64, 64)
    loss = F.binary_cross_entropy_with_logits(out.mask_logits, torch.zeros(1, 64, 64))
    loss.backward()
    optimizer.step()
    assert torch.isfinite(loss)
