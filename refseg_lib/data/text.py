"""Tokenizer, vocabulary and optional word vectors for referring expressions.

The papers tokenise in the same simple way: lower-case, split on anything that is not a word
character, drop punctuation (DMN's official code also drops a trailing "."), and cut to a
maximum length: 15 tokens for RefCOCO / RefCOCO+ / ReferIt and 20 for G-Ref (MCN sec. 4.2;
CMSA uses 20 everywhere). Index 0 is ``<pad>`` and index 1 is ``<unk>``.

A word is a run of letters and digits (``"2nd"``), with one apostrophe before letters
(``"woman's"``). Any script counts: the text is first put in Unicode NFC form (a decomposed
``"cafe\u0301"`` is ``"café"``), a combining mark stays with its letter (``"café"``, Hindi
``"नमस्ते"`` are one word each) and ``"’"`` reads as ``"'"``. ASCII text is tokenised exactly
as with the plain ``[a-z0-9]+(?:'[a-z]+)?`` rule.
"""

from __future__ import annotations

import re
import sys
import unicodedata
from collections import Counter
from collections.abc import Iterable
from functools import cache
from pathlib import Path

import torch

PAD, UNK = "<pad>", "<unk>"
PAD_INDEX, UNK_INDEX = 0, 1

#: Default maximum expression length in tokens, per dataset.
MAX_LENGTH = {"refcoco": 15, "refcoco+": 15, "refclef": 15, "refcocog": 20, "shapes": 20}

_ASCII_WORD = re.compile(r"[a-z0-9]+(?:'[a-z]+)?")  # the rule on ASCII text (the fast path)


@cache
def _word() -> re.Pattern:
    """The rule for any script: letters and digits (``[^\\W_]``), each with the combining
    marks that follow it. Built on first use (listing the marks takes a tenth of a second)."""
    marks = "".join(c for c in map(chr, range(sys.maxunicode + 1))
                    if unicodedata.category(c).startswith("M"))
    return re.compile(rf"(?:[^\W_][{marks}]*)+(?:'(?:[^\W\d_][{marks}]*)+)?")


def _words_text(sentence: str) -> tuple[str, re.Pattern]:
    """``sentence`` lower-cased (NFC form, ``"’"`` as ``"'"``) and the rule that finds its words."""
    if sentence.isascii():
        return sentence.lower(), _ASCII_WORD
    return unicodedata.normalize("NFC", sentence).replace("\u2019", "'").lower(), _word()


def tokenize(sentence: str) -> list[str]:
    """Lower-case words of ``sentence``; punctuation and whitespace are separators.

    >>> tokenize("The man on the RIGHT, holding a cup.")
    ['the', 'man', 'on', 'the', 'right', 'holding', 'a', 'cup']
    >>> tokenize("Le café, à GAUCHE")
    ['le', 'café', 'à', 'gauche']
    """
    text, word = _words_text(sentence)
    return word.findall(text)


def ignored_characters(sentence: str) -> list[str]:
    """The characters of ``sentence`` that no word holds and that are neither whitespace nor
    punctuation (emoji, symbols such as ``"+"`` or ``"$"``), each once, in order: what
    ``tokenize`` drops besides separators. Marks and invisible format characters left over (the
    variation selector or joiner inside an emoji) go with the character they decorate.

    >>> ignored_characters("the red star + the 😀 one!")
    ['+', '😀']
    """
    text, word = _words_text(sentence)
    return list(dict.fromkeys(c for c in word.sub(" ", text) if not c.isspace()
                              and unicodedata.category(c)[0] not in "PM"
                              and unicodedata.category(c) != "Cf"))


