"""DMN: Dynamic Multimodal Network (Margffoy-Tuay, Perez, Botero & Arbelaez, ECCV 2018).

Four modules (Fig. 2), each a method of ``DMN`` below:

- visual module (VM, eq. 1): a backbone's maps I_1..I_N at strides 2..2^N (DPN92, N = 5);
- language module (LM, eqs. 2-8): word embeddings e_t, an SRU's hidden states h_t,
  r_t = [e_t, h_t], and K dynamic 1x1 filters f_{k,t} = sigmoid(W_{f_k} r_t + b_{f_k}) (eq. 7);
- synthesis module (SM, eqs. 9-10): the filter responses F_t on [I_N, LOC],
  M_t = Conv1x1([I_N, F_t, LOC, r_t]), and a multimodal SRU over t at every pixel: R_N;
- upsampling module (UM, sec. 3.5): N stages of (concatenate I_n, upsample x2, 3x3 conv) from
  R_N to full resolution, then a 1x1 convolution to one logit per pixel.

Training has two stages (sec. 4.3): first at low resolution, where a 1x1 convolution turns R_N
into logits (``upsampling=False``), then the UM is added and the whole model fine-tuned
(``upsampling=True``, started from the first stage's weights; ``run_experiment(init_from=)``).

Table 1's ablations and Fig. 7's LSTM switch are flags of ``DMNConfig``:

=============================  ==============================================
Table 1 row                    configuration
=============================  ==============================================
Only VM                        the ``only_vm`` model (``baselines.py``)
Only h_t in LM and SM          ``concat_embedding=False``: r_t = h_t
No skip connections in UM      ``skip_connections=False``
No dynamic filters             ``dynamic_filters=False``: no F_t in M_t
No concatenation of r_t        ``concat_language=False``: no r_t in M_t
DMN                            the defaults
SRU vs LSTM (Fig. 7)           ``rnn="lstm"``: LSTMs in the LM and the SM
=============================  ==============================================

Choices where the paper is silent or the official code (BCV-Uniandes/query-objseg) differs:

- Sizes: the paper's text (2 LM layers, mSRU hidden 1000); the official code uses 3 LM layers
  and an mSRU hidden size of 1005 (``lm_layers=3, msru_hidden=1005`` reproduces it).
- M_t has no nonlinearity (eq. 9 and the official code), and neither has the UM (the
  official default); the UM upsamples before its 3x3 convolution, as the official code does
  (the paper's text convolves first).
- The mSRU runs over the T words at each pixel (sequence T, batch B*H*W), as eq. 10 says; the
  official code flattens pixels and words into one sequence of length H*W*T.
- eq. (9) is one 1x1 convolution over a concatenation, which equals the sum of 1x1
  convolutions over its parts; we compute the visual part W_v [I_N, LOC] once instead of once
  per word (same function, T times fewer operations on the widest input).
"""

from __future__ import annotations

from dataclasses import dataclass, field

import torch
import torch.nn.functional as F
from torch import nn

from refseg_lib.data.text import PAD_INDEX
from refseg_lib.data.types import ModelOutput
from refseg_lib.models.common import build_config, check_inputs
from refseg_lib.models.registry import register_model
from refseg_lib.nn.backbones import build_backbone_for
from refseg_lib.nn.coords import append_coordinates
from refseg_lib.nn.sru import SRU, MultimodalSRU, run_recurrent

RNNS = ("sru", "lstm")

# Run variants: DMNConfig flags and the row of the paper they stand for (Table 1, Fig. 7).
VARIANTS: dict[str, tuple[dict, str]] = {
    "base": ({}, "DMN"),
    "only_h": ({"concat_embedding": False}, "Only h_t in LM and SM"),
    "no_skip": ({"skip_connections": False}, "No skip connections in UM"),
    "no_filters": ({"dynamic_filters": False}, "No dynamic filters"),
    "no_concat": ({"concat_language": False}, "No concatenation of r_t"),
    "lstm": ({"rnn": "lstm"}, "LSTM in LM and SM (Fig. 7)"),
}


