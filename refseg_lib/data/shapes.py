"""ShapeRef: the procedural referring-segmentation benchmark embedded in the course.

It keeps the structure of RefCOCO & co. (notebook 00 compares the two) without
downloading anything:

| RefCOCO & co.                                  | ShapeRef                                      |
| ---------------------------------------------- | --------------------------------------------- |
| 2+ objects of the referent's category (UNC)    | the referent's category appears 2-3 times in  |
|                                                | about 93% of scenes                           |
| the referent's box: a median 13.8% of the      | a median 14% of the image (one scale per      |
| image (RefCOCO val)                            | scene, two sizes within it)                   |
| RefCOCO / RefCOCO+ / G-Ref expressions         | styles ``refshape`` / ``refshape+`` /         |
|                                                | ``refshape-g`` (``shapes_language``)          |
| testA = people, testB = other objects          | testA referents from ``GROUP_A`` (round),     |
|                                                | testB referents from ``GROUP_B`` (angular)    |
| masks are not boxes                            | stars, rings, hearts, crescents ... partly    |
|                                                | occluded (instance mask = visible pixels)     |
| clutter and salient distractors                | textured background, 3-6 objects of both      |
|                                                | groups, two sizes, six colours                |

A sample is a pure function of ``(split, index, seed, image_size, style)``. The *scene*
(objects, layout, referent, background) depends only on ``(split, index, seed)``: it is
placed in coordinates that are fractions of the image side and its occlusion is checked at
resolution-free probe points, so every image size and all three styles show the same
scenes (only the fine per-pixel noise depends on the image size). Every scene is drawn so
that the referent's appearance (category + colour + size) is unique; this is what lets
``refshape+`` (appearance only) describe the same scenes as the other styles.
Random numbers come from ``numpy.random.default_rng((split code, seed, index))``, so splits
use disjoint streams and nothing depends on Python's salted ``hash``; the expression is drawn
from the same generator jumped ahead by ``(1 + style number) * 2**64`` steps.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from functools import lru_cache
from types import MappingProxyType

import numpy as np
import torch
from torch.utils.data import Dataset

from refseg_lib.data.scene import Background, Scene, ShapeObject
from refseg_lib.data.shapes_language import (
    CATEGORIES,
    COLORS,
    GROUP_A,
    GROUP_B,
    LOCATION_AND_ORDINAL_WORDS,
    SIZES,
    STYLES,
    Draws,
    Query,
    describe,
    evaluate,
    expression_tags,
    parse_expression,
    resolve,
)
from refseg_lib.data.types import Sample

__all__ = [
    "CATEGORIES", "COLORS", "DEFAULT_NUM_SAMPLES", "GROUP_A", "GROUP_B",
    "LOCATION_AND_ORDINAL_WORDS", "SIZES", "SPLITS", "STYLES", "Background", "Query", "Scene",
    "ShapeObject", "ShapeRef", "describe", "evaluate", "expression_tags", "parse_expression",
    "render_scene", "resolve", "sample_scene", "silhouette", "visible_fractions",
]

SPLITS = ("train", "val", "testA", "testB")
_SPLIT_CODE = MappingProxyType({split: code for code, split in enumerate(SPLITS)})
DEFAULT_NUM_SAMPLES = MappingProxyType({"train": 20_000, "val": 1_000, "testA": 1_000,
                                        "testB": 1_000})
#: Where each split draws its referents from (RefCOCO: testA people, testB objects).
REFERENT_CATEGORIES = MappingProxyType({"train": CATEGORIES, "val": CATEGORIES,
                                        "testA": GROUP_A, "testB": GROUP_B})
COLOR_RGB = MappingProxyType({
    "red": (0.86, 0.13, 0.11), "green": (0.16, 0.66, 0.22), "blue": (0.14, 0.32, 0.88),
    "yellow": (0.90, 0.82, 0.13), "purple": (0.56, 0.22, 0.74), "orange": (0.90, 0.50, 0.08),
})
RADIUS = MappingProxyType({"small": 0.20, "big": 0.33})  # bounding radius / image side
MIN_VISIBLE_FRACTION = 0.5  # of each object's silhouette, whatever the image size
# Scenes at RefCOCO's scale (the referent's box covers a median 14% of the image; RefCOCO val:
# 13.8%): each scene draws one scale for all its radii, so that sizes spread smoothly. A
# referent has 0, 1 or 2 siblings (same category) with probabilities 0.06, 0.44 and 0.50, and a
# sibling that differs in colour mostly shares the referent's size: the biggest object of the
# named category is then the referent in under half of the scenes (the category reader's floor).
_SCENE_SCALE = (0.85, 1.15)
_SIBLINGS = (0.06, 0.5)  # cumulative probabilities of 0 and of at most 1 sibling
_SIBLING_SAME_SIZE = 0.8
_MIN_SPACING = 0.6  # centres at least this times the sum of radii apart (some overlap allowed)
_MAX_TRIES = 100
_MAX_ANGLE = 0.35  # radians of rotation jitter
_NOISE_SEED, _NOISE_PAD, _GRID, _TEXTURE_SIDE = 20240, 32, 6, 32
_BACKGROUND_NOISE, _OBJECT_NOISE = 0.05, 0.06  # amplitude of per-pixel noise


# ------------------------------------------------------------------ silhouettes
# A silhouette maps points (X, Y), in units of the bounding radius from the object's centre
# (image axes, Y upwards), and the object's rotation ``turn = cos(angle) + i sin(angle)``, to
# a bool array. X and Y only need to broadcast: a row (1, w) and a column (h, 1) give the
# (h, w) window, two (1, P) rows give P points. Every silhouette fits in the unit disc and
# none is a box. Polygons are half-planes ``a u + b v <= d`` in the shape's own frame; a
# rotation turns their normals, ``(a + ib) * turn``, so each costs one multiply-add.

def _half_planes(planes: tuple[tuple[float, float, float], ...]) -> tuple[np.ndarray, ...]:
    """``(normals (K, 1, 1) complex, offsets (K, 1, 1))`` for ``_inside``."""
    normals = np.array([complex(a, b) for a, b, _ in planes]).reshape(-1, 1, 1)
    offsets = np.array([d for _, _, d in planes]).reshape(-1, 1, 1)
    for array in (normals, offsets):
        array.flags.writeable = False
    return normals, offsets


def _inside(X: np.ndarray, Y: np.ndarray, turn: complex, planes: tuple[np.ndarray, ...]
            ) -> np.ndarray:
    """``(K, ...)`` bool: is each point on the inner side of each (rotated) half-plane."""
    normals, offsets = planes
    n = normals * turn  # (K, 1, 1) complex: normals in image axes
    return X * n.real + Y * n.imag <= offsets


_STAR = _half_planes(tuple((math.cos(a), math.sin(a), math.cos(0.4 * math.pi))  # pentagram
                           for a in (0.5 * math.pi + 0.4 * math.pi * k for k in range(5))))
_TRIANGLE = _half_planes(((0.0, -1.0, 0.5), (0.866, 0.5, 0.5), (-0.866, 0.5, 0.5)))
_DIAMOND = _half_planes(tuple((a / 0.7, b, 0.98) for a in (1, -1) for b in (1, -1)))
_CROSS = _half_planes(tuple((a, b, d) for w, h in ((0.3, 0.9), (0.9, 0.3))  # two bars
                            for a, b, d in ((1, 0, w), (-1, 0, w), (0, 1, h), (0, -1, h))))


def _circle(X: np.ndarray, Y: np.ndarray, turn: complex) -> np.ndarray:
    return X * X + Y * Y <= 1.0


def _ring(X: np.ndarray, Y: np.ndarray, turn: complex) -> np.ndarray:
    d2 = X * X + Y * Y
    return (d2 <= 1.0) & (d2 >= 0.3)  # hole radius ~0.55


def _heart(X: np.ndarray, Y: np.ndarray, turn: complex) -> np.ndarray:
    # (x^2 + y^2 - 1)^3 <= x^2 y^3 with x = 1.3 X, y = 1.3 Y + 0.12; hearts stay upright
    x2, y = 1.69 * X * X, 1.3 * Y + 0.12
    q = x2 + (y * y - 1.0)
    return q * q * q <= x2 * (y * y * y)


def _crescent(X: np.ndarray, Y: np.ndarray, turn: complex) -> np.ndarray:
    # the unit disc minus a disc of radius ~0.89 whose centre is 0.55 along the angle
    bite = (X - 0.55 * turn.real) ** 2 + (Y - 0.55 * turn.imag) ** 2
    return (X * X + Y * Y <= 1.0) & (bite > 0.8)


def _triangle(X: np.ndarray, Y: np.ndarray, turn: complex) -> np.ndarray:
    return _inside(X, Y, turn, _TRIANGLE).all(0)  # equilateral, apex up


def _star(X: np.ndarray, Y: np.ndarray, turn: complex) -> np.ndarray:
    # the five lines through pairs of tips: inside the star = inside at least four of them
    return _inside(X, Y, turn, _STAR).sum(0, dtype=np.uint8) >= 4


def _cross(X: np.ndarray, Y: np.ndarray, turn: complex) -> np.ndarray:
    inside = _inside(X, Y, turn, _CROSS)  # (8, ...)
    return inside[:4].all(0) | inside[4:].all(0)


def _diamond(X: np.ndarray, Y: np.ndarray, turn: complex) -> np.ndarray:
    return _inside(X, Y, turn, _DIAMOND).all(0)  # |u| / 0.7 + |v| <= 0.98


Silhouette = Callable[[np.ndarray, np.ndarray, complex], np.ndarray]
SILHOUETTES: MappingProxyType[str, Silhouette] = MappingProxyType({
    "circle": _circle, "ring": _ring, "heart": _heart, "crescent": _crescent,
    "triangle": _triangle, "star": _star, "cross": _cross, "diamond": _diamond})


_STEPS = np.arange(1024.0)  # pixel offsets; float64, like the normals (mixing is slower)
_STEPS.flags.writeable = False


def _turn(obj: ShapeObject) -> complex:
    return complex(math.cos(obj.angle), math.sin(obj.angle))


def window(obj: ShapeObject, size: int) -> tuple[int, int, int, int]:
    """``(row0, row1, col0, col1)``: the pixels of the object's bounding square."""
    r, cx, cy = obj.radius * size, obj.x * size, obj.y * size
    return (max(int(cy - r), 0), min(math.ceil(cy + r), size),
            max(int(cx - r), 0), min(math.ceil(cx + r), size))


