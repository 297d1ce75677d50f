"""The demo's ``segment`` takes the images and expressions users pass, names each conversion it
makes, and refuses what it cannot use with an error that says what to pass."""

import re

import numpy as np
import pytest
import torch
from PIL import Image

from refseg_lib.data import Vocabulary
from refseg_lib.demo import TrainedModel, as_image, scene, segment
from refseg_lib.models import build_model
from refseg_lib.models.registry import model_takes

VOCABULARY = Vocabulary(["the", "red", "star"])


@pytest.fixture(scope="module")
def trained() -> TrainedModel:
    torch.manual_seed(0)
    net = build_model("lstm_cnn", profile="quick", vocab_size=len(VOCABULARY))
    return TrainedModel("tiny", net, VOCABULARY)


@pytest.fixture(scope="module")
def image() -> torch.Tensor:
    return scene(2).image  # float32 (3, 80, 80) in [0, 1]


def _uint8(image: torch.Tensor) -> torch.Tensor:
    return (image * 255).round().to(torch.uint8)


def _rgb(image: torch.Tensor) -> Image.Image:
    return Image.fromarray(_uint8(image).permute(1, 2, 0).numpy())


SCALED = r"the image was uint8 \(0-255\): scaled to \[0, 1\]"
GREY = "greyscale image: its one channel repeated as red, green and blue"
# (id, the image made from the scene's float image, what the notes say)
ACCEPTED = [
    ("float32 CHW", lambda x: x, None),
    ("uint8 tensor", _uint8, SCALED),
    ("float 0-255", lambda x: _uint8(x).float(),
     r"the image was float32 with values up to \d+, read as 0-255: scaled to \[0, 1\]"),
    ("numpy HWC uint8", lambda x: _uint8(x).permute(1, 2, 0).numpy(), SCALED),
    ("numpy CHW uint8", lambda x: _uint8(x).numpy(),
     r"a numpy array of shape \(3, 80, 80\): read as channels first \(C, H, W\)"),
    ("tensor HWC", lambda x: x.permute(1, 2, 0),
     r"a tensor of shape \(80, 80, 3\): read as channels last \(H, W, C\)"),
    ("PIL RGB", _rgb, SCALED),
    ("PIL L", lambda x: _rgb(x).convert("L"), GREY),
    ("PIL RGBA", lambda x: _rgb(x).convert("RGBA"),
     r"RGBA image: the alpha channel dropped \(not composited\)"),
    ("PIL P", lambda x: _rgb(x).convert("P"), "PIL image in mode 'P': converted to RGB by PIL"),
    ("float64", lambda x: x.double(), "the image was float64: converted to float32"),
    ("bool", lambda x: x > 0.5, "the image was bool: False and True read as 0 and 1"),
    ("greyscale HW", lambda x: x[0], GREY),
    ("batch of one", lambda x: x[None],
     r"a batch of one image \(1, 3, 80, 80\): its one image read"),
]


@pytest.mark.parametrize("make, note", [case[1:] for case in ACCEPTED],
                         ids=[case[0] for case in ACCEPTED])
def test_accepted_images_are_converted_and_the_conversion_named(trained, image, make, note):
    result = segment(trained, make(image), "the red star")
    assert result.mask.shape == (80, 80) and result.mask.dtype == torch.bool
    if note is None:  # already in the models' form: nothing changed, nothing said
        assert result.notes == [] and result.message() == "all 3 words are known to the model"
    else:
        assert any(re.fullmatch(note, n) for n in result.notes), result.notes
        assert result.message().startswith("all 3 words are known to the model; ")


def test_a_uint8_image_gives_the_mask_of_its_float_version(trained, image):
    pixels = _uint8(image)
    as_uint8 = segment(trained, pixels, "the red star").probabilities
    as_float = segment(trained, pixels.float() / 255, "the red star").probabilities
    assert torch.allclose(as_uint8, as_float, atol=1e-6)
    from_pil = segment(trained, _rgb(image), "the red star").probabilities
    assert torch.allclose(from_pil, as_float, atol=1e-6)
    converted, notes = as_image(pixels)
    assert converted.dtype == torch.float32 and converted.shape == (3, 80, 80) and notes


def _with(image: torch.Tensor, value: float, count: int) -> torch.Tensor:
    broken = image.clone()
    broken.view(-1)[:count] = value
    return broken


