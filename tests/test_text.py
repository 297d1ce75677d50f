import torch

from refseg_lib.data.text import (
    PAD_INDEX,
    UNK_INDEX,
    Vocabulary,
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