def silhouette(obj: ShapeObject, size: int) -> tuple[int, int, np.ndarray]:
    """``(row0, col0, mask)``: the object's full mask, computed only in its bounding window.

    Pixel ``(row, col)`` is inside when its centre ``(col + 0.5, row + 0.5)`` is.
    """
    r, cx, cy = obj.radius * size, obj.x * size, obj.y * size
    y0, y1 = max(int(cy - r), 0), min(math.ceil(cy + r), size)  # as in ``window``
    x0, x1 = max(int(cx - r), 0), min(math.ceil(cx + r), size)
    n = max(x1 - x0, y1 - y0)
    steps = _STEPS if n <= len(_STEPS) else np.arange(float(n))  # 0, 1, 2, ...
    X = steps[None, :x1 - x0] * (1.0 / r) + (x0 + 0.5 - cx) / r  # (1, w)
    Y = steps[:y1 - y0, None] * (-1.0 / r) + (cy - y0 - 0.5) / r  # (h, 1), upwards
    return y0, x0, SILHOUETTES[obj.category](X, Y, _turn(obj))  # (h, w) bool


def _probe_points(category: str) -> np.ndarray:
    """``(1, P)`` complex ``u + iv``: the unrotated silhouette sampled on a 16 x 16 grid."""
    t = (np.arange(16) + 0.5) / 8 - 1.0
    X, Y = (a.reshape(1, -1) for a in np.meshgrid(t, t))
    points = (X + 1j * Y)[SILHOUETTES[category](X, Y, 1 + 0j)][None, :]
    points.flags.writeable = False
    return points


