"""ShapeRef: valid samples, determinism, the resolver (oracle), styles and splits."""

from __future__ import annotations

import re

import numpy as np
import pytest
import torch

from refseg_lib.data.shapes import (
    CATEGORIES,
    GROUP_A,
    GROUP_B,
    LOCATION_AND_ORDINAL_WORDS,
    SPLITS,
    STYLES,
    Scene,
    ShapeObject,
    ShapeRef,
    describe,
    expression_tags,
    parse_expression,
    render_scene,
    resolve,
    sample_scene,
)
from refseg_lib.data.shapes_language import LOCATION_WORDS, ORDINAL_WORDS, RELATION_PHRASES
from refseg_lib.data.text import Vocabulary
from refseg_lib.data.transforms import Collate, Resize
from refseg_lib.data.types import PHENOMENA, Sample, mask_to_box

N_CHECK = 300  # expressions checked per style


def _words(sentence: str) -> set[str]:
    return {w for w in re.split(r"[^a-z]+", sentence.lower()) if w}


@pytest.fixture(scope="module")
def samples() -> dict[str, list[Sample]]:
    """The first N_CHECK training samples of each style (64 px)."""
    return {style: [s for s in ShapeRef("train", style, num_samples=N_CHECK)]
            for style in STYLES}


def _star(x: float, y: float, color: str = "red", size: str = "small") -> ShapeObject:
    return ShapeObject("star", color, size, x, y, 0.08 if size == "small" else 0.145)


@pytest.fixture
def two_stars() -> Scene:
    """A red and a blue star side by side, a big red ring above them."""
    return Scene((_star(0.2, 0.6), _star(0.8, 0.6, "blue"),
                  ShapeObject("ring", "red", "big", 0.5, 0.2, 0.145)), referent=0)


# ------------------------------------------------------------------------ samples

@pytest.mark.parametrize("style", STYLES)
@pytest.mark.parametrize("split", SPLITS)
def test_samples_are_valid(split: str, style: str) -> None:
    dataset = ShapeRef(split, style, num_samples=5)
    assert len(dataset) == 5
    for i in range(len(dataset)):
        s = dataset[i]
        n = len(s.meta["scene"].objects)
        assert 3 <= n <= 6
        assert s.image.dtype == torch.float32 and s.image.shape == (3, 64, 64)
        assert s.image.min() >= 0.0 and s.image.max() <= 1.0
        assert s.mask.dtype == torch.bool and s.instance_masks.shape == (n, 64, 64)
        assert torch.equal(s.mask, s.instance_masks[s.referent_index])
        assert torch.equal(s.box, mask_to_box(s.mask))
        assert s.mask.any() and all(m.any() for m in s.instance_masks)
        assert not (s.instance_masks.sum(0) > 1).any(), "visible masks must not overlap"
        assert s.sentence and s.tags[0] == "category" and set(s.tags) <= set(PHENOMENA)
        assert s.image_id == f"{split}-0-{i}" and s.category in CATEGORIES


def test_default_lengths_and_index_errors() -> None:
    assert len(ShapeRef("train")) == 20_000 and len(ShapeRef("testB")) == 1_000
    dataset = ShapeRef("val", num_samples=3)
    assert dataset[-1].image_id == "val-0-2"
    with pytest.raises(IndexError):
        dataset[3]


@pytest.mark.parametrize("bad, message", [({"split": "test"}, "valid splits"),
                                          ({"style": "refcoco"}, "valid styles"),
                                          ({"image_size": 8}, "image_size")])
