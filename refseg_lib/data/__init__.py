"""Datasets behind one interface: every dataset yields ``Sample`` objects (see ``types``).

``build_dataset("shapes", ...)`` and ``build_dataset("refcoco", ...)`` are interchangeable in
every notebook and model: switching between the embedded ShapeRef benchmark and a real
REFER-format dataset is one parameter.

Modules: ``types`` (``Sample``, ``Batch``, ``ModelOutput``: the types every layer shares),
``scene`` (ShapeRef's symbolic scene: objects, backdrop, referent), ``shapes`` (ShapeRef: scenes
rendered to images and masks), ``shapes_language`` (its expressions: generation, parsing and the
resolver), ``refer`` (the official REFER format of RefCOCO, RefCOCO+, G-Ref, RefCLEF),
``refer_layout`` (where REFER files live; the data root, split scheme and image folder from an
option, an environment variable or the default), ``refer_check`` (a REFER data root checked
before any work: ``python -m refseg_lib data check``), ``refer_fixture`` (a small dataset in
that format, for tests), ``instances`` (every object of a scene, for instance segmentation),
``text`` (tokenizer and vocabulary), ``transforms`` (resizing, letterboxing, batching).
"""

from __future__ import annotations

from torch.utils.data import Dataset

from refseg_lib.data.text import MAX_LENGTH, Vocabulary, tokenize
from refseg_lib.data.transforms import Collate, Letterbox, Resize
from refseg_lib.data.types import PHENOMENA, Batch, Sample, mask_to_box

REFER_DATASETS = ("refcoco", "refcoco+", "refcocog", "refclef")
DATASETS = ("shapes", *REFER_DATASETS)

__all__ = [
    "DATASETS", "MAX_LENGTH", "PHENOMENA", "REFER_DATASETS", "Batch", "Collate", "Letterbox",
    "Resize", "Sample", "Vocabulary", "build_dataset", "mask_to_box", "tokenize",
]


def build_dataset(name: str = "shapes", split: str = "train", **config) -> Dataset:
    """The dataset ``name`` (``"shapes"`` or a REFER dataset) for ``split``.

    ``config`` goes to ``ShapeRef`` (style, num_samples, image_size, seed, transform) or to
    ``ReferDataset`` (root, split_by, image_root, transform).
    """
    if name == "shapes":
        from refseg_lib.data.shapes import ShapeRef

        return ShapeRef(split=split, **config)
    if name in REFER_DATASETS:
        from refseg_lib.data.refer import ReferDataset

        return ReferDataset(dataset=name, split=split, **config)
    raise ValueError(f"unknown dataset {name!r}; choose one of {', '.join(DATASETS)}")