class Vocabulary:
    """A word <-> index map built from a training split (never from val or test)."""

    def __init__(self, words: Iterable[str]):
        self.itos: list[str] = [PAD, UNK]
        for word in words:
            if word not in (PAD, UNK):
                self.itos.append(word)
        self.stoi: dict[str, int] = {w: i for i, w in enumerate(self.itos)}
        if len(self.stoi) != len(self.itos):
            raise ValueError("vocabulary words must be unique")

    @classmethod
    def build(
        cls, sentences: Iterable[str], min_count: int = 1, max_size: int | None = None
    ) -> Vocabulary:
        """Words seen at least ``min_count`` times, most frequent first (ties alphabetical)."""
        counts = Counter(word for sentence in sentences for word in tokenize(sentence))
        kept = (w for w, c in counts.items() if c >= min_count)
        ranked = sorted(kept, key=lambda w: (-counts[w], w))
        return cls(ranked[:max_size] if max_size is not None else ranked)

    def __len__(self) -> int:
        return len(self.itos)

    def __contains__(self, word: str) -> bool:
        return word in self.stoi

    def encode(self, sentence: str, max_length: int | None = None) -> list[int]:
        """Indices of the tokens of ``sentence`` (unknown words -> ``<unk>``), cut to max_length."""
        ids = [self.stoi.get(word, UNK_INDEX) for word in tokenize(sentence)]
        return ids[:max_length] if max_length is not None else ids

    def decode(self, ids: Iterable[int]) -> str:
        return " ".join(self.itos[int(i)] for i in ids if int(i) != PAD_INDEX)

    def unknown_words(self, sentence: str) -> list[str]:
        """The words of ``sentence`` that this vocabulary maps to ``<unk>``."""
        return [word for word in tokenize(sentence) if word not in self.stoi]

    def state_dict(self) -> dict:
        """Plain-data form, safe to store in a checkpoint loaded with ``weights_only=True``."""
        return {"itos": list(self.itos)}

    @classmethod
    def from_state_dict(cls, state: dict) -> Vocabulary:
        itos = state["itos"]
        if itos[:2] != [PAD, UNK]:
            raise ValueError(f"not a refseg vocabulary: it must start with {PAD!r}, {UNK!r}")
        return cls(itos[2:])


def pad_sequences(sequences: list[list[int]]) -> tuple[torch.Tensor, torch.Tensor]:
    """Right-pad index lists with ``<pad>``: returns tokens (B, L) and lengths (B,).

    An empty sequence becomes a single ``<unk>`` so that every length is at least 1 (an RNN
    must read something).
    """
    sequences = [seq if seq else [UNK_INDEX] for seq in sequences]
    lengths = torch.tensor([len(seq) for seq in sequences], dtype=torch.long)
    tokens = torch.full((len(sequences), int(lengths.max())), PAD_INDEX, dtype=torch.long)
    for row, seq in enumerate(sequences):
        tokens[row, : len(seq)] = torch.tensor(seq, dtype=torch.long)
    return tokens, lengths


def load_word_vectors(
    path: str | Path, vocabulary: Vocabulary, init_std: float = 0.1, seed: int = 0
) -> tuple[torch.Tensor, int]:
    """Embedding matrix (len(vocabulary), D) from a GloVe-format text file ("word v1 v2 ...").

    Words absent from the file are drawn from N(0, init_std^2) (seeded) and ``<pad>`` is zero.
    Returns the matrix and how many vocabulary words the file covered. MCN uses GloVe 300-d
    vectors (``glove.840B.300d.txt``).
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(
            f"word-vector file {path} not found. Download GloVe (e.g. glove.840B.300d.zip) from "
            "https://nlp.stanford.edu/projects/glove/, unzip it and pass the .txt path."
        )
    found: dict[int, torch.Tensor] = {}
    dim = None
    with path.open(encoding="utf-8", errors="replace") as handle:
        for line_number, line in enumerate(handle, 1):
            parts = line.rstrip().split(" ")
            if len(parts) < 2:
                continue
            word, values = parts[0], parts[1:]
            dim = dim or len(values)
            if len(values) != dim:
                raise ValueError(f"{path}:{line_number}: expected {dim} values, got {len(values)}")
            index = vocabulary.stoi.get(word)
            if index is not None and index not in found:
                found[index] = torch.tensor([float(v) for v in values])
    if dim is None:
        raise ValueError(f"{path} holds no word vectors")
    generator = torch.Generator().manual_seed(seed)
    matrix = torch.randn(len(vocabulary), dim, generator=generator) * init_std
    for index, vector in found.items():
        matrix[index] = vector
    matrix[PAD_INDEX] = 0.0
    return matrix, len(found)