_PROBES = MappingProxyType({c: _probe_points(c) for c in CATEGORIES})


def visible_fractions(objects: tuple[ShapeObject, ...]) -> list[float]:
    """Fraction of each object's silhouette left visible by the objects drawn after it.

    Resolution-free: each silhouette is probed at 50-200 points, and each point is tested
    against the silhouettes in front. This is what keeps a scene independent of image size.
    """
    fractions = []
    for i, back in enumerate(objects):
        fronts = [f for f in objects[i + 1:]
                  if (f.x - back.x) ** 2 + (f.y - back.y) ** 2 < (f.radius + back.radius) ** 2]
        if not fronts:
            fractions.append(1.0)
            continue
        p = _PROBES[back.category] * (back.radius * _turn(back))  # (1, P), image axes
        hidden = np.zeros(p.shape, bool)
        for f in fronts:  # probe coordinates in the front object's units (Y upwards)
            X = p.real * (1.0 / f.radius) + (back.x - f.x) / f.radius
            Y = p.imag * (1.0 / f.radius) + (f.y - back.y) / f.radius
            hidden |= SILHOUETTES[f.category](X, Y, _turn(f))
        fractions.append(1.0 - int(np.count_nonzero(hidden)) / hidden.size)
    return fractions


# --------------------------------------------------------------------- scenes

