"""The two baselines behind the model interface: registry, shapes, gradients, language use."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from refseg_lib.data.text import PAD_INDEX
from refseg_lib.models import ModelOutput, build_model, list_models
from refseg_lib.models.baselines import LSTMCNNConfig, bilinear_deconvolution

VOCAB = 20


def inputs(batch=2, size=64, seed=0):
    generator = torch.Generator().manual_seed(seed)
    images = torch.rand(batch, 3, size, size, generator=generator)
    tokens = torch.randint(2, VOCAB, (batch, 6), generator=generator)
    lengths = torch.tensor([6, 3, 5, 1][:batch])
    for row, length in enumerate(lengths):
        tokens[row, length:] = PAD_INDEX
    return images, tokens, lengths


def test_registry_lists_the_baselines_and_names_them_on_error():
    assert {"only_vm", "lstm_cnn"} <= set(list_models())
    with pytest.raises(ValueError, match=r"unknown model 'dmn2'; registered: .*lstm_cnn.*only_vm"):
        build_model("dmn2")


@pytest.mark.parametrize("name, shape", [("only_vm", (2, 8, 8)), ("lstm_cnn", (2, 64, 64))])
def test_quick_models_return_mask_logits(name, shape):
    model = build_model(name, vocab_size=VOCAB) if name == "lstm_cnn" else build_model(name)
    out = model(*inputs())
    assert isinstance(out, ModelOutput)
    assert out.mask_logits.shape == shape and out.mask_logits.dtype == torch.float32


def test_gradients_reach_every_parameter_of_lstm_cnn():
    model = build_model("lstm_cnn", vocab_size=VOCAB)
    model(*inputs()).mask_logits.sum().backward()
    for name, parameter in model.named_parameters():
        assert parameter.grad is not None and parameter.grad.abs().sum() > 0, name


def test_only_vm_ignores_the_sentence():
    model = build_model("only_vm").eval()
    images, tokens, lengths = inputs()
    other_tokens = torch.randint(2, VOCAB, (2, 9))
    with torch.no_grad():
        torch.testing.assert_close(model(images, tokens, lengths).mask_logits,
                                   model(images, other_tokens, torch.tensor([9, 2])).mask_logits,
                                   rtol=0, atol=0)


def test_lstm_cnn_ignores_padding():
    model = build_model("lstm_cnn", vocab_size=VOCAB).eval()
    images, tokens, lengths = inputs(batch=4)
    padded = F.pad(tokens, (0, 7), value=PAD_INDEX)  # seven more pad columns
    with torch.no_grad():
        torch.testing.assert_close(model(images, padded, lengths).mask_logits,
                                   model(images, tokens, lengths).mask_logits)


def test_lstm_cnn_reads_the_sentence():
    model = build_model("lstm_cnn", vocab_size=VOCAB).eval()
    images, tokens, lengths = inputs()
    changed = tokens.clone()
    changed[0, 0] = (tokens[0, 0] + 1) % VOCAB
    with torch.no_grad():
        before = model(images, tokens, lengths).mask_logits
        after = model(images, changed, lengths).mask_logits
    assert not torch.allclose(before[0], after[0])
    torch.testing.assert_close(before[1], after[1])  # the other sample is untouched


def test_config_profiles_and_backbone_kwargs():
    quick = build_model("lstm_cnn", vocab_size=VOCAB, mlp_dim=32, widths=(8, 8, 8, 8, 8))
    assert quick.config == LSTMCNNConfig.quick(vocab_size=VOCAB, mlp_dim=32,
                                               backbone_kwargs={"widths": (8, 8, 8, 8, 8)})
    assert quick.backbone.strides == [8]  # stopped at the map it reads
    paper = LSTMCNNConfig(vocab_size=VOCAB)
    assert (paper.embed_dim, paper.hidden_dim, paper.mlp_dim, paper.backbone) == (
        1000, 1000, 500, "vgg16")
    only_vm = build_model("only_vm", profile="paper", pretrained=False)
    assert only_vm.backbone.channels[-1] == 2688 and only_vm.skip is None  # DPN92, stride 32
    with pytest.raises(ValueError, match="profile"):
        build_model("only_vm", profile="fast")
    with pytest.raises(TypeError, match="vocab_size"):
        build_model("lstm_cnn")


def test_inputs_are_checked_at_the_boundary():
    model = build_model("lstm_cnn", vocab_size=VOCAB)
    images, tokens, lengths = inputs()
    with pytest.raises(ValueError, match="tokens must be"):
        model(images, tokens[:1], lengths)
    with pytest.raises(ValueError, match="lengths must be"):
        model(images, tokens, lengths[:1])


@pytest.mark.parametrize("factor", [2, 3, 8])
def test_bilinear_deconvolution_starts_as_bilinear_upsampling(factor):
    scores = torch.rand(1, 1, 5, 6)
    with torch.no_grad():
        up = bilinear_deconvolution(factor)(scores)
    assert up.shape == (1, 1, 5 * factor, 6 * factor)
    reference = F.interpolate(scores, scale_factor=factor, mode="bilinear", align_corners=False)
    inner = slice(factor, -factor)  # the border differs: zero padding vs clamping
    torch.testing.assert_close(up[..., inner, inner], reference[..., inner, inner])
