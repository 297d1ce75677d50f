"""M3Att, M3Dec, IMI and LFR (Liu, Ding, Zhang & Jiang, IEEE TIP 32, 2023): components.

**Sources.** Only the abstract could be read. The full text (arXiv 2305.15302) could not
be read here and no official code is known (searched: the authors'
repositories, the code index; notebook 07's design note lists what was tried). What follows is
designed from the abstract and from a third-party reading of the paper's formulas (an
unofficial summary, not the paper): one affinity between the two modalities' keys, normalised
along each of its two axes, with the two read-outs fused multiplicatively. Every choice below
is ours and is named as such; the abstract's claims are what the ablation tests.

The abstract's point: in a transformer decoder whose queries come from the language, the
generic cross-attention output softmax(Q K_v^T) V_v is a mix of *vision* values only; language
decides the weights but does not appear in the output. Our reading, with L (B, N, d) the
language-side queries (one per word) and V (B, P, d) the vision tokens:

- ``CrossAttention`` (the baseline): A = (L W_q)(V W_k)^T / sqrt(d); O = softmax_P(A) V W_v.
- ``MutualAttention`` (M3Att): the same affinity A read both ways. Each word reads the pixels,
  O_v = softmax_P(A) V W_v (as above); each pixel reads the words, R = softmax_N(A)^T L W_u
  (P, d), and that language read-out is brought back to the words through the same pixel
  weights, O_l = softmax_P(A) R. The output O = W_o (O_v * O_l) carries both modalities
  explicitly (the product is the third-party reading's fusion).
- ``M3DecLayer``: attention (either kind) with a residual on the queries, then a feed-forward
  block (pre-norm transformer layer). **IMI**: with ``interact=True`` the layer also updates
  the vision tokens from the words (each pixel adds its language read-out R, projected) and the
  next layer's keys come from these updated tokens, so that language and vision are updated in
  turn across the stack; without it the vision tokens stay the encoder's.
- The model (``M3AttModel``): vision tokens from the deepest backbone map read (quick: the
  stride-8 map, 10 x 10 at 80 px; paper profile: Swin-B's stride-32 map, whose stride-16 and
  stride-8 maps join the mask head top-down), words from a scratch or pretrained encoder, a
  stack of ``M3DecLayer``, and the mask as the product of the final pixel features with the
  real words' mean (notebook 07, equations M1-M9).
- **LFR** (``lfr_loss``): a head reconstructs the language encoder's word features (held fixed,
  no gradient) from the decoder's output queries; the loss is 1 - cosine similarity averaged
  over the real words, with its weight as config.
"""

from __future__ import annotations

import math
import warnings
from dataclasses import dataclass, field

import torch
import torch.nn.functional as F
from torch import nn

from refseg_lib.data.types import Batch, ModelOutput
from refseg_lib.losses import mask_bce
from refseg_lib.models.common import build_config, check_inputs
from refseg_lib.models.registry import register_model
from refseg_lib.nn.backbones import build_backbone_for
from refseg_lib.nn.coords import append_coordinates
from refseg_lib.nn.text_encoders import (
    PretrainedWordEncoder,
    TransformerTextEncoder,
    minilm_directory,
)


def _affinity(q: torch.Tensor, k: torch.Tensor, word_valid: torch.Tensor) -> torch.Tensor:
    """A (B, N, P) = q k^T / sqrt(d); padded words' rows are zero (they are never read)."""
    return (q @ k.transpose(1, 2) / math.sqrt(q.shape[-1])).masked_fill(~word_valid[..., None], 0)


class CrossAttention(nn.Module):
    """The baseline: each word's query reads the vision values; the output is vision only."""

    def __init__(self, dim: int):
        super().__init__()
        self.q, self.k, self.v = nn.Linear(dim, dim), nn.Linear(dim, dim), nn.Linear(dim, dim)
        self.out = nn.Linear(dim, dim)

    def forward(self, words, vision, word_valid):
        """words (B, N, d), vision (B, P, d), word_valid (B, N) -> (output (B, N, d), A (B, N, P),
        pixel read-out None)."""
        a = _affinity(self.q(words), self.k(vision), word_valid)
        return self.out(a.softmax(-1) @ self.v(vision)), a, None