def _check_split(split: str) -> None:
    if split not in _SPLIT_CODE:
        raise ValueError(f"unknown split {split!r}; valid splits: {SPLITS}")


def _propose(draws: Draws, referent_categories: tuple[str, ...]) -> list[ShapeObject] | None:
    """3-6 objects, the referent first; ``None`` when they do not fit (draw again)."""
    n = 3 + draws.below(4)
    scale = draws.uniform(*_SCENE_SCALE)  # every radius of the scene, so sizes spread smoothly
    category = draws.pick(referent_categories)
    u = draws.uniform()
    same = min(n, 1 if u < _SIBLINGS[0] else 2 if u < _SIBLINGS[1] else 3)  # + 0-2 siblings
    others = [c for c in CATEGORIES if c != category]  # distractors, from both groups
    categories = [category] * same + [draws.pick(others) for _ in range(n - same)]
    looks: list[tuple[str, str]] = []
    for k in range(n):
        color, size, share_color = draws.pick(COLORS), draws.pick(SIZES), draws.uniform() < 0.5
        if 0 < k < same:  # a sibling: often the referent's colour, never its whole appearance
            color = looks[0][0] if share_color else color
            if not share_color and draws.uniform() < _SIBLING_SAME_SIZE:
                size = looks[0][1]
            if (color, size) == looks[0]:
                size = SIZES[1 - SIZES.index(size)]
        looks.append((color, size))
    objects: list[ShapeObject] = []
    for category, (color, size) in zip(categories, looks, strict=True):
        radius = RADIUS[size] * scale * draws.uniform(0.92, 1.08)
        for _ in range(20):
            x, y = draws.uniform(radius, 1.0 - radius), draws.uniform(radius, 1.0 - radius)
            if all((x - o.x) ** 2 + (y - o.y) ** 2 >= (_MIN_SPACING * (radius + o.radius)) ** 2
                   for o in objects):
                break
        else:
            return None
        angle = draws.uniform(-_MAX_ANGLE, _MAX_ANGLE)
        objects.append(ShapeObject(category, color, size, x, y, radius, angle))
    return objects


def _background(draws: Draws) -> Background:
    return Background(
        level=draws.uniform(0.3, 0.6),
        tint=(draws.uniform(-0.06, 0.06), draws.uniform(-0.06, 0.06), draws.uniform(-0.06, 0.06)),
        slope=(draws.uniform(-0.1, 0.1), draws.uniform(-0.1, 0.1)),
        offsets=(*(draws.below(_TEXTURE_SIDE - _GRID + 1) for _ in range(2)),
                 *(draws.below(_NOISE_PAD) for _ in range(4))))


def sample_scene(split: str, index: int, seed: int = 0) -> Scene:
    """The scene of sample ``index`` of ``split``; depends on nothing else.

    Objects are drawn in a random depth order; a draw is rejected (and drawn again from the
    same stream) if any object keeps less than ``MIN_VISIBLE_FRACTION`` of its silhouette.
    """
    return _sample_scene(split, index, seed)[0]


def _sample_scene(split: str, index: int, seed: int) -> tuple[Scene, np.random.Generator]:
    """``sample_scene`` and its generator, for the expression to go on from."""
    _check_split(split)
    rng = np.random.default_rng((_SPLIT_CODE[split], seed, index))
    draws = Draws(rng)
    for _ in range(_MAX_TRIES):
        proposal = _propose(draws, REFERENT_CATEGORIES[split])
        if proposal is None:
            continue
        order = draws.shuffled(range(len(proposal)))  # back to front
        objects = tuple(proposal[k] for k in order)
        if min(visible_fractions(objects)) >= MIN_VISIBLE_FRACTION:
            return Scene(objects, order.index(0), _background(draws)), rng
    raise RuntimeError(f"no valid scene for {split!r} index {index} seed {seed}")


# ------------------------------------------------------------------- rendering

def _texture() -> np.ndarray:
    bank = np.random.default_rng(_NOISE_SEED).uniform(
        -0.05, 0.05, (3, _TEXTURE_SIDE, _TEXTURE_SIDE)).astype(np.float32)
    bank.flags.writeable = False
    return bank


_TEXTURE = _texture()  # (3, T, T) coarse texture, the same for every image size


