"""Two baselines that frame the papers: a model that never reads the sentence, and the first
model that did.

- ``only_vm``: DMN's "Only VM" (Margffoy-Tuay et al., ECCV 2018, Table 1 row 1: 30.92 IoU on
  UNC testA). The visual module alone, trained on the masks without the query: it can only
  find salient objects, which tells how much of a benchmark needs no language at all.
- ``lstm_cnn``: Hu, Rohrbach & Darrell, "Segmentation from natural language expressions"
  (ECCV 2016). An LSTM reads the sentence; its last hidden state, tiled over the CNN's feature
  map and concatenated with the visual features and the 8-D coordinates, goes through 1x1
  convolutions to one logit per cell, which a deconvolution upsamples.

Each config dataclass holds the paper's defaults; ``quick()`` holds the CPU-sized ones. The
registered builders start from ``profile="quick"`` (``small_cnn``, no pretrained weights) and
take overrides; keyword arguments that are not config fields go to the backbone:

    build_model("lstm_cnn", vocab_size=len(vocab))                   # quick
    build_model("lstm_cnn", profile="paper", vocab_size=len(vocab))  # VGG-16, 1000-d LSTM
    build_model("only_vm", backbone="resnet18", output_stride=16)    # output_stride: to timm
"""

from __future__ import annotations

from dataclasses import dataclass, field

import torch
import torch.nn.functional as F
from torch import nn

from refseg_lib.data.text import PAD_INDEX
from refseg_lib.data.types import ModelOutput
from refseg_lib.models.common import build_config, check_inputs, encode_words
from refseg_lib.models.registry import register_model
from refseg_lib.nn.backbones import build_backbone, build_backbone_for
from refseg_lib.nn.coords import append_coordinates
from refseg_lib.nn.sru import SRU


@dataclass
class OnlyVMConfig:
    """DMN's "Only VM": the visual module, a 1x1-conv head on [I_N, LOC], no query.

    DMN upsamples this low-resolution output bilinearly (sec. 4.2) and does not give the
    head's width; we take 512, the width of its upsampling module's first stage. ``quick()``
    adds a skip from the stride-8 map, since an 80 px image leaves a 3x3 map at stride 32.
    """

    backbone: str = "dpn92"
    pretrained: bool = True
    hidden_dim: int = 512  # 1x1 convolutions: [I_N, LOC] -> hidden -> 1 logit
    skip_stride: int | None = None  # None: predict at the deepest stride only (the paper)
    backbone_kwargs: dict = field(default_factory=dict)

    @classmethod
    def quick(cls, **overrides) -> OnlyVMConfig:
        defaults = dict(backbone="small_cnn", pretrained=False, hidden_dim=64, skip_stride=8)
        return cls(**{**defaults, **overrides})


class OnlyVM(nn.Module):
    """Backbone -> [deepest map, LOC] -> 1x1 convs -> (bilinear x2^k + stride-8 skip) -> logit."""

    MASK_LOGIT_BIASES = ("classifier.bias",)  # models.common.start_at_prior

    def __init__(self, config: OnlyVMConfig):
        super().__init__()
        self.config = config
        self.backbone = build_backbone(config.backbone, config.pretrained, **config.backbone_kwargs)
        self.deep = self.backbone.level(None)
        self.head = nn.Sequential(
            nn.Conv2d(self.backbone.channels[self.deep] + 8, config.hidden_dim, 1),
            nn.ReLU(inplace=True),
        )
        self.skip = None if config.skip_stride is None else self.backbone.level(config.skip_stride)
        if self.skip is not None:
            self.fuse = nn.Sequential(
                nn.Conv2d(config.hidden_dim + self.backbone.channels[self.skip] + 8,
                          config.hidden_dim, 1),
                nn.ReLU(inplace=True),
            )
        self.classifier = nn.Conv2d(config.hidden_dim, 1, 1)

    def forward(self, images, tokens, lengths) -> ModelOutput:
        check_inputs(images, tokens, lengths)
        del tokens, lengths  # the point of this baseline: the sentence is never read
        features = self.backbone(images)
        x = self.head(append_coordinates(features[self.deep]))  # (B, hidden, H/32, W/32)
        if self.skip is not None:
            skip = features[self.skip]  # (B, C_s, H/8, W/8)
            x = F.interpolate(x, size=skip.shape[-2:], mode="bilinear", align_corners=False)
            x = self.fuse(append_coordinates(torch.cat([x, skip], dim=1)))  # (B, hidden, H/8, W/8)
        return ModelOutput(mask_logits=self.classifier(x)[:, 0])  # (B, h, w)