class MutualAttention(CrossAttention):
    """M3Att (our reading, module docstring): the affinity read over pixels and over words."""

    def __init__(self, dim: int):
        super().__init__(dim)
        self.u = nn.Linear(dim, dim)  # the language values

    def forward(self, words, vision, word_valid):
        """As ``CrossAttention``, plus the pixels' language read-out R (B, P, d)."""
        a = _affinity(self.q(words), self.k(vision), word_valid)
        over_pixels = a.softmax(-1)  # (B, N, P): each word's distribution over the pixels
        over_words = a.masked_fill(~word_valid[..., None], -torch.inf).softmax(1)  # (B, N, P)
        read_vision = over_pixels @ self.v(vision)  # O_v (B, N, d)
        read_words = over_words.transpose(1, 2) @ self.u(words)  # R (B, P, d)
        read_back = over_pixels @ read_words  # O_l (B, N, d)
        return self.out(read_vision * read_back), a, read_words


class M3DecLayer(nn.Module):
    """One decoder layer: pre-norm attention on the queries + feed-forward; ``interact`` (IMI)
    also updates the vision tokens with the words' read-out (mutual attention only)."""

    def __init__(self, dim: int, mutual: bool = True, interact: bool = True,
                 dropout: float = 0.0):
        super().__init__()
        if interact and not mutual:
            raise ValueError("IMI updates the vision tokens with M3Att's pixel read-out: "
                             "interact=True needs mutual=True")
        self.attention = MutualAttention(dim) if mutual else CrossAttention(dim)
        self.norm_words, self.norm_vision = nn.LayerNorm(dim), nn.LayerNorm(dim)
        self.norm_ffn = nn.LayerNorm(dim)
        self.ffn = nn.Sequential(nn.Linear(dim, 4 * dim), nn.GELU(), nn.Dropout(dropout),
                                 nn.Linear(4 * dim, dim))
        self.vision_update = nn.Linear(dim, dim) if interact else None
        self.dropout = nn.Dropout(dropout)

    def forward(self, words, vision, word_valid):
        """-> (words (B, N, d), vision (B, P, d), A (B, N, P))."""
        out, a, read_words = self.attention(self.norm_words(words), self.norm_vision(vision),
                                            word_valid)
        words = words + self.dropout(out)
        words = words + self.dropout(self.ffn(self.norm_ffn(words)))
        if self.vision_update is not None:
            vision = vision + self.dropout(self.vision_update(read_words))
        return words, vision, a


def lfr_loss(reconstructed: torch.Tensor, target: torch.Tensor, word_valid: torch.Tensor
             ) -> torch.Tensor:
    """LFR: 1 - cos(reconstructed, target) averaged over the real words of the batch.

    reconstructed, target (B, N, d); the target is the language encoder's output, detached
    here so that LFR shapes the decoder, not the encoder."""
    similarity = F.cosine_similarity(reconstructed.float(), target.detach().float(), dim=-1)
    valid = word_valid.float()
    return ((1 - similarity) * valid).sum() / valid.sum().clamp(min=1)


# ---------------------------------------------------------------------------------------------
# The model
# ---------------------------------------------------------------------------------------------

# Run variants: M3AttConfig flags and the row of the ablation they stand for (notebook 07)
VARIANTS: dict[str, tuple[dict, str]] = {
    "vanilla": ({"mutual": False, "interact": False, "lfr_weight": 0.0},
                "Vanilla decoder (cross-attention)"),
    "m3dec": ({"mutual": True, "interact": False, "lfr_weight": 0.0}, "+M3Att/M3Dec"),
    "imi": ({"mutual": True, "interact": True, "lfr_weight": 0.0}, "+IMI"),
    "lfr": ({"mutual": True, "interact": True}, "+LFR (the full model)"),
}
TEXT_ENCODERS = ("scratch", "minilm", "auto")


