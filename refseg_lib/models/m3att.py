"""M3Att, M3Dec, IMI and LFR (Liu, Ding, Zhang & Jiang, IEEE TIP 32, 2023): components.

**Sources.** We hold only the abstract (``m3att_abstract.txt``). The full text (arXiv
2305.15302) could not be read here and no official code is known (searched: the authors'
repositories, the code index; notebook 07's design note lists what was tried). What follows is
designed from the abstract and from a third-party reading of the paper's formulas
(SPECS.md): one affinity between the two modalities' keys, normalised along each of its two
axes, with the two read-outs fused multiplicatively. Every choice below is ours and is named as
such; the abstract's claims are what the ablation tests.

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
- **LFR** (``lfr_loss``): a head reconstructs the language encoder's word features (held fixed,
  no gradient) from the decoder's output queries; the loss is 1 - cosine similarity averaged
  over the real words, with its weight as config.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn


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
