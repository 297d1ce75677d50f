"""CMSA: Cross-Modal Self-Attention network (Ye, Rochan, Liu & Wang, CVPR 2019).

Three stages, one function or module each below:

- multimodal features (eq. 1): f_{p,n} = [v_p / ||v_p||, w_n / ||w_n||, s_p] for every pixel p
  of a level's map and every word n (``multimodal_features``);
- cross-modal self-attention (eqs. 2-4): queries, keys and values over all N x H x W
  (word, pixel) positions, a residual projection and a mean over the words
  (``CrossModalSelfAttention``), once per backbone level;
- gated multi-level fusion (eqs. 5-6): memory and reset gates per level and a contextual
  controller that lets the other levels in (``GatedFusion``), then a 3x3 convolution to the
  mask logits (eq. 6; the sigmoid is in the loss).

The ablations of Table 2 (attention) and Table 3 (language input, fusion) are flags of
``CMSAConfig``; ``VARIANTS`` names each row.

Choices where the paper is silent or the official code (lwye/CMSA-Net) differs:

- Levels: the last three maps of the backbone (DeepLab ResNet-101 res3, res4, res5, all at
  stride 8 by dilation). A backbone whose deeper maps are coarser (``small_cnn``: strides 8,
  16, 32) has them resized bilinearly to the shallowest level's size, a stand-in for dilation.
  The official code projects res5 from 2048 to 1000 channels before eq. 1
  (``deep_visual_dim``) and uses res3/res4 as they are.
- Eqs. 2-3 as printed: linear W_q, W_k, W_v and an unscaled softmax (the official code adds a
  ReLU after each projection and max-pools keys and values 2x2x2 over (word, h, w) to save
  memory; we save memory differently, below, and keep the paper's function).
- Table 2 "zeroes out components of eq. 2"; we read each row as the set of keys (p', n') a
  query (p, n) attends to: word attention p' = p (the words at its pixel), pixel attention
  n' = n (the pixels of its word), word-pixel pair attention the union of the two in one
  softmax, full attention every (p', n'); no attention drops eqs. 2-3 (f_hat_p = mean_n f_{p,n}).
- Memory (the (NHW)^2 matrix of eq. 3 is 4 GB per image and level at 320 px and 20 words):
  eq. 2's projections are linear, so W f_{p,n} = W_v' [v_p, s_p] + W_w' w_n is computed on
  HW + N inputs and broadcast; eq. 4's projection commutes with the mean over words, so it runs
  on HW positions; full attention goes through ``scaled_dot_product_attention``, whose fused
  kernels never hold the matrix. Same function as eqs. 1-4 written out (notebook 03 checks it).
- Padded words are neither keys nor averaged in eq. 4 (the official code drops them, batch 1).
- Gates (eq. 5): the paper does not say how m^i and r^i are computed; as the official code, a
  3x3 convolution of the level's own features, sigmoid(. + 1) so that training starts from
  mostly open gates. Eq. 5 follows the paper, G^i = (1 - m^i) X^i + sum_{j != i} gamma^j m^j
  X^j with one learnable gamma per level (init 1/2); the official code instead applies level
  i's own gate to the other levels and adds a candidate (1 - m^i) Conv(X^i).
- Table 3's other fusions, on the same three equal-size maps: PPM (pyramid pooling, bins
  1, 2, 3, 6, over their concatenation), Deconv (deep to shallow, each step a 3x3 transposed
  convolution of the running map added to the next level), ConvLSTM (RRN: a ConvLSTM reads
  the levels deep to shallow, its last hidden state is the fused map), self-gated (G^i =
  m^i X^i, no other level).
- CMSA-S: an LSTM over the embeddings, its last hidden state as the one "word" of eq. 1.
- One level alone (Table 2, CMSA-W, CMSA-S): the paper's is res5, deep and, by dilation, at
  stride 8 (40x40 at 320 px). The quick backbone cannot have both: its deepest map is 3x3 at
  80 px (stride 32), where even a perfect predictor reaches 16.6% overall IoU on ShapeRef val
  (notebook 00), so the quick profile keeps the paper's resolution and reads the stride-8
  level (``single_level=0``); the paper profile reads res5.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from functools import partial

import torch
import torch.nn.functional as F
from torch import nn

from refseg_lib.data.text import PAD_INDEX
from refseg_lib.data.types import ModelOutput
from refseg_lib.models.common import build_config, check_inputs, encode_words
from refseg_lib.models.registry import register_model
from refseg_lib.nn.backbones import build_backbone_last
from refseg_lib.nn.convlstm import ConvLSTM
from refseg_lib.nn.coords import append_coordinates

ATTENTIONS = ("none", "word", "pixel", "pair", "full")
FUSIONS = ("none", "ppm", "deconv", "convlstm", "self_gated", "gated")
LANGUAGES = ("words", "sentence")

# Run variants: CMSAConfig flags and the row of the paper they stand for (Tables 2 and 3).
# Table 2 and the top of Table 3 use one level and no fusion, as the paper's CMSA-W: res5 in
# the paper profile, the stride-8 level in the quick one (``single_level``, module docstring).
_SINGLE = {"fusion": "none"}
VARIANTS: dict[str, tuple[dict, str]] = {
    "base": ({}, "CMSA+GF (the full model)"),
    "att_none": ({**_SINGLE, "attention": "none"}, "No attention"),
    "att_word": ({**_SINGLE, "attention": "word"}, "Word attention"),
    "att_pixel": ({**_SINGLE, "attention": "pixel"}, "Pixel attention"),
    "att_pair": ({**_SINGLE, "attention": "pair"}, "Word-pixel pair attention"),
    "cmsa_w": (_SINGLE, "CMSA-W (cross-modal self-attention, one level)"),
    "cmsa_s": ({**_SINGLE, "language": "sentence"}, "CMSA-S (LSTM sentence vector)"),
    "ppm": ({"fusion": "ppm"}, "CMSA+PPM"),
    "deconv": ({"fusion": "deconv"}, "CMSA+Deconv"),
    "convlstm": ({"fusion": "convlstm"}, "CMSA+ConvLSTM"),
    "self_gated": ({"fusion": "self_gated"}, "CMSA+Gated (self-gated)"),
}


@dataclass
class CMSAConfig:
    """The paper's hyperparameters (sec. 4.1, official code); ``quick()`` for a CPU."""

    vocab_size: int
    backbone: str = "resnet101_deeplab"
    pretrained: bool = True
    embed_dim: int = 1000  # word embedding
    deep_visual_dim: int | None = 1000  # 1x1 conv on the deepest level before eq. 1
    key_dims: tuple[int, ...] = (64, 128, 512)  # q/k/v width per level, shallow to deep
    fusion_dim: int = 500  # each level's 1x1 conv output, the width of eqs. 5-6
    attention: str = "full"  # Table 2
    language: str = "words"  # "sentence": CMSA-S (Table 3)
    fusion: str = "gated"  # Table 3; "none": one level alone (CMSA-W), ``single_level``
    single_level: int = -1  # with fusion "none": which of the levels, 0 shallow .. -1 deep
    backbone_kwargs: dict = field(default_factory=dict)

    @classmethod
    def quick(cls, **overrides) -> CMSAConfig:
        """small_cnn (strides 8, 16, 32 resized to 10x10 for 80 px), widths 64, keys 16; one
        level alone is the stride-8 one (the paper's single level is res5 at stride 8)."""
        defaults = dict(backbone="small_cnn", pretrained=False, embed_dim=64,
                        deep_visual_dim=None, key_dims=(16, 16, 16), fusion_dim=64,
                        single_level=0)
        return cls(**{**defaults, **overrides})

    def __post_init__(self) -> None:
        for name, value, allowed in (("attention", self.attention, ATTENTIONS),
                                     ("fusion", self.fusion, FUSIONS),
                                     ("language", self.language, LANGUAGES)):
            if value not in allowed:
                raise ValueError(f"{name} must be one of {allowed}, got {value!r}")
        if not -len(self.key_dims) <= self.single_level < len(self.key_dims):
            raise ValueError(f"single_level indexes the {len(self.key_dims)} levels, got "
                             f"{self.single_level}")

    @property
    def level_indices(self) -> list[int]:
        """The levels that are read, among the last ``len(key_dims)`` maps, shallow to deep."""
        levels = range(len(self.key_dims))
        return [levels[self.single_level]] if self.fusion == "none" else list(levels)


