import re

import pytest
import torch

from refseg_lib.data.text import (
    PAD_INDEX,
    UNK_INDEX,
    Vocabulary,
    ignored_characters,
    load_word_vectors,
    pad_sequences,
    tokenize,
)


def test_tokenize_lowercases_and_drops_punctuation():
    assert tokenize("The man on the RIGHT, holding a cup.") == [
        "the", "man", "on", "the", "right", "holding", "a", "cup"]
    assert tokenize("woman's hat -- 2nd from left!") == ["woman's", "hat", "2nd", "from", "left"]
    assert tokenize("  ...  ") == []


def test_vocabulary_from_training_sentences():
    vocab = Vocabulary.build(["red ball left", "blue ball", "ball"], min_count=1)
    assert vocab.itos[:3] == ["<pad>", "<unk>", "ball"]  # most frequent first
    assert vocab.encode("Ball, RED; zebra") == [vocab.stoi["ball"], vocab.stoi["red"], UNK_INDEX]
    assert vocab.unknown_words("the red zebra") == ["the", "zebra"]
    assert vocab.decode(vocab.encode("red ball") + [PAD_INDEX]) == "red ball"
    assert len(Vocabulary.build(["a a b"], min_count=2)) == 3


def test_max_length_and_padding():
    vocab = Vocabulary.build(["a b c d e"])
    encoded = [vocab.encode("a b c d e", max_length=3), [], vocab.encode("a")]
    tokens, lengths = pad_sequences(encoded)
    assert tokens.shape == (3, 3)
    assert lengths.tolist() == [3, 1, 1]
    assert tokens[1].tolist() == [UNK_INDEX, PAD_INDEX, PAD_INDEX]  # empty -> one <unk>


def test_state_dict_round_trip():
    vocab = Vocabulary.build(["the cat sat", "the dog"])
    again = Vocabulary.from_state_dict(vocab.state_dict())
    assert again.itos == vocab.itos


def test_glove_loader(tmp_path):
    path = tmp_path / "vectors.txt"
    path.write_text("red 1 2 3\nball 4 5 6\nunused 7 8 9\n")
    vocab = Vocabulary.build(["red ball", "green"])
    matrix, covered = load_word_vectors(path, vocab)
    assert matrix.shape == (len(vocab), 3) and covered == 2
    torch.testing.assert_close(matrix[vocab.stoi["ball"]], torch.tensor([4.0, 5.0, 6.0]))
    assert torch.all(matrix[PAD_INDEX] == 0)


def test_glove_missing_file_says_where_to_get_it(tmp_path):
    try:
        load_word_vectors(tmp_path / "nope.txt", Vocabulary([]))
    except FileNotFoundError as error:
        assert "nlp.stanford.edu/projects/glove" in str(error)
    else:
        raise AssertionError("expected FileNotFoundError")


_OLD_WORD = re.compile(r"[a-z0-9]+(?:'[a-z]+)?")  # the rule before tokenize read any script
_ASCII_EDGES = [
    "woman's hat -- 2nd from left!", "rock'n'roll", "the o'neill's 3rd car", "'quoted' words'",
    "a_b c-d e.f g/h 12_34 x'1 1'x don't''s", "MiXeD CaSe 42nd TV", "\tthe\nred  star\r\n",
    "tab\tsep|pipe+plus$dollar@at#hash%per^caret&amp*star(paren)[brack]{brace}<lt>=eq~tilde`",
    "", "   ", "'''", "0 00 007 1e5 3.14 -2", "it's its' it''s",
]


def test_ascii_text_tokenizes_as_before_on_both_paths():
    from refseg_lib.data import build_dataset

    sentences = build_dataset("shapes", split="train", num_samples=2000, image_size=32).sentences
    sentences = list(sentences) + _ASCII_EDGES
    for sentence in sentences:
        old = _OLD_WORD.findall(sentence.lower())
        assert tokenize(sentence) == old, sentence
        # a non-ASCII word after it sends the sentence through the rule for any script
        assert tokenize(sentence + " é") == [*old, "é"], sentence
        assert ignored_characters(sentence + " é") == ignored_characters(sentence)


@pytest.mark.parametrize("sentence, words", [
    ("the café on the left", ["the", "café", "on", "the", "left"]),
    ("the cafe\u0301", ["the", "café"]),  # decomposed: NFC makes it the same word
    ("ÉCOLE naïve Straße", ["école", "naïve", "straße"]),
    ("красная звезда", ["красная", "звезда"]),
    ("नमस्ते दुनिया", ["नमस्ते", "दुनिया"]),  # vowel signs (combining marks) stay in the word
    ("红色的星", ["红色的星"]),
    ("the woman’s hat", ["the", "woman's", "hat"]),  # a typographic apostrophe reads as "'"
    ("the star 😀 + $5", ["the", "star", "5"]),
], ids=["accent", "decomposed", "upper-case", "cyrillic", "devanagari", "chinese", "apostrophe",
        "emoji"])
def test_tokenize_keeps_words_of_any_script_whole(sentence, words):
    assert tokenize(sentence) == words


def test_ignored_characters_names_what_no_word_holds():
    assert ignored_characters("the red star, left!") == []
    assert ignored_characters("the star 😀 + $5 😀 'a' _b_") == ["😀", "+", "$"]
    assert ignored_characters("❤️ the 👨‍👩‍👧") == ["❤", "👨", "👩", "👧"]  # no selector, no joiner