@dataclass
class LSTMCNNConfig:
    """Hu, Rohrbach & Darrell (ECCV 2016); the defaults are the paper's.

    The paper's CNN is a fully convolutional VGG-16 (fc layers as convolutions, stride 32,
    16x16 map for a 512 px image); our ``vgg16`` backbone stops at pool5 (512 channels,
    stride 32). Its upsampling is a deconvolution with a 2s x 2s filter and stride s = 32 on
    the one-channel score map, back to full resolution, trained in a second stage; ours is the
    same layer, initialised to bilinear interpolation and trained end to end. ``quick()``
    reads the stride-8 map (10x10 for an 80 px image; the stride-32 map would be 3x3).
    """

    vocab_size: int
    embed_dim: int = 1000  # word embedding
    hidden_dim: int = 1000  # LSTM
    mlp_dim: int = 500  # hidden 1x1 conv of the classifier
    backbone: str = "vgg16"
    pretrained: bool = True
    feature_stride: int | None = None  # None: the deepest map (VGG-16: stride 32, the paper)
    upsample_factor: int | None = None  # deconvolution stride; None: feature stride (full res)
    rnn: str = "lstm"  # "sru": our SRU (notebook 01 compares the two language encoders)
    rnn_layers: int = 1
    backbone_kwargs: dict = field(default_factory=dict)

    @classmethod
    def quick(cls, **overrides) -> LSTMCNNConfig:
        defaults = dict(embed_dim=64, hidden_dim=128, mlp_dim=128, backbone="small_cnn",
                        pretrained=False, feature_stride=8)
        return cls(**{**defaults, **overrides})


class LSTMCNN(nn.Module):
    """[L2norm(CNN(I)), tile(L2norm(LSTM(w)_T)), LOC] -> 1x1 convs -> deconvolution -> logits."""

    MASK_LOGIT_BIASES = ("classifier.2.bias",)  # models.common.start_at_prior

    def __init__(self, config: LSTMCNNConfig):
        super().__init__()
        self.config = config
        self.backbone, (self.level,) = build_backbone_for(
            config.backbone, config.pretrained, [config.feature_stride], **config.backbone_kwargs)
        stride = self.backbone.strides[self.level]
        self.embedding = nn.Embedding(config.vocab_size, config.embed_dim, padding_idx=PAD_INDEX)
        if config.rnn not in ("lstm", "sru"):
            raise ValueError(f"rnn must be 'lstm' or 'sru', got {config.rnn!r}")
        rnn = nn.LSTM if config.rnn == "lstm" else SRU
        self.rnn = rnn(config.embed_dim, config.hidden_dim, config.rnn_layers)
        in_channels = self.backbone.channels[self.level] + config.hidden_dim + 8
        self.classifier = nn.Sequential(
            nn.Conv2d(in_channels, config.mlp_dim, 1),
            nn.ReLU(inplace=True),
            nn.Conv2d(config.mlp_dim, 1, 1),
        )
        self.upsample = bilinear_deconvolution(config.upsample_factor or stride)

    def encode_sentence(self, tokens: torch.Tensor, lengths: torch.Tensor) -> torch.Tensor:
        """The RNN's output after the last real word of each sentence: (B, hidden)."""
        words = self.embedding(tokens)  # (B, T, E)
        return encode_words(self.rnn, words, lengths)

    def forward(self, images, tokens, lengths) -> ModelOutput:
        check_inputs(images, tokens, lengths)
        visual = self.backbone(images)[self.level]  # (B, C, h, w)
        visual = F.normalize(visual, dim=1)  # L2 norm at every position
        sentence = F.normalize(self.encode_sentence(tokens, lengths), dim=1)  # (B, hidden)
        tiled = sentence[:, :, None, None].expand(-1, -1, *visual.shape[-2:])  # (B, hidden, h, w)
        x = append_coordinates(torch.cat([visual, tiled], dim=1))  # (B, C + hidden + 8, h, w)
        scores = self.classifier(x)  # (B, 1, h, w)
        return ModelOutput(mask_logits=self.upsample(scores)[:, 0])  # (B, h*s, w*s)


def bilinear_deconvolution(factor: int) -> nn.Module:
    """A learned x``factor`` upsampling of a one-channel map (FCN's deconvolution).

    Kernel 2f (2f - 1 for odd f), stride f, initialised to bilinear interpolation, so that an
    (h, w) map becomes exactly (h*f, w*f) and training starts from plain upsampling.
    """
    if factor == 1:
        return nn.Identity()
    kernel = 2 * factor - factor % 2
    deconv = nn.ConvTranspose2d(1, 1, kernel, stride=factor, padding=(kernel - factor) // 2,
                                bias=False)
    center = (kernel - 1) / 2
    ramp = 1 - (torch.arange(kernel) - center).abs() / factor  # (k,) triangle
    with torch.no_grad():
        deconv.weight.copy_((ramp[:, None] * ramp[None, :])[None, None])  # (1, 1, k, k)
    return deconv


@register_model("only_vm", OnlyVMConfig)
def only_vm(profile: str = "quick", vocab_size: int | None = None, **cfg) -> OnlyVM:
    """DMN's "Only VM" (no language); ``cfg``: ``OnlyVMConfig`` fields, backbone kwargs.

    ``vocab_size`` is accepted, like every model's builder, and unused: no word is read.
    """
    return OnlyVM(build_config(OnlyVMConfig, profile, cfg))


@register_model("lstm_cnn", LSTMCNNConfig)
def lstm_cnn(profile: str = "quick", **cfg) -> LSTMCNN:
    """Hu et al. 2016; ``cfg``: ``vocab_size`` (required), ``LSTMCNNConfig`` fields, backbone
    kwargs."""
    if "vocab_size" not in cfg:
        raise TypeError("lstm_cnn needs vocab_size=len(vocabulary)")
    return LSTMCNN(build_config(LSTMCNNConfig, profile, cfg))