def multimodal_features(visual: torch.Tensor, words: torch.Tensor) -> torch.Tensor:
    """Eq. (1), written out: f (B, N, h, w, C_v + C_l + 8) from visual (B, C_v, h, w) and
    words (B, N, C_l). ``CrossModalSelfAttention`` never builds it (see the module docstring)."""
    v = append_coordinates(F.normalize(visual, dim=1)).permute(0, 2, 3, 1)  # (B, h, w, C_v+8)
    w = F.normalize(words, dim=-1)
    batch, n = w.shape[:2]
    h, wd = v.shape[1:3]
    v = v[:, None].expand(batch, n, h, wd, v.shape[-1])
    w = w[:, :, None, None].expand(batch, n, h, wd, w.shape[-1])
    return torch.cat([v[..., :-8], w, v[..., -8:]], dim=-1)  # [v_p, w_n, s_p]


class CrossModalSelfAttention(nn.Module):
    """Eqs. (2)-(4) on one level: (visual (B, C_v, h, w), words (B, N, C_l), lengths (B,)) ->
    f_hat (B, C_v + C_l + 8, h, w), and the attention mass per word (B, N) in eval mode."""

    def __init__(self, visual_dim: int, word_dim: int, key_dim: int, attention: str = "full"):
        super().__init__()
        self.attention = attention
        self.visual_dim, self.word_dim = visual_dim, word_dim
        if attention == "none":
            return
        # W_q, W_k, W_v of eq. (2), each split by the parts of f: [v_p, s_p] and w_n
        self.project_visual = nn.Linear(visual_dim + 8, 3 * key_dim)
        self.project_words = nn.Linear(word_dim, 3 * key_dim, bias=False)
        self.output = nn.Linear(key_dim, visual_dim + word_dim + 8)  # W_{v hat} of eq. (4)

    def forward(self, visual, words, lengths):
        batch, _, h, w = visual.shape
        n = words.shape[1]
        valid = torch.arange(n, device=words.device)[None] < lengths[:, None]  # (B, N)
        vis = append_coordinates(F.normalize(visual, dim=1)).flatten(2).transpose(1, 2)  # B,P,.
        wrd = F.normalize(words, dim=-1)  # (B, N, C_l)
        # the mean over words of f_{p,n} (eq. 4's residual): [v_p, mean_n w_n, s_p]
        mean_words = (wrd * valid[..., None]).sum(1) / lengths[:, None].clamp(min=1)
        mean_f = torch.cat([vis[..., :-8], mean_words[:, None].expand(-1, h * w, -1),
                            vis[..., -8:]], dim=-1)  # (B, P, D)
        word_mass = None
        if self.attention != "none":
            # q, k, v at every (n, p): (B, N, P, 3d) as a broadcast sum, eq. (2)
            qkv = self.project_words(wrd)[:, :, None] + self.project_visual(vis)[:, None]
            q, k, v = qkv.chunk(3, dim=-1)
            v_hat = _ATTEND[self.attention](q, k, v, valid)  # (B, N, P, d), eqs. (2)-(3)
            v_mean = (v_hat * valid[:, :, None, None]).sum(1) / lengths[:, None, None]
            mean_f = mean_f + self.output(v_mean)  # eq. (4); W commutes with the mean
            if self.attention == "full" and not self.training:
                word_mass = _word_mass(q, k, valid)
        return mean_f.transpose(1, 2).reshape(batch, -1, h, w), word_mass