class _Renderer:
    """Draws scenes at one image size; holds its noise banks and upsampling matrix."""

    def __init__(self, size: int):
        self.size = size
        bank = np.random.default_rng(_NOISE_SEED + size).uniform(
            -1.0, 1.0, (3, size + _NOISE_PAD, size + _NOISE_PAD)).astype(np.float32)
        self.background_noise = _BACKGROUND_NOISE * bank  # (3, S + pad, S + pad)
        gain = 1.0 + _OBJECT_NOISE * bank[:, ::-1, ::-1]  # another pattern, within [0.94, 1.06]
        self.paints = {name: gain * np.array(rgb, np.float32)[:, None, None]  # in [0, 0.96]
                       for name, rgb in COLOR_RGB.items()}  # colour -> (3, S + pad, S + pad)
        t = (np.arange(size) + 0.5) / size * (_GRID - 1)
        i0 = np.minimum(t.astype(int), _GRID - 2)
        interp = np.zeros((size, _GRID), np.float32)  # (S, G): bilinear upsampling weights
        interp[np.arange(size), i0] = 1.0 - (t - i0)
        interp[np.arange(size), i0 + 1] = t - i0
        self.interp, self.interp_t = interp, np.ascontiguousarray(interp.T)
        self.ramp = np.linspace(-0.5, 0.5, _GRID, dtype=np.float32)  # (G,)
        for array in (self.background_noise, *self.paints.values(), self.interp, self.interp_t,
                      self.ramp):
            array.flags.writeable = False

    def __call__(self, scene: Scene) -> tuple[np.ndarray, np.ndarray]:
        """``image`` float32 ``(3, S, S)`` in [0, 1] and visible masks bool ``(N, S, S)``."""
        size, bg = self.size, scene.background
        ty, tx, oy, ox, py, px = bg.offsets
        # background, within [0.04, 0.86]: a smooth low-res field upsampled bilinearly (the
        # linear gradient is exact under bilinear upsampling, so it goes into the grid)
        field = (bg.level + bg.slope[0] * self.ramp)[:, None] + (bg.slope[1] * self.ramp)
        grid = _TEXTURE[:, ty:ty + _GRID, tx:tx + _GRID] + field  # (3, G, G)
        grid += np.array(bg.tint, np.float32)[:, None, None]
        image = self.interp @ grid @ self.interp_t  # (3, S, S)
        image += self.background_noise[:, oy:oy + size, ox:ox + size]  # per-pixel noise
        labels = np.zeros((size, size), np.uint8)  # 0 = background, k + 1 = object k
        for k, obj in enumerate(scene.objects):  # back to front: later objects cover earlier
            y0, x0, m = silhouette(obj, size)
            y1, x1 = y0 + m.shape[0], x0 + m.shape[1]
            np.putmask(labels[y0:y1, x0:x1], m, k + 1)
            paint = self.paints[obj.color][:, py + y0:py + y1, px + x0:px + x1]  # (3, h, w)
            np.copyto(image[:, y0:y1, x0:x1], paint, where=m)
        ids = np.arange(1, len(scene.objects) + 1, dtype=np.uint8)
        return image, labels[None] == ids[:, None, None]


def render_scene(scene: Scene, image_size: int = 64) -> tuple[np.ndarray, np.ndarray]:
    """Draw ``scene``: image float32 ``(3, S, S)`` in [0, 1], visible masks bool ``(N, S, S)``.

    The instance masks are the *visible* pixels (COCO annotates what can be seen).
    """
    return _Renderer(image_size)(scene)


def _mask_box(mask: np.ndarray, obj: ShapeObject) -> torch.Tensor:
    """``mask_to_box`` of the bool ``(H, W)`` visible mask of ``obj``, searched in its window."""
    y0, y1, x0, x1 = window(obj, mask.shape[0])
    part = mask[y0:y1, x0:x1]
    rows, cols = np.flatnonzero(part.any(1)), np.flatnonzero(part.any(0))
    if rows.size == 0:
        return torch.zeros(4)
    box = np.array((x0 + cols[0], y0 + rows[0], x0 + cols[-1] + 1, y0 + rows[-1] + 1), np.float32)
    return torch.from_numpy(box)


# --------------------------------------------------------------------- dataset