@dataclass
class M3AttConfig:
    """Our paper-profile guess (the authors' later work, ReLA/GRES, CVPR 2023, uses Swin-B and a
    BERT at 480 px) and ``quick()`` for a CPU. The default is the full model: M3Att, IMI and LFR."""

    vocab_size: int
    backbone: str = "swin_base"
    pretrained: bool = True
    dim: int = 256
    heads: int = 8  # the transformer layers of the encoders
    # backbone strides read: the decoder's tokens come from the last (the deepest), the others
    # join the mask head top-down (Swin-B: 15 x 15 tokens at 480 px, mask at stride 8)
    strides: tuple[int, ...] = (32, 16, 8)
    vision_layers: int = 1  # transformer layers over the vision tokens
    # "scratch" (trained here), "minilm" (pretrained, the [minilm] extra; an error without it)
    # or "auto" (MiniLM where installed, else the scratch encoder with a warning)
    text_encoder: str = "auto"
    text_layers: int = 2  # the scratch encoder's depth
    freeze_text: bool = False  # keep the pretrained encoder's weights fixed
    decoder_layers: int = 3
    mutual: bool = True  # M3Att (False: the generic cross-attention)
    interact: bool = True  # IMI
    lfr_weight: float = 0.1  # LFR's weight beside the mask BCE (0: no LFR)
    words: tuple[str, ...] | None = None  # the vocabulary's words (the pretrained encoder)
    backbone_kwargs: dict = field(default_factory=dict)

    @classmethod
    def quick(cls, **overrides) -> M3AttConfig:
        """small_cnn's stride-8 map alone (10 x 10 tokens at 80 px), width 64, 4 heads, the
        scratch encoder."""
        defaults = dict(backbone="small_cnn", pretrained=False, dim=64, heads=4, strides=(8,),
                        text_encoder="scratch")
        return cls(**{**defaults, **overrides})

    def __post_init__(self) -> None:
        if self.text_encoder not in TEXT_ENCODERS:
            raise ValueError(f"text_encoder must be one of {TEXT_ENCODERS}, got "
                             f"{self.text_encoder!r}")
        if self.text_encoder != "scratch" and self.words is None:
            raise ValueError("the pretrained encoder reads our vocabulary's words: pass "
                             "words=tuple(vocabulary.itos) (run_experiment does)")
        if self.interact and not self.mutual:
            raise ValueError("IMI (interact=True) needs M3Att (mutual=True)")
        if list(self.strides) != sorted(self.strides, reverse=True):
            raise ValueError(f"strides are read deepest first, e.g. (32, 16, 8); got "
                             f"{self.strides}")