def _attend_full(q, k, v, valid):
    """Every query over all (n', p') with n' a real word: eq. (3)'s softmax, fused kernel.

    The samples of a batch are attended in groups of equal length, each cut to its real words:
    a padded word is never a key, and its queries are never read (eq. 4 averages the real
    words), so the result is the same as attending over the padded N x P positions, at a
    fraction of the cost (the cost grows with (N P)^2, and ShapeRef's batches pad a mean of 4
    words to about 8). The padded queries' outputs are left at zero."""
    batch, n, p, _ = q.shape
    lengths = valid.sum(1)
    out = v.new_zeros(batch, n, p, v.shape[-1])
    for length in lengths.unique().tolist():
        if length == 0:
            continue
        rows = torch.nonzero(lengths == length).squeeze(1)
        flat = [x[rows, :length].reshape(len(rows), 1, length * p, x.shape[-1])
                for x in (q, k, v)]
        attended = F.scaled_dot_product_attention(*flat, scale=1.0)
        out = out.index_put((rows,), F.pad(attended.view(len(rows), length, p, -1),
                                           (0, 0, 0, 0, 0, n - length)))
    return out


def _attend_word(q, k, v, valid):
    """Each (n, p) over the words n' at its own pixel (p' = p)."""
    mask = _additive(valid[:, None, None, :], q.dtype)  # (B, 1, 1, N') over the keys
    out = F.scaled_dot_product_attention(q.transpose(1, 2), k.transpose(1, 2), v.transpose(1, 2),
                                         attn_mask=mask, scale=1.0)  # (B, P, N, d)
    return out.transpose(1, 2)