class ShapeRef(Dataset):
    """The ShapeRef benchmark as a map-style dataset of ``Sample`` s, generated on the fly.

    Same interface as the REFER loader (RefCOCO / RefCOCO+ / G-Ref): ``split`` is one of
    ``SPLITS`` (testA / testB referents from ``GROUP_A`` / ``GROUP_B``, like RefCOCO's people /
    objects) and ``style`` one of ``STYLES`` (``refshape`` ~ RefCOCO, ``refshape+`` ~ RefCOCO+,
    ``refshape-g`` ~ G-Ref). ``num_samples`` defaults to ``DEFAULT_NUM_SAMPLES[split]``;
    ``image_size`` (>= 32) is the side of the square image.

    Sample ``i`` is a pure function of ``(split, i, seed, image_size, style)``; its scene
    (``self.scene(i)``) depends on ``(split, i, seed)`` only, so the three styles and every
    image size show the same scenes. ``image_id`` is ``f"{split}-{seed}-{i}"`` and
    ``meta["scene"]`` holds the symbolic scene. ``transform(sample)`` is applied last.
    """

    def __init__(self, split: str = "train", style: str = "refshape",
                 num_samples: int | None = None, image_size: int = 64, seed: int = 0,
                 transform: Callable[[Sample], Sample] | None = None):
        _check_split(split)
        if style not in STYLES:
            raise ValueError(f"unknown style {style!r}; valid styles: {STYLES}")
        if not isinstance(image_size, int) or image_size < 32:
            raise ValueError(f"image_size must be an int >= 32, got {image_size!r}")
        if not isinstance(seed, int) or seed < 0:
            raise ValueError(f"seed must be a non-negative int, got {seed!r}")
        if num_samples is not None and num_samples < 0:
            raise ValueError(f"num_samples must be >= 0, got {num_samples}")
        self.split, self.style, self.image_size, self.seed = split, style, image_size, seed
        self.num_samples = DEFAULT_NUM_SAMPLES[split] if num_samples is None else num_samples
        self.transform = transform
        self._render = _Renderer(image_size)

    def __len__(self) -> int:
        return self.num_samples

    def __repr__(self) -> str:
        return (f"ShapeRef(split={self.split!r}, style={self.style!r}, num_samples="
                f"{self.num_samples}, image_size={self.image_size}, seed={self.seed})")

    def _index(self, index: int) -> int:
        index = int(index)
        if index < 0:
            index += self.num_samples
        if not 0 <= index < self.num_samples:
            raise IndexError(f"index out of range for {self!r}")
        return index

    def scene(self, index: int) -> Scene:
        """The symbolic scene of sample ``index`` (for the resolver and galleries)."""
        return sample_scene(self.split, self._index(index), self.seed)

    def _describe(self, index: int) -> tuple[Scene, str, tuple[str, ...]]:
        scene, rng = _sample_scene(self.split, index, self.seed)
        rng.bit_generator.advance((1 + STYLES.index(self.style)) << 64)  # a stream per style
        return scene, *describe(scene, self.style, rng)

    def sentence(self, index: int) -> str:
        """The expression of sample ``index``, without rendering the image (for vocabularies)."""
        return self._describe(self._index(index))[1]

    @property
    def sentences(self) -> list[str]:
        """Every expression of the split, in order (as ``ReferDataset.sentences``); drawn once
        per process for the same split, style, size and seed (a vocabulary of 20,000 takes
        seconds)."""
        return list(_sentences(self.split, self.style, self.num_samples, self.seed))

    def __getitem__(self, index: int) -> Sample:
        index = self._index(index)
        scene, sentence, tags = self._describe(index)
        image, instance_masks = self._render(scene)  # (3, S, S) float32, (N, S, S) bool
        mask = instance_masks[scene.referent]  # (S, S) bool
        referent = scene.objects[scene.referent]
        image_id = f"{self.split}-{self.seed}-{index}"
        sample = Sample(
            image=torch.from_numpy(image), sentence=sentence, mask=torch.from_numpy(mask.copy()),
            box=_mask_box(mask, referent),  # equals mask_to_box(mask), only faster
            instance_masks=torch.from_numpy(instance_masks), referent_index=scene.referent,
            tags=tags, image_id=image_id, sample_id=f"{image_id}-{self.style}",
            category=referent.category, meta={"split": self.split, "style": self.style,
                                              "scene": scene},
        )
        return self.transform(sample) if self.transform is not None else sample


@lru_cache(maxsize=16)
def _sentences(split: str, style: str, num_samples: int, seed: int) -> tuple[str, ...]:
    """``ShapeRef(...).sentences`` of these arguments (the image size changes no sentence)."""
    data = ShapeRef(split=split, style=style, num_samples=num_samples, seed=seed)
    return tuple(data.sentence(i) for i in range(num_samples))