REFUSED = [
    ("NaN", lambda x: _with(x, float("nan"), 1), ValueError,
     r"the image has 1 NaN value\(s\): replace them \(e.g. torch.nan_to_num\(image\)\)"),
    ("inf", lambda x: _with(x, float("inf"), 2), ValueError,
     r"the image has 2 infinite value\(s\): replace them"),
    ("1-D", lambda x: x.flatten(), ValueError, r"got shape \(19200,\) \(1-D\)"),
    ("batch of 2", lambda x: torch.stack([x, x]), ValueError,
     r"a batch of 2 images .*pass one of them \(e.g. image\[0\]\)"),
    ("no channel axis", lambda x: torch.rand(5, 80, 80), ValueError,
     "no channel axis of size 1, 3 or 4"),
    ("str path", lambda x: "scene.png", TypeError,
     r"the image is a path \('scene.png'\), not an image: open it first, e.g. PIL.Image.open"),
    ("list", lambda x: x.tolist(), TypeError, r"got list: make it a tensor first, torch.tensor"),
    ("None", lambda x: None, TypeError, "a PIL image, got None"),
    ("negative", lambda x: x - 0.5, ValueError,
     r"negative value\(s\) .*pass floats in \[0, 1\] or uint8 0-255"),
    ("above 255", lambda x: x * 1000, ValueError, "values up to .*, above 255"),
    ("empty", lambda x: x[:, :0], ValueError, r"the image is empty \(shape \(3, 0, 80\)\)"),
    ("complex", lambda x: x.to(torch.complex64), TypeError, "complex values .*image.real"),
    ("strings", lambda x: np.array([["red"]]), TypeError, "numpy array of <U3, not of numbers"),
]


@pytest.mark.parametrize("make, error, match", [case[1:] for case in REFUSED],
                         ids=[case[0] for case in REFUSED])
def test_unusable_images_are_refused_saying_what_to_pass(trained, image, make, error, match):
    with pytest.raises(error, match=match):
        segment(trained, make(image), "the red star")


SENTENCES = [
    ("None", None, TypeError, "must be a str, got None: pass the words as one string"),
    ("bytes", b"the red star", TypeError,
     r"the expression is bytes, not str: decode it first, e.g. sentence.decode\(\"utf-8\"\)"),
    ("int", 3, TypeError, "must be a str, got int"),
    ("list", ["the", "red"], TypeError, r"got list: join its words first"),
    ("empty", "", ValueError, "has no words"),
    ("punctuation only", " ?! ", ValueError, "has no words"),
    ("emoji only", "😀", ValueError, "has no words"),
]


@pytest.mark.parametrize("sentence, error, match", [case[1:] for case in SENTENCES],
                         ids=[case[0] for case in SENTENCES])
def test_unusable_expressions_are_refused_saying_what_to_pass(trained, image, sentence, error,
                                                              match):
    with pytest.raises(error, match=match):
        segment(trained, image, sentence)


# (id, expression, what the message says, what it must not say)
MESSAGES = [
    ("plain", "The red star.", "all 3 words are known to the model", None),
    ("25 words", " ".join(["the red star"] * 8 + ["the"]),
     "the model reads only the first 20 of its 25 words; ignored: 'star', 'the', 'red', 'star', "
     "'the'; the 20 words it reads are known to the model", "all"),
    ("30 words", " ".join(["the"] * 30), "ignored: 'the', 'the', 'the', 'the', 'the', ...",
     "all"),
    ("emoji", "the red star 😀", "the 3 words it reads are known to the model; "
     "ignored characters: '😀'", "all"),
    ("symbols", "the red star + $", "ignored characters: '+', '$'", "all"),
    ("accented", "the café star", "unknown words, read as <unk>: 'café'; the model knows", None),
    ("decomposed accent", "the cafe\u0301 star", "unknown words, read as <unk>: 'café';", None),
    ("non-Latin", "the звезда", "unknown words, read as <unk>: 'звезда';", None),
]


@pytest.mark.parametrize("sentence, says, not_said", [case[1:] for case in MESSAGES],
                         ids=[case[0] for case in MESSAGES])
def test_the_message_says_what_the_model_read(trained, image, sentence, says, not_said):
    message = segment(trained, image, sentence).message()
    assert says in message
    if not_said:
        assert not_said not in message


def test_words_are_those_read_and_the_rest_is_kept_apart(trained, image):
    result = segment(trained, image, " ".join(["the"] * 20 + ["crimson", "star"]) + " 😀")
    assert len(result.words) == 20 and result.unread == ["crimson", "star"]
    assert result.unknown == [] and result.dropped == ["😀"]
    within = segment(trained, image, "The crimson star, left of the red ring")
    assert within.unknown == ["crimson", "left", "of", "ring"] and within.unread == []


@pytest.mark.parametrize("model", ["lstm_cnn", "cmsa", "mcn", "m3att", "dmn"])
def test_models_read_an_image_of_another_size_than_their_training_one(model):
    torch.manual_seed(0)
    words = {"words": tuple(VOCABULARY.itos)} if model_takes(model, "words") else {}
    net = build_model(model, profile="quick", vocab_size=len(VOCABULARY), **words)
    for size in ((120, 96), (37, 53)):  # 37 px halves unevenly: maps of 19, 10, 5, 3 px
        result = segment(TrainedModel(model, net, VOCABULARY), torch.rand(3, *size),
                         "the red star")
        assert result.mask.shape == size and result.notes == []