def _additive(allowed: torch.Tensor, dtype: torch.dtype) -> torch.Tensor:
    """A boolean key mask as a finite additive one: a large negative number, not -inf, so that
    a fused kernel meeting a block of padded keys never computes -inf - (-inf)."""
    return torch.zeros(allowed.shape, dtype=dtype, device=allowed.device).masked_fill(
        ~allowed, torch.finfo(dtype).min / 2)


def _attend_pixel(q, k, v, valid):
    """Each (n, p) over the pixels p' of its own word (n' = n)."""
    return F.scaled_dot_product_attention(q, k, v, scale=1.0)


def _attend_pair(q, k, v, valid):
    """The union of word and pixel attention in one softmax: its normaliser is the sum of both
    partial ones, with (p, n) itself counted once (in the word part)."""
    words = torch.einsum("bnpd,bmpd->bpnm", q, k).masked_fill(~valid[:, None, None], -torch.inf)
    pixels = torch.einsum("bnpd,bnqd->bnpq", q, k)
    eye = torch.eye(q.shape[2], dtype=torch.bool, device=q.device)
    pixels = pixels.masked_fill(eye, -torch.inf)
    lse = torch.logaddexp(words.logsumexp(-1).transpose(1, 2), pixels.logsumexp(-1))  # (B,N,P)
    out = torch.einsum("bpnm,bmpd->bnpd", (words - lse.transpose(1, 2)[..., None]).exp(), v)
    return out + torch.einsum("bnpq,bnqd->bnpd", (pixels - lse[..., None]).exp(), v)


_ATTEND = {"full": _attend_full, "word": _attend_word, "pixel": _attend_pixel,
           "pair": _attend_pair}


def _word_mass(q, k, valid):
    """Attention that each word's positions receive, averaged over the real queries: (B, N).
    Eq. (3)'s weights times one-hot word values, so the matrix is never built either."""
    batch, n, p, _ = q.shape
    one_hot = torch.eye(n, dtype=q.dtype, device=q.device)[None, :, None].expand(batch, n, p, n)
    mass = _attend_full(q, k, one_hot, valid)  # (B, N, P, N'): the sum of a over each n'
    return (mass * valid[:, :, None, None]).sum((1, 2)) / (valid.sum(1) * p)[:, None]