def test_bad_arguments_say_what_is_valid(bad: dict, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        ShapeRef(**bad)


def test_transform_is_applied() -> None:
    s = ShapeRef("train", num_samples=1, transform=Resize(32))[0]
    assert s.image.shape == (3, 32, 32) and s.mask.shape == (32, 32)


def test_collates_into_a_batch() -> None:
    dataset = ShapeRef("train", "refshape-g", num_samples=4)
    vocabulary = Vocabulary.build(dataset[i].sentence for i in range(4))
    batch = Collate(vocabulary)([dataset[i] for i in range(4)])
    assert batch.images.shape == (4, 3, 64, 64) and batch.tokens.shape[1] <= 20


# ------------------------------------------------------------------- determinism

def test_deterministic() -> None:
    a = ShapeRef("testA", "refshape", seed=3)[7]
    b = ShapeRef("testA", "refshape", seed=3)[7]
    assert a.sentence == b.sentence and a.tags == b.tags
    for name in ("image", "mask", "box", "instance_masks"):
        assert torch.equal(getattr(a, name), getattr(b, name))
    c = ShapeRef("testA", "refshape", seed=3)[8]
    assert not torch.equal(a.image, c.image)
    d = ShapeRef("testA", "refshape", seed=4)[7]
    assert not torch.equal(a.image, d.image)


def test_benchmark_is_frozen_across_machines_and_versions() -> None:
    """Golden values: a change here changes every published ShapeRef number (bump a version)."""
    golden = {
        "refshape": ("right ring", 0, 1143),
        "refshape+": ("the crescent that is large", 3, 551),
        "refshape-g": ("the leftmost little plus", 2, 357),
    }
    for (style, (sentence, referent, area)), index in zip(golden.items(), (0, 1, 2), strict=True):
        sample = ShapeRef("val", style, image_size=80)[index]
        assert (sample.sentence, sample.referent_index, int(sample.mask.sum())) == (
            sentence, referent, area)


def test_scene_depends_only_on_split_index_seed() -> None:
    """The three styles and every image size describe the same scene."""
    scenes = {(style, size): ShapeRef("val", style, image_size=size).scene(5)
              for style in STYLES for size in (32, 64, 128)}
    assert len(set(scenes.values())) == 1
    scene = sample_scene("val", 5)
    for size in (32, 64, 128):
        _, masks = render_scene(scene, size)
        assert masks.shape == (len(scene.objects), size, size) and masks.any((1, 2)).all()


def test_splits_use_different_streams() -> None:
    scenes = [sample_scene(split, 0) for split in SPLITS]
    assert len(set(scenes)) == len(SPLITS)
    train = {sample_scene("train", i) for i in range(200)}
    assert not train & {sample_scene("val", i) for i in range(200)}


# -------------------------------------------------------------- the benchmark's rules

@pytest.mark.parametrize("style", STYLES)
def test_every_expression_resolves_to_its_referent(samples, style: str) -> None:
    for s in samples[style]:
        assert resolve(s.meta["scene"], s.sentence) == s.referent_index, s.sentence
        assert expression_tags(s.sentence) == s.tags, s.sentence


def test_refshape_plus_has_no_location_words(samples) -> None:
    for s in samples["refshape+"]:
        assert not _words(s.sentence) & LOCATION_AND_ORDINAL_WORDS, s.sentence
        assert not {"location", "ordinal", "relation"} & set(s.tags)


def test_location_words_cover_every_spatial_word() -> None:
    spatial = ({w for words in LOCATION_WORDS.values() for w in words} | set(ORDINAL_WORDS)
               | {w for ps in RELATION_PHRASES.values() for p in ps for w in p.split()})
    assert spatial - {"to", "the", "on", "of", "than"} <= LOCATION_AND_ORDINAL_WORDS
    assert {"left", "above", "second", "leftmost", "beside", "middle"} <= (
        LOCATION_AND_ORDINAL_WORDS)


def test_styles_use_their_phenomena(samples) -> None:
    def share(style: str, tag: str) -> float:
        return np.mean([tag in s.tags for s in samples[style]])
    assert share("refshape", "location") + share("refshape", "ordinal") > 0.25
    assert share("refshape", "relation") > 0.1
    assert share("refshape-g", "relation") > 0.4
    lengths = {style: np.mean([len(s.sentence.split()) for s in samples[style]])
               for style in STYLES}
    assert lengths["refshape+"] < lengths["refshape"] < lengths["refshape-g"]


def test_category_alone_rarely_suffices(samples) -> None:
    repeated = [[o.category for o in s.meta["scene"].objects].count(s.category) >= 2
                for s in samples["refshape"]]
    assert np.mean(repeated) >= 0.8


@pytest.mark.parametrize("split, group", [("testA", GROUP_A), ("testB", GROUP_B)])
def test_test_splits_take_referents_from_their_group(split: str, group: tuple) -> None:
    referents = {sample_scene(split, i) for i in range(200)}
    assert all(s.objects[s.referent].category in group for s in referents)
    others = {o.category for s in referents for o in s.objects} - set(group)
    assert others, "distractors come from both groups"


def test_masks_are_not_boxes(samples) -> None:
    fill = []  # mask area / box area
    for s in samples["refshape"][:100]:
        for m in s.instance_masks:
            x0, y0, x1, y1 = mask_to_box(m).tolist()
            fill.append(m.sum().item() / ((x1 - x0) * (y1 - y0)))
    assert np.mean(np.array(fill) < 0.95) > 0.95


def test_occlusion_happens_and_is_bounded() -> None:
    occluded = 0
    for i in range(100):
        scene = sample_scene("train", i)
        _, visible = render_scene(scene, 128)
        full = render_scene(Scene(scene.objects[:1], 0), 128)[1][0]
        occluded += visible[0].sum() < full.sum()
        assert visible[0].sum() >= 0.4 * full.sum()  # about half at least stays visible
    assert occluded >= 5


# -------------------------------------------------------------------- the resolver

def test_resolver_on_a_hand_built_scene(two_stars: Scene) -> None:
    expected = {
        "the red star": 0, "blue star": 1, "the star on the left": 0, "rightmost star": 1,
        "the second star from the left": 1, "a tiny crimson pentagram": 0,
        "the star to the left of the ring": 0, "star right of the red ring": 1,
        "the big ring": 2, "the ring above the blue star": 2,
        "the star": None,  # two stars: ambiguous
        "the green star": None, "the heart": None,  # nothing matches
        "the star below the ring": None,  # both are below it
        "the third star from the left": None, "the red": None,  # no such / no category
        "the star left of the star": None,  # landmark itself ambiguous
    }
    for expression, index in expected.items():
        assert resolve(two_stars, expression) == index, expression


def test_resolver_refuses_borderline_geometry() -> None:
    close = Scene((_star(0.30, 0.5), _star(0.35, 0.8), _star(0.9, 0.5)), referent=0)
    assert resolve(close, "the star on the left") is None  # 0.05 apart < MARGIN
    assert resolve(close, "the star on the right") == 2


def test_parse_and_tags() -> None:
    query = parse_expression("a tiny azure pentagram that sits under the crimson ring")
    assert (query.head.category, query.head.color, query.head.size) == ("star", "blue", "small")
    assert query.relations[0][0] == "below" and query.relations[0][1].color == "red"
    assert expression_tags("the red star") == ("category", "attribute")
    assert expression_tags("small star on the left") == ("category", "size", "location")
    assert expression_tags("the second star from the top") == ("category", "ordinal")
    assert expression_tags("the star above the big ring") == ("category", "size", "relation")


def test_descriptions_of_a_hand_built_scene(two_stars: Scene) -> None:
    rng = np.random.default_rng(0)
    for style in STYLES:
        for _ in range(20):
            sentence, tags = describe(two_stars, style, rng)
            assert resolve(two_stars, sentence) == 0 and tags == expression_tags(sentence)
            if style == "refshape+":  # the stars differ in colour only
                assert "attribute" in tags and not _words(sentence) & LOCATION_AND_ORDINAL_WORDS
    twins = Scene((_star(0.2, 0.6), _star(0.8, 0.6)), referent=0)
    with pytest.raises(ValueError, match="cannot be described"):
        describe(twins, "refshape+", rng)  # identical stars: appearance cannot tell them apart
    for _ in range(5):  # no appearance or relation tells the twins apart: location must
        sentence, tags = describe(twins, "refshape", rng)
        assert resolve(twins, sentence) == 0 and {"location", "ordinal"} & set(tags)
