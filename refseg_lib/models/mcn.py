"""MCN: Multi-task Collaborative Network (Luo, Zhou, Sun, Cao, Wu, Deng & Ji, CVPR 2020).

One network for referring expression comprehension (REC: a box) and segmentation (RES: a
mask), sec. 3.1:

- language: word embeddings, a bi-GRU with its two directions summed, and self-guided
  attention pooling f_t = sum_t softmax_t(w^T tanh(W h_t)) h_t ("+TextAtt" of Table 2;
  without it, the GRU's last states);
- fusion (eqs. 1-2): F_m1 = sigma(F_v1 W_v1) * sigma(f_t W_t) at stride 32, then twice
  upsample x2 and concatenate with the next visual level, F_m2 at stride 16 and F_m3 at 8;
- the bottom-up connection (sec. 3.1): F'_m1 for REC from F_m3, by average pooling x2 and
  concatenation twice (eq. 2 run backwards), so that REC reads what RES was taught;
- GARAN attention (``GARAN``) refines each branch; its attention features feed CEM;
- REC head (eq. 4): a 1x1 convolution to 3 anchors x 5 numbers (``nn.anchors``), loss
  ``losses.rec_loss``; RES head (eq. 3): ASPP and one logit per cell at stride 8, loss
  ``losses.downsampled_mask_bce``;
- CEM (eqs. 5-9): ``losses.cem_loss`` on E_s = F_a^s W_s and E_c = F_a^c W_c;
- overall loss (eq. 12): 0.1 l_res + 1.0 l_rec + 1.0 l_cem (``MCN.training_loss``);
- at test time the mask is post-processed with the box (eqs. 10-11, ``refseg_lib.postprocess``)
  and binarised at 0.35 (``MCN_THRESHOLD``; evaluate with ``thresholds=(0.5, 0.35)``).

Table 3's structures and Table 2's ladder are flags of ``MCNConfig``; ``VARIANTS`` names each
row. "Scale 13^2" stands for the stride-32 map and "52^2" for the stride-8 one (13 and 52 cells
at 416 px; 3 and 10 cells at the quick profile's 80 px).

Choices where the paper is silent (the official code, luogen1996/MCN, settles some):

- sigma in eqs. 1-2 is LeakyReLU(0.1) after batch norm, every projection a 1x1 convolution
  (the official code's Conv-BN-LeakyReLU unit; it also puts a residual block before eq. 1,
  which we leave out). Each half of eq. 2's concatenation has proj_dim / 2 channels, so every
  F_m has proj_dim.
- Base without TextAtt uses the bi-GRU's last states (forward after the last word plus
  backward before the first), the usual sentence vector of a recurrent encoder.
- GARAN (Zhou et al., 2019; the paper cites it without equations), in the form we chose: two
  heads by channel split; per head a softmax over the map collects one vector, a sigmoid map
  diffuses it back, out = LeakyReLU(BN(F_att + F)).
- Without GARAN (Base, +TextAtt) CEM would read the branch features; the ladder never does
  that, as in the paper.
- CEM: eq. 9 as printed, -sum_ij [log E'_s(i) + log E'_c(j) + log T(i, j)], separates into
  one term per map, each maximised by a uniform softmax, so it cannot couple the maps
  (notebook 06b shows it). The full MCN uses the official code's form, the log of the summed
  energy -log sum_ij E'_s(i) T(i, j) E'_c(j), which rewards the two maps for agreeing; eq. 9
  as printed stays a variant (``cem_eq9``, its own row), divided by its P_s P_c pairs (457,000
  at 416 px; ``cem_loss(per_pair=True)``) so that eq. 12's weight 1.0 is on the scale of the
  other terms.
- Single_REC predicts no mask; its ``mask_logits`` are its box filled in (+-10), so that the
  harness can score it, and its RES columns say how well a box covers a ShapeRef shape.
- Anchors: the paper's three (k-means on RefCOCO at 416 px); the quick profile's are k-means
  (``nn.anchors.anchor_kmeans``) on 2000 ShapeRef training boxes at 80 px (notebook 06
  recomputes them).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import torch
import torch.nn.functional as F
from torch import nn
from torch.nn.utils.rnn import pack_padded_sequence, pad_packed_sequence

from refseg_lib.data.text import PAD_INDEX
from refseg_lib.data.types import Batch, ModelOutput
from refseg_lib.losses import cem_loss, downsampled_mask_bce, rec_loss
from refseg_lib.models.common import build_config, check_inputs
from refseg_lib.models.registry import register_model
from refseg_lib.nn.anchors import best_box
from refseg_lib.nn.backbones import build_backbone_for
from refseg_lib.postprocess import asnls, inside_box, roi_crop, soft_nls

SCALES = {"13": 32, "52": 8}  # the paper's names of the two branch scales -> stride
POSTPROCESS = ("none", "roi", "soft_nls", "asnls")  # Table 1
CEM = ("off", "paper", "code")
PAPER_ANCHORS = ((137, 256), (248, 272), (386, 271))  # official code, pixels at 416 x 416
QUICK_ANCHORS = ((25, 26), (30, 32), (44, 46))  # anchor_kmeans on ShapeRef train, 80 px

# Run variants: MCNConfig flags and the row of the paper they stand for (Tables 2 and 3).
# Every structure of Table 3 is in the Base configuration (no TextAtt, GARAN or CEM), and no
# training run post-processes (Table 3: "all structures do not use the post-processing");
# Table 1's post-processings and Table 2's +ASNLS are evaluations of the "cem" run.
_BASE = {"text_attention": False, "garan": False, "cem": "off", "postprocess": "none"}
VARIANTS: dict[str, tuple[dict, str]] = {
    "base": (_BASE, "MCN (Base)"),
    "text_att": ({**_BASE, "text_attention": True}, "+TextAtt"),
    "garan": ({**_BASE, "text_attention": True, "garan": True}, "+GARAN"),
    "cem": ({**_BASE, "text_attention": True, "garan": True, "cem": "code"}, "+CEM"),
    "cem_eq9": ({**_BASE, "text_attention": True, "garan": True, "cem": "paper"},
                "+CEM (eq. 9 as printed)"),
    "single_rec_13": ({**_BASE, "rec_scale": "13", "res_scale": None}, "Single_REC (13^2)"),
    "single_rec_52": ({**_BASE, "rec_scale": "52", "res_scale": None}, "Single_REC (52^2)"),
    "single_res_13": ({**_BASE, "rec_scale": None, "res_scale": "13"}, "Single_RES (13^2)"),
    "single_res_52": ({**_BASE, "rec_scale": None, "res_scale": "52"}, "Single_RES (52^2)"),
    "ohd_13": ({**_BASE, "rec_scale": "13", "res_scale": "13", "shared_branch": True},
               "OnlyHeadDifferent (13^2)"),
    "ohd_52": ({**_BASE, "rec_scale": "52", "res_scale": "52", "shared_branch": True},
               "OnlyHeadDifferent (52^2)"),
    "obs": ({**_BASE, "bottom_up": False}, "OnlyBackboneShared (REC 13^2, RES 52^2)"),
}


@dataclass
class MCNConfig:
    """The paper's settings (sec. 4.3, official code); ``quick()`` for a CPU. The default is
    the full MCN: TextAtt, GARAN, CEM and ASNLS."""

    vocab_size: int
    backbone: str = "darknet53"
    pretrained: bool = True
    embed_dim: int = 300  # GloVe's width
    gru_dim: int = 1024
    proj_dim: int = 512  # eqs. 1-2 and the branches
    aspp_dim: int = 256
    aspp_rates: tuple[int, ...] = (6, 12, 18)
    garan_heads: int = 2
    anchors: tuple[tuple[int, int], ...] = PAPER_ANCHORS
    text_attention: bool = True  # Table 2's +TextAtt
    garan: bool = True  # Table 2's +GARAN
    cem: str = "code"  # Table 2's +CEM: "off", "code" (the two maps coupled, official code),
    # "paper" (eq. 9 as printed, which a uniform map maximises: notebook 06b)
    postprocess: str = "asnls"  # Table 1, at test time: "none", "roi", "soft_nls", "asnls"
    rec_scale: str | None = "13"  # Table 3: the REC branch's map ("13", "52") or no REC
    res_scale: str | None = "52"  # the RES branch's map, or no RES
    shared_branch: bool = False  # OnlyHeadDifferent: one branch, two heads
    bottom_up: bool = True  # the RES -> REC connection (OnlyBackboneShared: False)
    loss_weights: tuple[float, float, float] = (0.1, 1.0, 1.0)  # eq. 12: res, rec, cem
    dropout: float = 0.1  # on the GRU's states
    backbone_kwargs: dict = field(default_factory=dict)

    @classmethod
    def quick(cls, **overrides) -> MCNConfig:
        """small_cnn at 80 px (maps 3x3, 5x5, 10x10), widths 64, ASPP rates 1/2/3 on the stride-8
        map (6/12/18 on 52 cells are about 1/8, 1/4, 1/3 of it), anchors for 80 px shapes."""
        defaults = dict(backbone="small_cnn", pretrained=False, embed_dim=64, gru_dim=64,
                        proj_dim=64, aspp_dim=32, aspp_rates=(1, 2, 3), anchors=QUICK_ANCHORS)
        return cls(**{**defaults, **overrides})

    def __post_init__(self) -> None:
        for name, value, allowed in (("cem", self.cem, CEM),
                                     ("postprocess", self.postprocess, POSTPROCESS),
                                     ("rec_scale", self.rec_scale, (*SCALES, None)),
                                     ("res_scale", self.res_scale, (*SCALES, None))):
            if value not in allowed:
                raise ValueError(f"{name} must be one of {allowed}, got {value!r}")
        both = self.rec_scale is not None and self.res_scale is not None
        if self.rec_scale is None and self.res_scale is None:
            raise ValueError("a model needs a REC branch, a RES branch or both")
        if self.shared_branch and (not both or self.rec_scale != self.res_scale):
            raise ValueError("shared_branch (OnlyHeadDifferent) needs rec_scale == res_scale")
        if self.cem != "off" and (not both or self.shared_branch):
            raise ValueError("CEM ties two separate branches: give rec_scale and res_scale, "
                             "and shared_branch=False")
        if self.proj_dim % 2 or self.proj_dim % self.garan_heads:
            raise ValueError("proj_dim must be even and divisible by garan_heads")

    @property
    def uses_bottom_up(self) -> bool:
        """The connection exists where REC reads the coarse map and RES the fine one."""
        return (self.bottom_up and not self.shared_branch and self.rec_scale == "13"
                and self.res_scale == "52")


def cbl(c_in: int, c_out: int, kernel: int = 1, dilation: int = 1) -> nn.Sequential:
    """Convolution, batch norm, LeakyReLU(0.1): sigma(x W) of eqs. 1-2 (YOLOv3's unit)."""
    return nn.Sequential(nn.Conv2d(c_in, c_out, kernel, padding=dilation * (kernel // 2),
                                   dilation=dilation, bias=False),
                         nn.BatchNorm2d(c_out), nn.LeakyReLU(0.1))


class TextEncoder(nn.Module):
    """Embeddings -> bi-GRU (directions summed) -> f_t, by self-guided attention or last states."""

    def __init__(self, vocab_size: int, embed_dim: int, hidden: int, attention: bool,
                 dropout: float):
        super().__init__()
        self.embedding = nn.Embedding(vocab_size, embed_dim, padding_idx=PAD_INDEX)
        self.gru = nn.GRU(embed_dim, hidden, batch_first=True, bidirectional=True)
        self.dropout = nn.Dropout(dropout)
        self.score = (nn.Sequential(nn.Linear(hidden, hidden), nn.Tanh(), nn.Linear(hidden, 1))
                      if attention else None)

    def forward(self, tokens, lengths) -> tuple[torch.Tensor, torch.Tensor | None]:
        """f_t (B, hidden) and the word weights (B, T) (None without attention)."""
        packed = pack_padded_sequence(self.embedding(tokens), lengths.cpu(), batch_first=True,
                                      enforce_sorted=False)
        out, last = self.gru(packed)
        if self.score is None:
            return self.dropout(last[0] + last[1]), None  # forward's end + backward's start
        states, _ = pad_packed_sequence(out, batch_first=True, total_length=tokens.shape[1])
        forward, backward = states.chunk(2, dim=-1)
        states = self.dropout(forward + backward)
        valid = torch.arange(tokens.shape[1], device=tokens.device) < lengths[:, None]
        logits = self.score(states)[..., 0].masked_fill(~valid, float("-inf"))
        weights = logits.softmax(-1)  # (B, T)
        return (weights[..., None] * states).sum(1), weights


class GARAN(nn.Module):
    """Guided attention (collect, then diffuse) on a branch's map, guided by f_t.

    Per head h (channels split in ``heads``): q = W_q f_t; a = softmax_HW(K_c q / sqrt(d));
    f_att = sum_HW a V; d = sigmoid(K_d q / sqrt(d)); F_att = d f_att^T. Returns
    LeakyReLU(BN(F_att + F)), F_att (B, C, h, w) for CEM and a (B, heads, h, w).
    """

    def __init__(self, channels: int, text_dim: int, heads: int = 2):
        super().__init__()
        self.heads = heads
        self.query = nn.Linear(text_dim, channels)
        self.keys_values = nn.Conv2d(channels, 3 * channels, 1)  # K_c, V, K_d (W_0, W_1, W_2)
        self.norm = nn.BatchNorm2d(channels)

    def forward(self, x, text):
        b, c, h, w = x.shape
        d = c // self.heads
        q = self.query(text).view(b, self.heads, d, 1)
        k_c, v, k_d = self.keys_values(x).view(b, 3, self.heads, d, h * w).unbind(1)
        collect = ((k_c * q).sum(2) / math.sqrt(d)).softmax(-1)  # (B, heads, HW)
        gathered = (v * collect[:, :, None]).sum(-1, keepdim=True)  # (B, heads, d, 1)
        diffuse = torch.sigmoid((k_d * q).sum(2, keepdim=True) / math.sqrt(d))  # (B, heads, 1, HW)
        f_att = (gathered * diffuse).reshape(b, c, h, w)
        return F.leaky_relu(self.norm(f_att + x), 0.1), f_att, collect.view(b, self.heads, h, w)


class ASPP(nn.Module):
    """Atrous spatial pyramid pooling (DeepLabv3): 1x1, three dilated 3x3 and image pooling,
    concatenated, projected, then one logit per cell (eq. 3's O)."""

    def __init__(self, channels: int, width: int, rates: tuple[int, ...]):
        super().__init__()
        self.branches = nn.ModuleList([cbl(channels, width),
                                       *(cbl(channels, width, 3, r) for r in rates)])
        self.pool = nn.Sequential(nn.AdaptiveAvgPool2d(1), nn.Conv2d(channels, width, 1),
                                  nn.LeakyReLU(0.1))
        self.project = cbl(width * (len(rates) + 2), width)
        self.logit = nn.Conv2d(width, 1, 1)

    def forward(self, x):
        pooled = self.pool(x).expand(-1, -1, *x.shape[-2:])
        return self.logit(self.project(torch.cat([*(b(x) for b in self.branches), pooled], 1)))


class Branch(nn.Module):
    """A branch's 1x1 to proj_dim and its GARAN (or none)."""

    def __init__(self, proj: int, text_dim: int, garan: bool, heads: int):
        super().__init__()
        self.reduce = cbl(proj, proj)
        self.garan = GARAN(proj, text_dim, heads) if garan else None

    def forward(self, x, text):
        x = self.reduce(x)
        if self.garan is None:
            return x, x, None
        return self.garan(x, text)


class MCN(nn.Module):
    """``model(images, tokens, lengths) -> ModelOutput``: mask logits at the RES branch's
    stride (post-processed in eval mode), box (B, 4) and its score, and ``aux`` for the loss."""

    MASK_LOGIT_BIASES = ("res_head.logit.bias",)  # models.common.start_at_prior

    def __init__(self, config: MCNConfig):
        super().__init__()
        self.config = c = config
        self.postprocess = c.postprocess  # settable: evaluate one trained model four ways
        fine = "52" in (c.rec_scale, c.res_scale)
        strides = [32, 16, 8] if fine else [32]
        self.backbone, self.levels = build_backbone_for(c.backbone, c.pretrained, strides,
                                                        **c.backbone_kwargs)
        channels = [self.backbone.channels[i] for i in self.levels]
        p, half = c.proj_dim, c.proj_dim // 2
        self.text = TextEncoder(c.vocab_size, c.embed_dim, c.gru_dim, c.text_attention, c.dropout)
        self.visual_1 = cbl(channels[0], p)  # eq. 1, W_v1
        self.text_1 = nn.Sequential(nn.Linear(c.gru_dim, p), nn.BatchNorm1d(p),
                                    nn.LeakyReLU(0.1))  # eq. 1, W_t
        # eq. 2 for i = 2, 3: (W_m{i-1} on the upsampled F_m{i-1}, W_v{i} on F_v{i})
        self.top_down = nn.ModuleList(nn.ModuleList([cbl(p, half), cbl(ch, half)])
                                      for ch in channels[1:])
        if c.uses_bottom_up:  # eq. 2 backwards: F'_m2 = [pool(F_m3), F_m2], F'_m1 likewise
            self.bottom_up = nn.ModuleList(nn.ModuleList([cbl(p, half), cbl(p, half)])
                                           for _ in range(2))
        heads = (p, c.gru_dim, c.garan, c.garan_heads)
        self.rec_branch = (Branch(*heads) if c.rec_scale and not c.shared_branch else None)
        self.res_branch = Branch(*heads) if c.res_scale else None
        self.register_buffer("anchors", torch.tensor(c.anchors, dtype=torch.float32),
                             persistent=False)
        self.rec_head = nn.Conv2d(p, 5 * len(c.anchors), 1) if c.rec_scale else None
        self.res_head = ASPP(p, c.aspp_dim, c.aspp_rates) if c.res_scale else None
        if c.cem != "off":  # eq. 5: W_s and W_c
            self.energy_s, self.energy_c = nn.Conv2d(p, 1, 1), nn.Conv2d(p, 1, 1)

    def fuse(self, images, tokens, lengths):
        """Eqs. 1-2: {"13": F_m1, "52": F_m3} (those that exist), f_t and the word weights."""
        maps = self.backbone(images)
        f_t, words = self.text(tokens, lengths)
        f_m = self.visual_1(maps[self.levels[0]]) * self.text_1(f_t)[:, :, None, None]
        fused = [f_m]
        for (w_m, w_v), level in zip(self.top_down, self.levels[1:], strict=True):
            up = F.interpolate(f_m, size=maps[level].shape[-2:])  # x2 (nearest), to the map
            f_m = torch.cat([w_m(up), w_v(maps[level])], 1)
            fused.append(f_m)
        if self.config.uses_bottom_up:  # F'_m1 from F_m3 through F_m2 (sec. 3.1)
            x = fused[-1]
            for (w_down, w_same), same in zip(self.bottom_up, fused[-2::-1], strict=True):
                x = torch.cat([w_down(F.avg_pool2d(x, 2, ceil_mode=True)), w_same(same)], 1)
            return {"13": x, "52": fused[-1]}, f_t, words
        return {"13": fused[0], "52": fused[-1]}, f_t, words

    def forward(self, images, tokens, lengths) -> ModelOutput:
        check_inputs(images, tokens, lengths)
        c = self.config
        fused, f_t, words = self.fuse(images, tokens, lengths)
        aux, attention = {}, {} if words is None else {"words": words}
        size = images.shape[-2:]
        if c.res_scale:
            x_s, f_s, a_s = self.res_branch(fused[c.res_scale], f_t)
            aux["res_logits"] = res_logits = self.res_head(x_s)[:, 0]
            if a_s is not None:
                attention["garan_res"] = a_s
        if c.rec_scale:
            if c.shared_branch:
                x_c, f_c, a_c = x_s, f_s, a_s
            else:
                x_c, f_c, a_c = self.rec_branch(fused[c.rec_scale], f_t)
            aux["rec_raw"] = raw = self.rec_head(x_c).unflatten(1, (len(c.anchors), 5))
            box, score = best_box(raw.float(), self.anchors, SCALES[c.rec_scale])
            box = torch.stack([box[:, 0].clamp(0, size[1]), box[:, 1].clamp(0, size[0]),
                               box[:, 2].clamp(0, size[1]), box[:, 3].clamp(0, size[0])], 1)
            if a_c is not None and not c.shared_branch:
                attention["garan_rec"] = a_c
        else:
            box = score = None
        if c.cem != "off":
            aux["cem"] = (self.energy_s(f_s).flatten(1), self.energy_c(f_c).flatten(1),
                          f_s.flatten(2).transpose(1, 2), f_c.flatten(2).transpose(1, 2))
        if not c.res_scale:  # Single_REC: the box filled in stands for its mask
            mask_logits = torch.where(inside_box(box, size), 10.0, -10.0)
        elif self.training or box is None or self.postprocess == "none":
            mask_logits = res_logits
        else:
            mask_logits = self.refine(res_logits, box, score, SCALES[c.res_scale])
        return ModelOutput(mask_logits=mask_logits, box=box, confidence=score,
                           attention=attention, aux=aux)

    def refine(self, logits, box, score, stride):
        """Table 1's post-processing of the RES response o = sigmoid(logits) with the box
        (in the map's cells), back to logits (clamped: only the 0.35 threshold matters)."""
        o, cells = torch.sigmoid(logits.float()), box / stride
        if self.postprocess == "roi":
            m = roi_crop(o, cells)
        elif self.postprocess == "soft_nls":
            m = soft_nls(o, cells)
        else:
            m = asnls(o, cells, score)
        return torch.logit(m.clamp(1e-6, 1 - 1e-6))

    def training_loss(self, output: ModelOutput, batch: Batch
                      ) -> tuple[torch.Tensor, dict[str, float]]:
        """Eq. 12: lambda_s l_res + lambda_c l_rec + lambda_e l_cem, with the terms logged."""
        c, aux = self.config, output.aux
        w_res, w_rec, w_cem = c.loss_weights
        total, parts = 0.0, {}
        if "res_logits" in aux:
            l_res = downsampled_mask_bce(aux["res_logits"], batch.masks)
            total, parts["res"] = total + w_res * l_res, float(l_res.detach())
        if "rec_raw" in aux:
            l_rec, rec_parts = rec_loss(aux["rec_raw"], batch.boxes, self.anchors,
                                        SCALES[c.rec_scale], tuple(batch.images.shape[-2:]))
            total, parts["rec"] = total + w_rec * l_rec, float(l_rec.detach())
            parts.update(rec_parts)
        if "cem" in aux:
            e_s, e_c, f_s, f_c = (t.float() for t in aux["cem"])
            l_cem = cem_loss(e_s, e_c, f_s, f_c, form=c.cem, per_pair=True)
            total, parts["cem"] = total + w_cem * l_cem, float(l_cem.detach())
        return total, parts


@register_model("mcn", MCNConfig)
def mcn(profile: str = "quick", **cfg) -> MCN:
    """MCN; ``cfg``: ``vocab_size`` (required), ``MCNConfig`` fields (the ablations) and
    backbone kwargs."""
    if "vocab_size" not in cfg:
        raise TypeError("mcn needs vocab_size=len(vocabulary)")
    return MCN(build_config(MCNConfig, profile, cfg))