class GatedFusion(nn.Module):
    """Eqs. (5)-(6): levels X^i (B, C, h, w) -> sum_i F_o^i, and the gates for visualisation.

    ``self_gated``: Table 3's "Gated" row, G^i = m^i X^i (each level alone)."""

    def __init__(self, channels: int, levels: int, self_gated: bool = False):
        super().__init__()
        self.self_gated = self_gated
        self.gates = nn.ModuleList(nn.Conv2d(channels, 2 * channels, 3, padding=1)
                                   for _ in range(levels))  # [m^i, r^i] from X^i
        if not self_gated:
            self.gamma = nn.Parameter(torch.full((levels,), 1 / (levels - 1)))

    def forward(self, xs: list[torch.Tensor]):
        m, r = zip(*(torch.sigmoid(conv(x) + 1).chunk(2, dim=1)
                     for conv, x in zip(self.gates, xs, strict=True)), strict=True)
        fused = 0
        for i, x in enumerate(xs):
            if self.self_gated:
                g = m[i] * x
            else:  # eq. (5): own memory (1 - m^i) X^i plus the other levels' gated features
                g = (1 - m[i]) * x + sum(self.gamma[j] * m[j] * xs[j]
                                         for j in range(len(xs)) if j != i)
            fused = fused + r[i] * torch.tanh(g) + (1 - r[i]) * x  # eq. (6): F_o^i
        return fused, {"memory_gates": torch.stack(m, 1), "reset_gates": torch.stack(r, 1)}