class M3AttModel(nn.Module):
    """``model(images, tokens, lengths) -> ModelOutput``: mask logits at the last stride read
    (8), the decoder's attention maps, and ``aux`` for LFR and the probes."""

    MASK_LOGIT_BIASES = ("mask_bias",)  # models.common.start_at_prior

    def __init__(self, config: M3AttConfig):
        super().__init__()
        self.config = c = config
        self.backbone, self.levels = build_backbone_for(c.backbone, c.pretrained, c.strides,
                                                        **c.backbone_kwargs)
        channels = self.backbone.channels
        self.project = nn.Conv2d(channels[self.levels[0]] + 8, c.dim, 1)
        self.lateral = nn.ModuleList(nn.Conv2d(channels[i], c.dim, 1) for i in self.levels[1:])
        self.vision = nn.TransformerEncoder(
            nn.TransformerEncoderLayer(c.dim, c.heads, 4 * c.dim, 0.1, batch_first=True,
                                       norm_first=True), c.vision_layers,
            enable_nested_tensor=False)
        self.text_encoder = c.text_encoder  # the one built ("auto" resolves to one of the two)
        if c.text_encoder == "auto":
            try:
                minilm_directory()
                self.text_encoder = "minilm"
            except ImportError as error:
                warnings.warn(f"{error}. Using the from-scratch encoder instead.", stacklevel=2)
                self.text_encoder = "scratch"
        if self.text_encoder == "scratch":
            self.text = TransformerTextEncoder(c.vocab_size, c.dim, c.text_layers, c.heads)
            text_dim = c.dim
        else:
            self.text = PretrainedWordEncoder(c.words, freeze=c.freeze_text)
            text_dim = self.text.dim
        self.text_project = nn.Linear(text_dim, c.dim)
        self.decoder = nn.ModuleList(M3DecLayer(c.dim, c.mutual, c.interact)
                                     for _ in range(c.decoder_layers))
        self.norm = nn.LayerNorm(c.dim)
        self.mask_features = nn.Conv2d(c.dim, c.dim, 3, padding=1)
        self.mask_query = nn.Linear(c.dim, c.dim)
        self.mask_bias = nn.Parameter(torch.zeros(()))  # our choice: the logits' offset
        self.reconstruct = (nn.Sequential(nn.Linear(c.dim, c.dim), nn.GELU(),
                                          nn.Linear(c.dim, text_dim))
                            if c.lfr_weight > 0 else None)

    def forward(self, images, tokens, lengths) -> ModelOutput:
        check_inputs(images, tokens, lengths)
        features = self.backbone(images)
        feature = features[self.levels[0]]
        b, _, h, w = feature.shape
        vision = self.project(append_coordinates(feature)).flatten(2).transpose(1, 2)
        vision = self.vision(vision)  # (B, hw, d)
        encoded = self.text(tokens, lengths)  # (B, N, text_dim)
        valid = torch.arange(tokens.shape[1], device=tokens.device) < lengths[:, None]
        words = projected = self.text_project(encoded)  # the decoder's input words
        attention = []
        for layer in self.decoder:
            words, vision, a = layer(words, vision, valid)
            attention.append(a.view(b, -1, h, w))
        words = self.norm(words)
        weights = valid.to(words.dtype)[..., None]
        sentence = (words * weights).sum(1) / weights.sum(1)  # (B, d): the real words' mean
        pixels = vision.transpose(1, 2).reshape(b, -1, h, w)
        for level, lateral in zip(self.levels[1:], self.lateral, strict=True):  # top-down
            skip = features[level]
            pixels = F.interpolate(pixels, size=skip.shape[-2:], mode="bilinear",
                                   align_corners=False) + lateral(skip)
        maps = self.mask_features(pixels)
        logits = torch.einsum("bchw,bc->bhw", maps, self.mask_query(sentence))
        aux = {"valid": valid, "words": words, "decoder_input": projected}
        if self.reconstruct is not None:
            aux.update(reconstructed=self.reconstruct(words), encoded=encoded)
        return ModelOutput(mask_logits=logits / math.sqrt(self.config.dim) + self.mask_bias,
                           attention={"decoder": torch.stack(attention, 1)}, aux=aux)

    def training_loss(self, output: ModelOutput, batch: Batch
                      ) -> tuple[torch.Tensor, dict[str, float]]:
        """The mask BCE (``losses.mask_bce``) + lfr_weight x LFR, the terms logged."""
        loss, parts = mask_bce(output, batch)
        if "reconstructed" in output.aux:
            lfr = lfr_loss(output.aux["reconstructed"], output.aux["encoded"], output.aux["valid"])
            loss = loss + self.config.lfr_weight * lfr
            parts = {**parts, "lfr": float(lfr.detach())}
        return loss, parts


@register_model("m3att", M3AttConfig)
def m3att(profile: str = "quick", words: tuple[str, ...] | None = None, **cfg) -> M3AttModel:
    """M3Att (our reading, module docstring); ``cfg``: ``vocab_size`` (required), ``words``
    (the vocabulary's words, for the pretrained encoder; ``run_experiment`` passes them),
    ``M3AttConfig`` fields and backbone kwargs."""
    if "vocab_size" not in cfg:
        raise TypeError("m3att needs vocab_size=len(vocabulary)")
    words = None if words is None else tuple(words)
    return M3AttModel(build_config(M3AttConfig, profile, {**cfg, "words": words}))


# ---------------------------------------------------------------------------------------------
# The LFR probe: how much of the expression can be read back from the decoder's output
# ---------------------------------------------------------------------------------------------

def ridge_probe(x: torch.Tensor, y: torch.Tensor, ridge: float = 1.0
                ) -> tuple[torch.Tensor, torch.Tensor]:
    """Least-squares linear map (with a bias) from features x (n, d) to targets y (n, k),
    L2-penalised by ``ridge`` on the standardised features. Returns (the features' mean and
    std (2, d), the weights (d + 1, k)) for ``_probe_apply``. Closed form: no seed, no
    schedule."""
    x, y = x.double(), y.double()
    mean, std = x.mean(0), x.std(0).clamp(min=1e-6)
    z = torch.cat([(x - mean) / std, torch.ones(len(x), 1, dtype=x.dtype)], 1)
    gram = z.T @ z + ridge * torch.eye(z.shape[1], dtype=x.dtype)
    return torch.stack([mean, std]), torch.linalg.solve(gram, z.T @ y)