@dataclass
class DMNConfig:
    """The paper's hyperparameters (sec. 4.3); ``quick()`` shrinks every width for a CPU."""

    vocab_size: int
    backbone: str = "dpn92"
    pretrained: bool = True
    num_scales: int = 5  # N: the SM works on I_N at stride 2^N; the UM has N stages
    embed_dim: int = 1000  # WE
    hidden_dim: int = 1000  # LM SRU hidden size
    lm_layers: int = 2  # paper text; official code: 3
    num_filters: int = 10  # K
    mixed_dim: int = 1000  # output channels of eq. (9)'s 1x1 convolution
    msru_hidden: int = 1000  # paper text; official code: 1005
    msru_layers: int = 3
    activation: str = "sigmoid"  # g of eq. (6)
    um_channels: tuple[int, ...] = (512, 256, 128, 64, 32)  # UM stages, deepest first
    upsampling: bool = True  # False: the low-resolution first training stage
    # Table 1 ablations and Fig. 7
    concat_embedding: bool = True  # r_t = [e_t, h_t]; False: r_t = h_t ("only h_t")
    dynamic_filters: bool = True  # F_t in M_t
    concat_language: bool = True  # r_t in M_t
    skip_connections: bool = True  # I_n concatenated at each UM stage
    rnn: str = "sru"  # "lstm": LSTM in the LM and the SM
    backbone_kwargs: dict = field(default_factory=dict)

    @classmethod
    def quick(cls, **overrides) -> DMNConfig:
        """small_cnn, N = 3 (10x10 maps for 80 px images; stride 32 would leave 3x3), widths 64."""
        defaults = dict(backbone="small_cnn", pretrained=False, num_scales=3, embed_dim=64,
                        hidden_dim=64, mixed_dim=64, msru_hidden=64, msru_layers=2,
                        um_channels=(32, 16, 16))
        return cls(**{**defaults, **overrides})

    def __post_init__(self) -> None:
        if self.rnn not in RNNS:
            raise ValueError(f"rnn must be one of {RNNS}, got {self.rnn!r}")
        if self.upsampling and len(self.um_channels) != self.num_scales:
            raise ValueError(f"the UM has one stage per scale: um_channels needs "
                             f"{self.num_scales} entries, got {self.um_channels}")