class PyramidPooling(nn.Module):
    """PSPNet's pyramid pooling (Table 3's PPM) over the concatenated levels."""

    def __init__(self, channels: int, levels: int, bins=(1, 2, 3, 6)):
        super().__init__()
        self.reduce = nn.Sequential(nn.Conv2d(levels * channels, channels, 1), nn.ReLU())
        self.bins = bins
        self.branches = nn.ModuleList(nn.Conv2d(channels, channels // 4, 1) for _ in bins)
        self.out = nn.Sequential(
            nn.Conv2d(channels + len(bins) * (channels // 4), channels, 3, padding=1), nn.ReLU())

    def forward(self, xs):
        x = self.reduce(torch.cat(xs, dim=1))
        pooled = [F.interpolate(conv(F.adaptive_avg_pool2d(x, b)), size=x.shape[-2:],
                                mode="bilinear", align_corners=False)
                  for conv, b in zip(self.branches, self.bins, strict=True)]
        return self.out(torch.cat([x, *pooled], dim=1)), {}


class DeconvFusion(nn.Module):
    """Table 3's Deconv: deep to shallow, x <- ReLU(Deconv3x3(x)) + X^i."""

    def __init__(self, channels: int, levels: int):
        super().__init__()
        self.deconvs = nn.ModuleList(nn.ConvTranspose2d(channels, channels, 3, padding=1)
                                     for _ in range(levels - 1))

    def forward(self, xs):
        x = xs[-1]
        for deconv, skip in zip(self.deconvs, xs[-2::-1], strict=True):
            x = F.relu(deconv(x)) + skip
        return x, {}


class ConvLSTMFusion(nn.Module):
    """Table 3's ConvLSTM (RRN): a ConvLSTM reads the levels deep to shallow."""

    def __init__(self, channels: int, levels: int):
        super().__init__()
        self.lstm = ConvLSTM(channels, channels, num_layers=1, kernel_size=3)

    def forward(self, xs):
        out, _ = self.lstm(torch.stack(xs[::-1]))  # (levels, B, C, h, w)
        return out[-1], {}


# Table 3's fusions: (channels, levels) -> module mapping the level maps to (fused, maps)
_FUSION_MODULES = {"gated": GatedFusion, "self_gated": partial(GatedFusion, self_gated=True),
                   "ppm": PyramidPooling, "deconv": DeconvFusion, "convlstm": ConvLSTMFusion}


class CMSA(nn.Module):
    """``model(images, tokens, lengths) -> ModelOutput`` with logits at the levels' size."""

    MASK_LOGIT_BIASES = ("classifier.bias",)  # models.common.start_at_prior

    def __init__(self, config: CMSAConfig):
        super().__init__()
        self.config = c = config
        levels, chosen = len(c.key_dims), c.level_indices
        # the shallowest of the levels sets the size of all (below), so it is always computed
        self.backbone, (self.size_map, *self.maps) = build_backbone_last(
            c.backbone, c.pretrained, levels, [0, *chosen], **c.backbone_kwargs)
        channels = [self.backbone.channels[i] for i in self.maps]
        self.embedding = nn.Embedding(c.vocab_size, c.embed_dim, padding_idx=PAD_INDEX)
        if c.language == "sentence":  # CMSA-S
            self.sentence = nn.LSTM(c.embed_dim, c.embed_dim)
        self.deep_projection = (nn.Conv2d(channels[-1], c.deep_visual_dim, 1)
                                if c.deep_visual_dim and chosen[-1] == levels - 1 else None)
        if self.deep_projection is not None:
            channels = [*channels[:-1], c.deep_visual_dim]
        keys = [c.key_dims[i] for i in chosen]
        self.attention = nn.ModuleList(
            CrossModalSelfAttention(ch, c.embed_dim, d, c.attention)
            for ch, d in zip(channels, keys, strict=True))
        self.reduce = nn.ModuleList(  # each level to fusion_dim channels (sec. 3.3)
            nn.Sequential(nn.Conv2d(ch + c.embed_dim + 8, c.fusion_dim, 1), nn.ReLU())
            for ch in channels)
        fusion = _FUSION_MODULES.get(c.fusion)  # None: one level alone (CMSA-W)
        self.fusion = fusion(c.fusion_dim, levels) if fusion else None
        self.classifier = nn.Conv2d(c.fusion_dim, 1, 3, padding=1)  # eq. (6)

    def language(self, tokens, lengths):
        """Words (B, N, C_l) and their count, or CMSA-S's sentence vector as one word."""
        words = self.embedding(tokens)
        if self.config.language == "sentence":
            return encode_words(self.sentence, words, lengths)[:, None], torch.ones_like(lengths)
        return words, lengths

    def level_features(self, images, tokens, lengths):
        """Eqs. (1)-(4) and the 1x1 reductions: X^i (B, fusion_dim, h, w) per level, shallow
        to deep, and the word attention mass per level (eval mode, full attention)."""
        features = self.backbone(images)
        size = features[self.size_map].shape[-2:]  # the shallowest level's: all are brought to it
        maps = [features[i] for i in self.maps]
        if self.deep_projection is not None:
            maps[-1] = self.deep_projection(maps[-1])
        words, lengths = self.language(tokens, lengths)
        xs, masses = [], []
        for attend, reduce, v in zip(self.attention, self.reduce, maps, strict=True):
            if v.shape[-2:] != size:
                v = F.interpolate(v, size=size, mode="bilinear", align_corners=False)
            f_hat, mass = attend(v, words, lengths)
            xs.append(reduce(f_hat))
            masses.append(mass)
        return xs, masses

    def forward(self, images, tokens, lengths) -> ModelOutput:
        check_inputs(images, tokens, lengths)
        xs, masses = self.level_features(images, tokens, lengths)
        attention = {}
        if self.fusion is None:
            fused = xs[-1]
        else:
            fused, attention = self.fusion(xs)
        if all(m is not None for m in masses):
            attention["word_attention"] = torch.stack(masses, 1)  # (B, levels, N)
        return ModelOutput(mask_logits=self.classifier(fused)[:, 0], attention=attention)


@register_model("cmsa", CMSAConfig)
def cmsa(profile: str = "quick", **cfg) -> CMSA:
    """CMSA; ``cfg``: ``vocab_size`` (required), ``CMSAConfig`` fields (the ablations) and
    backbone kwargs."""
    if "vocab_size" not in cfg:
        raise TypeError("cmsa needs vocab_size=len(vocabulary)")
    return CMSA(build_config(CMSAConfig, profile, cfg))