def _probe_apply(fit: tuple[torch.Tensor, torch.Tensor], x: torch.Tensor) -> torch.Tensor:
    """The probe's predictions (n, k) for features x (n, d)."""
    (mean, std), weights = fit
    z = (x.double() - mean) / std
    return torch.cat([z, torch.ones(len(z), 1, dtype=z.dtype)], 1) @ weights


@torch.no_grad()
def _decoder_words(model: M3AttModel, dataset, collate, batch_size: int = 64):
    """(decoder output words, decoder input words, tokens) of the real words of ``dataset``,
    and each sentence's mean decoder word with its tokens."""
    loader = torch.utils.data.DataLoader(dataset, batch_size=batch_size, collate_fn=collate)
    device = next(model.parameters()).device
    outs, ins, tokens, sentences, bags = [], [], [], [], []
    was_training = model.training
    model.eval()
    try:
        for batch in loader:
            batch = batch.to(device)
            aux = model(batch.images, batch.tokens, batch.lengths).aux
            valid = aux["valid"]
            outs.append(aux["words"][valid].float().cpu())
            ins.append(aux["decoder_input"][valid].float().cpu())
            tokens.append(batch.tokens[valid].cpu())
            weights = valid[..., None].float()
            sentences.append(((aux["words"] * weights).sum(1) / weights.sum(1)).float().cpu())
            bags += [set(t[:n]) for t, n in zip(batch.tokens.tolist(), batch.lengths.tolist(),
                                                strict=True)]
    finally:
        model.train(was_training)
    return torch.cat(outs), torch.cat(ins), torch.cat(tokens), torch.cat(sentences), bags


def fit_word_probes(model: M3AttModel, train_set, collate, vocab_size: int,
                    ridge: float = 1.0) -> dict[str, tuple[torch.Tensor, torch.Tensor]]:
    """The three probes of ``word_recovery``, fitted on ``train_set``'s decoder features
    (closed-form ridge regression onto one-hot words); fit once, score on every split."""
    outs, ins, tokens, sentences, bags = _decoder_words(model, train_set, collate)
    words = F.one_hot(tokens, vocab_size)
    bag_targets = torch.zeros(len(bags), vocab_size)
    for row, bag in enumerate(bags):
        bag_targets[row, list(bag)] = 1
    return {"word_recovery": ridge_probe(outs, words, ridge),
            "word_recovery_input": ridge_probe(ins, words, ridge),
            "bag_recovery": ridge_probe(sentences, bag_targets, ridge)}


def word_recovery(model: M3AttModel, train_set, eval_set, collate, vocab_size: int,
                  ridge: float = 1.0, probes: dict | None = None) -> dict[str, float]:
    """Linear probes that read the expression back from the decoder (notebook 07's LFR test).

    Fit on ``train_set``'s features (``fit_word_probes``; pass ``probes`` to reuse a fit),
    scored on ``eval_set``:
    - ``word_recovery``: each real word's identity from the decoder's output at its position;
    - ``word_recovery_input``: the same from the decoder's input (the reference: what the
      language encoder handed over);
    - ``bag_recovery``: from each sentence's mean output word (what the mask head reads), the
      share of its k distinct words found among the probe's top k.
    """
    probes = probes or fit_word_probes(model, train_set, collate, vocab_size, ridge)
    outs, ins, tokens, sentences, bags = _decoder_words(model, eval_set, collate)
    scores = {}
    for name, features in (("word_recovery", outs), ("word_recovery_input", ins)):
        predicted = _probe_apply(probes[name], features).argmax(1)
        scores[name] = float((predicted == tokens).float().mean())
    predicted = _probe_apply(probes["bag_recovery"], sentences)
    recall = [len(set(p.topk(len(bag)).indices.tolist()) & bag) / len(bag)
              for p, bag in zip(predicted, bags, strict=True)]
    scores["bag_recovery"] = sum(recall) / len(recall)
    return scores