class DMN(nn.Module):
    """``model(images, tokens, lengths) -> ModelOutput`` (full-resolution or R_N-level logits)."""

    MASK_LOGIT_BIASES = ("classifier.bias", "low_res_classifier.bias")  # start_at_prior

    def __init__(self, config: DMNConfig):
        super().__init__()
        self.config = c = config
        self.backbone, self.levels = _visual_module(c)  # indices of I_1..I_N (or I_N alone)
        visual_dim = self.backbone.channels[self.levels[-1]] + 8  # [I_N, LOC]
        # Language module (sec. 3.3)
        self.embedding = nn.Embedding(c.vocab_size, c.embed_dim, padding_idx=PAD_INDEX)
        self.rnn = _recurrent(c.rnn, c.embed_dim, c.hidden_dim, c.lm_layers, c.activation)
        language_dim = c.hidden_dim + (c.embed_dim if c.concat_embedding else 0)  # r_t
        if c.dynamic_filters:
            self.filters = nn.Linear(language_dim, c.num_filters * visual_dim)  # eq. (7)
        # Synthesis module (sec. 3.4): eq. (9) split by input, see the module docstring
        self.mix_visual = nn.Conv2d(visual_dim, c.mixed_dim, 1)
        if c.dynamic_filters:
            self.mix_responses = nn.Conv2d(c.num_filters, c.mixed_dim, 1, bias=False)
        if c.concat_language:
            self.mix_language = nn.Linear(language_dim, c.mixed_dim, bias=False)
        self.msru = MultimodalSRU(c.mixed_dim, c.msru_hidden, c.msru_layers,
                                  activation=c.activation, cell=c.rnn)  # eq. (10)
        # Upsampling module (sec. 3.5), or the low-resolution head of the first stage
        if c.upsampling:
            self.upsampling = nn.ModuleList()
            channels = c.msru_hidden
            for n, out in zip(range(c.num_scales, 0, -1), c.um_channels, strict=True):
                skip = self.backbone.channels[self.levels[n - 1]] if c.skip_connections else 0
                self.upsampling.append(nn.Conv2d(channels + skip, out, 3, padding=1))
                channels = out
            self.classifier = nn.Conv2d(channels, 1, 1)
        else:  # named apart, so that the second stage never loads it into its own classifier
            self.low_res_classifier = nn.Conv2d(c.msru_hidden, 1, 1)

    def language_module(self, tokens: torch.Tensor, lengths: torch.Tensor):
        """Eqs. (2)-(8): r_t (B, T, R) and the dynamic filters f_{k,t} (B, T, K, C+8) or None."""
        e = self.embedding(tokens)  # (B, T, E) e_t
        h = run_recurrent(self.rnn, e.transpose(0, 1), lengths).transpose(0, 1)  # (B, T, H)
        r = torch.cat([e, h], dim=-1) if self.config.concat_embedding else h  # r_t
        if not self.config.dynamic_filters:
            return r, None
        batch, steps, _ = r.shape
        f = torch.sigmoid(self.filters(r))  # eq. (7): f_{k,t} = sigmoid(W_{f_k} r_t + b_{f_k})
        return r, f.view(batch, steps, self.config.num_filters, -1)  # (B, T, K, C+8)

    def synthesis_module(self, visual: torch.Tensor, r: torch.Tensor,
                         f: torch.Tensor | None, lengths: torch.Tensor):
        """Eqs. (9)-(10): R_N (B, msru_hidden, h, w) and the responses F_t (B, T, K, h, w)."""
        visual = append_coordinates(visual)  # [I_N, LOC] (B, C+8, h, w)
        M = self.mix_visual(visual)[:, None]  # (B, 1, D, h, w)
        responses = None
        if f is not None:
            # F_t = {f_{k,t} * [I_N, LOC]}_k: each filter is a 1x1 convolution
            responses = torch.einsum("btkc,bchw->btkhw", f, visual)  # (B, T, K, h, w)
            batch, steps = responses.shape[:2]
            mixed = self.mix_responses(responses.flatten(0, 1))  # (B*T, D, h, w)
            M = M + mixed.view(batch, steps, *mixed.shape[1:])
        if self.config.concat_language:
            M = M + self.mix_language(r)[..., None, None]  # (B, T, D, 1, 1) tiled over h, w
        if M.shape[1] == 1:  # neither F_t nor r_t: the same M_t for every word
            M = M.expand(-1, r.shape[1], -1, -1, -1)
        return self.msru(M, lengths), responses  # eq. (10): R_N = mSRU({M_t})

    def upsampling_module(self, R: torch.Tensor, features: list[torch.Tensor]) -> torch.Tensor:
        """Sec. 3.5: for n = N..1, R <- Conv3x3(Upsample_x2([R, I_n])); then a 1x1 conv. Where
        an image side does not halve evenly (37 px: maps of 19, 10, 5, 3 px), R is resized to
        I_n's size before they are joined."""
        for conv, n in zip(self.upsampling, range(self.config.num_scales, 0, -1), strict=True):
            if self.config.skip_connections:
                skip = features[self.levels[n - 1]]
                if R.shape[-2:] != skip.shape[-2:]:
                    R = F.interpolate(R, size=skip.shape[-2:], mode="bilinear",
                                      align_corners=False)
                R = torch.cat([R, skip], dim=1)  # (B, C_R + C_n, h, w)
            R = conv(F.interpolate(R, scale_factor=2, mode="bilinear", align_corners=False))
        return self.classifier(R)  # (B, 1, H, W)

    def forward(self, images, tokens, lengths) -> ModelOutput:
        check_inputs(images, tokens, lengths)
        features = self.backbone(images)  # I_1..I_N, shallow to deep
        r, f = self.language_module(tokens, lengths)
        R, responses = self.synthesis_module(features[self.levels[-1]], r, f, lengths)
        if self.config.upsampling:
            logits = self.upsampling_module(R, features)
        else:
            logits = self.low_res_classifier(R)  # the first, low-resolution stage
        attention = {} if responses is None else {"filter_responses": responses}
        return ModelOutput(mask_logits=logits[:, 0], attention=attention)


def _recurrent(cell: str, input_size: int, hidden_size: int, layers: int,
               activation: str) -> nn.Module:
    """The LM's RNN: our SRU (the paper) or ``nn.LSTM`` (Fig. 7), both time-first."""
    if cell == "sru":
        return SRU(input_size, hidden_size, layers, activation=activation)
    return nn.LSTM(input_size, hidden_size, layers)


def _visual_module(config: DMNConfig) -> tuple[nn.Module, list[int]]:
    """The backbone and the indices of I_1..I_N (strides 2..2^N) among its outputs, or of I_N
    alone without the UM or its skip connections: only the maps the model reads."""
    strides = [2 ** n for n in range(1, config.num_scales + 1)]
    if not (config.upsampling and config.skip_connections):
        strides = strides[-1:]
    return build_backbone_for(config.backbone, config.pretrained, strides,
                              **config.backbone_kwargs)


@register_model("dmn", DMNConfig)
def dmn(profile: str = "quick", **cfg) -> DMN:
    """DMN; ``cfg``: ``vocab_size`` (required), ``DMNConfig`` fields (the ablations) and
    backbone kwargs."""
    if "vocab_size" not in cfg:
        raise TypeError("dmn needs vocab_size=len(vocabulary)")
    return DMN(build_config(DMNConfig, profile, cfg))
