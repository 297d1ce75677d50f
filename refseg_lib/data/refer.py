"""RefCOCO, RefCOCO+, RefCOCOg and RefCLEF, read from the official REFER files.

The layout is the one of the REFER toolkit (github.com/lichengunc/refer)::

    <root>/<dataset>/refs(<split_by>).p     pickled list of refs (one per referred object)
    <root>/<dataset>/instances.json          COCO-style images, annotations, categories
    <root>/images/mscoco/images/train2014/   COCO images (RefCOCO, RefCOCO+, RefCOCOg)
    <root>/images/saiapr_tc-12/              ImageCLEF images (RefCLEF)

A ref is ``{ref_id, ann_id, image_id, split, category_id, file_name, sent_ids, sentences}``
with ``sentences = [{sent_id, sent, raw, tokens}, ...]``; ``ann_id`` points at one annotation
of ``instances.json``. ``ReferDataset`` yields one ``Sample`` per (ref, sentence).

Choices, each a difference from the REFER toolkit where it has one:

- Masks are the **union** of an annotation's parts (what COCO's ``annToMask`` does). REFER's
  ``getMask`` *sums* the parts, so pixels where two polygons overlap get the value 2, and code
  that keeps ``mask == 1`` silently drops them.
- The refs pickle is untrusted: ``RestrictedUnpickler`` builds containers and scalars only and
  refuses every global, so a tampered file cannot run code.
- The image file is ``instances.json``'s ``file_name`` (the refs' ``file_name`` is not a file);
  its size must match the ``height`` / ``width`` there. EXIF orientation is ignored, as in the
  annotations.
"""

from __future__ import annotations

import functools
import io
import json
import pickle
import warnings
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from PIL import Image
from pycocotools import mask as mask_utils
from torch.utils.data import Dataset

from refseg_lib.data.refer_layout import (
    IMAGE_DIRS,
    SPLIT_SCHEMES,
    DataError,
    check_dataset,
    default_image_root,
    images_source,
    locate,
)
from refseg_lib.data.types import Sample

__all__ = ["IMAGE_DIRS", "SPLIT_SCHEMES", "ReferAnnotations", "ReferDataset", "RestrictedUnpickler",
           "check_dataset", "default_image_root", "load_refer_annotations", "load_refs",
           "segmentation_to_mask"]

_SPLIT_ORDER = ("train", "val", "test", "testA", "testB", "testC")
_REF_KEYS = ("ref_id", "ann_id", "image_id", "split", "sentences")


def _missing_image(path: Path, dataset: str, image_root: Path) -> FileNotFoundError:
    """A FileNotFoundError that says which image is missing, where to get it and how to point
    at a folder elsewhere (``refer_check`` checks the first images before any training)."""
    return FileNotFoundError(
        f"missing {path}\nGet {images_source(dataset)}.\nImages are read from {image_root}: "
        "set the folder with --image-root or $REFSEG_IMAGE_ROOT (image_root= in Python), the "
        "data root with --data-root or $REFSEG_DATA; data/README.md shows the whole layout."
    )


class RestrictedUnpickler(pickle.Unpickler):
    """An unpickler for untrusted files that builds only dicts, lists, strings and numbers.

    Code runs during unpickling only through globals (a function or class named in the file,
    then called); ``find_class`` refuses every one, so nothing the file names is ever called.
    """

    def find_class(self, module: str, name: str) -> Any:
        raise pickle.UnpicklingError(
            f"refused to load the global {module}.{name}: a REFER refs pickle holds only dicts, "
            "lists, strings and numbers, so this file is not one (it may have been tampered with)"
        )

    def persistent_load(self, pid: Any) -> Any:
        raise pickle.UnpicklingError("refused a persistent id: not a REFER refs pickle")


def load_refs(path: str | Path) -> list[dict]:
    """Read a ``refs(<split_by>).p`` file safely (see ``RestrictedUnpickler``).

    The official files come from Python 2; its byte strings are decoded as UTF-8 (they are
    ASCII there), falling back to Latin-1.
    """
    data = Path(path).read_bytes()
    try:
        refs = RestrictedUnpickler(io.BytesIO(data), encoding="utf-8").load()
    except UnicodeDecodeError:
        refs = RestrictedUnpickler(io.BytesIO(data), encoding="latin1").load()
    if not isinstance(refs, list) or not all(isinstance(ref, dict) for ref in refs):
        raise ValueError(f"{path}: expected a list of ref dicts, got {type(refs).__name__}")
    for ref in refs:
        missing = [key for key in _REF_KEYS if key not in ref]
        if missing:
            raise ValueError(f"{path}: ref {ref.get('ref_id', '?')} lacks the keys {missing}")
    return refs


def _rle(segment: dict, height: int, width: int) -> dict:
    """One RLE dict in the compressed form pycocotools decodes."""
    if [int(s) for s in segment["size"]] != [height, width]:
        raise ValueError(f"RLE of size {segment['size']} in an image of size {[height, width]}")
    counts = segment["counts"]
    if isinstance(counts, list):  # uncompressed counts (COCO crowd regions)
        return mask_utils.frPyObjects(segment, height, width)
    if isinstance(counts, str):  # compressed counts read from JSON
        counts = counts.encode("ascii")
    return {"size": [height, width], "counts": counts}


def segmentation_to_mask(segmentation: Any, height: int, width: int) -> np.ndarray:
    """Bool ``(height, width)`` mask of a COCO segmentation: the **union** of its parts.

    Accepts a list of polygons ``[[x0, y0, x1, y1, ...], ...]``, one RLE dict, or a list of
    RLE dicts; RLE counts may be uncompressed (a list) or compressed (a string). Polygon parts
    with fewer than 3 points enclose nothing and are skipped. REFER's ``getMask`` sums the
    parts instead (overlaps become 2); COCO's ``annToMask`` and this function take the union.
    """
    if isinstance(segmentation, dict):
        rles = [_rle(segmentation, height, width)]
    elif segmentation and all(isinstance(part, dict) for part in segmentation):
        rles = [_rle(part, height, width) for part in segmentation]
    else:
        parts = list(segmentation or [])
        if parts and not isinstance(parts[0], list):  # a single flat polygon
            parts = [parts]
        polygons = [[float(v) for v in part] for part in parts if len(part) >= 6]
        if any(len(polygon) % 2 for polygon in polygons):
            raise ValueError("a polygon has an odd number of coordinates")
        rles = mask_utils.frPyObjects(polygons, height, width) if polygons else []
    if not rles:
        return np.zeros((height, width), dtype=bool)
    with warnings.catch_warnings():  # pycocotools' __array__ predates numpy 2's copy keyword
        warnings.filterwarnings("ignore", "__array__ implementation", DeprecationWarning)
        return mask_utils.decode(mask_utils.merge(rles, intersect=False)).astype(bool)


@dataclass(frozen=True, eq=False, repr=False)
class ReferAnnotations:
    """One dataset's annotation files, indexed by id; load once, share between splits.

    Treat it as read-only (plain dicts, so that DataLoader workers can pickle it).
    """

    root: Path
    dataset: str
    split_by: str
    refs: tuple[dict, ...]  # in the pickle's order
    images: Mapping[int, dict]  # image id -> {id, file_name, height, width, ...}
    annotations: Mapping[int, dict]  # ann id -> {id, image_id, bbox, segmentation, ...}
    categories: Mapping[int, str]  # category id -> name
    image_annotations: Mapping[int, tuple[int, ...]]  # image id -> its ann ids, sorted

    @property
    def splits(self) -> dict[str, int]:
        """Number of refs in each split the pickle holds, in the usual order."""
        counts: dict[str, int] = {}
        for ref in self.refs:
            counts[ref["split"]] = counts.get(ref["split"], 0) + 1
        known = [s for s in _SPLIT_ORDER if s in counts]
        return {s: counts[s] for s in known + sorted(set(counts) - set(known))}

    def __repr__(self) -> str:
        return (f"ReferAnnotations({self.dataset}, split_by={self.split_by}: {len(self.refs)} refs"
                f" {self.splits}, {len(self.images)} images, {len(self.annotations)} annotations)")


def load_refer_annotations(
    root: str | Path | None = None, dataset: str = "refcoco", split_by: str | None = None
) -> ReferAnnotations:
    """Read ``refs(<split_by>).p`` and ``instances.json`` of ``dataset`` and index them."""
    location = locate(dataset, root, split_by)  # $REFSEG_DATA, $REFSEG_SPLIT_BY, defaults
    problem = location.annotation_problem()
    if problem:
        raise DataError(problem)
    root, split_by = location.root, location.split_by
    refs_path = root / dataset / f"refs({split_by}).p"
    instances_path = root / dataset / "instances.json"
    stamps = tuple((p.stat().st_mtime_ns, p.stat().st_size) for p in (refs_path, instances_path))
    return _load_annotations(root, dataset, split_by, stamps)


@functools.lru_cache(maxsize=4)
def _load_annotations(root: Path, dataset: str, split_by: str, stamps: tuple) -> ReferAnnotations:
    """The files read and indexed once per version (``stamps``: their times and sizes), so that
    the splits of one run and the check before it share one load."""
    refs_path = root / dataset / f"refs({split_by}).p"
    instances_path = root / dataset / "instances.json"
    refs = load_refs(refs_path)
    with instances_path.open(encoding="utf-8") as f:
        instances = json.load(f)
    images = {int(image["id"]): image for image in instances["images"]}
    annotations = {int(ann["id"]): ann for ann in instances["annotations"]}
    categories = {int(c["id"]): str(c["name"]) for c in instances.get("categories", [])}
    by_image: dict[int, list[int]] = {}
    for ann_id, ann in annotations.items():
        by_image.setdefault(int(ann["image_id"]), []).append(ann_id)
    for ref in refs:
        if ref["ann_id"] not in annotations or ref["image_id"] not in images:
            raise ValueError(
                f"{refs_path}: ref {ref['ref_id']} points at annotation {ref['ann_id']} / image "
                f"{ref['image_id']}, which {instances_path} lacks"
            )
    return ReferAnnotations(
        root=root,
        dataset=dataset,
        split_by=split_by,
        refs=tuple(refs),
        images=images,
        annotations=annotations,
        categories=categories,
        image_annotations={k: tuple(sorted(v)) for k, v in by_image.items()},
    )


class ReferDataset(Dataset):
    """One ``Sample`` per (ref, sentence) of a REFER split; images are read lazily.

    ``root``, ``split_by`` and ``image_root`` default to ``$REFSEG_DATA``, ``$REFSEG_SPLIT_BY``
    and ``$REFSEG_IMAGE_ROOT``, else to ``<repository>/data``, UNC (UMD for RefCOCOg) and
    ``default_image_root(root, dataset)`` (``refer_check.locate``). ``transform`` maps a ``Sample``
    to a ``Sample``. Pass ``annotations`` (another split's ``.annotations``) to skip reloading
    the files; its root, dataset and split scheme are then used.
    """

    def __init__(
        self,
        root: str | Path | None = None,
        dataset: str = "refcoco",
        split: str = "train",
        split_by: str | None = None,
        image_root: str | Path | None = None,
        transform: Callable[[Sample], Sample] | None = None,
        *,
        annotations: ReferAnnotations | None = None,
    ):
        if annotations is None:
            location = locate(dataset, root, split_by, image_root)
            annotations = load_refer_annotations(location.root, dataset, location.split_by)
            image_root = location.image_root
        elif dataset != annotations.dataset or split_by not in (None, annotations.split_by):
            raise ValueError(
                f"annotations are {annotations.dataset} ({annotations.split_by}), but "
                f"dataset={dataset!r}, split_by={split_by!r} were asked for"
            )
        available = annotations.splits
        if split not in available:
            raise ValueError(
                f"split {split!r} is not in {annotations.dataset} refs({annotations.split_by}).p;"
                f" available: {', '.join(available)}"
            )
        self.annotations = annotations
        self.dataset, self.split_by, self.split = annotations.dataset, annotations.split_by, split
        self.root = annotations.root
        self.image_root = (
            Path(image_root) if image_root is not None
            else default_image_root(self.root, self.dataset)
        )
        self.transform = transform
        self.refs: list[dict] = [ref for ref in annotations.refs if ref["split"] == split]
        # one item per (ref, sentence): positions in self.refs and in the ref's sentences
        self._items = [(r, s) for r, ref in enumerate(self.refs)
                       for s in range(len(ref["sentences"]))]
        self.sentences: list[str] = [
            _sentence_text(self.refs[r]["sentences"][s]) for r, s in self._items
        ]

    @property
    def available_splits(self) -> tuple[str, ...]:
        """The splits of this dataset's refs pickle."""
        return tuple(self.annotations.splits)

    def __len__(self) -> int:
        return len(self._items)

    def __repr__(self) -> str:
        return (f"ReferDataset({self.dataset}, split_by={self.split_by}, split={self.split}: "
                f"{len(self.refs)} refs, {len(self)} sentences)")

    def image_path(self, image_id: int) -> Path:
        """The image file of ``image_id`` (RefCLEF: also ``<NN>/images/<name>`` of saiapr)."""
        name = self.annotations.images[image_id]["file_name"]
        path = self.image_root / name
        if self.dataset == "refclef" and not path.is_file() and "/" not in name:
            nested = self.image_root / f"{image_id // 1000:02d}" / "images" / name
            if nested.is_file():
                return nested
        return path

    def load_image(self, image_id: int) -> torch.Tensor:
        """RGB float32 ``(3, H, W)`` in [0, 1]; greyscale, CMYK and palette images converted."""
        info = self.annotations.images[image_id]
        path = self.image_path(image_id)
        if not path.is_file():
            raise _missing_image(path, self.dataset, self.image_root)
        with Image.open(path) as image:
            rgb = np.asarray(image.convert("RGB"), dtype=np.float32) / 255.0  # (H, W, 3)
        expected = (int(info["height"]), int(info["width"]))
        if rgb.shape[:2] != expected:
            raise ValueError(f"{path} is {rgb.shape[:2]} (H, W) but instances.json says "
                             f"{expected}")
        return torch.from_numpy(rgb).permute(2, 0, 1).contiguous()

    def annotation_mask(self, ann_id: int) -> torch.Tensor:
        """Bool ``(H, W)`` mask of one annotation (union of its parts)."""
        ann = self.annotations.annotations[ann_id]
        info = self.annotations.images[int(ann["image_id"])]
        mask = segmentation_to_mask(ann["segmentation"], int(info["height"]), int(info["width"]))
        return torch.from_numpy(mask)

    def __getitem__(self, index: int) -> Sample:
        ref_position, sentence_position = self._items[index]
        ref = self.refs[ref_position]
        sentence = ref["sentences"][sentence_position]
        image_id = int(ref["image_id"])
        image = self.load_image(image_id)  # (3, H, W), checked against instances.json
        ann_ids = self.annotations.image_annotations[image_id]
        instance_masks = torch.stack([self.annotation_mask(a) for a in ann_ids])  # (N, H, W)
        referent_index = ann_ids.index(ref["ann_id"])
        ann = self.annotations.annotations[ref["ann_id"]]
        x, y, w, h = (float(v) for v in ann["bbox"])
        sent_ids = ref.get("sent_ids") or []
        fallback = sent_ids[sentence_position] if sentence_position < len(sent_ids) else None
        sent_id = sentence.get("sent_id", fallback)
        sample = Sample(
            image=image,
            sentence=self.sentences[index],
            mask=instance_masks[referent_index].clone(),
            box=torch.tensor([x, y, x + w, y + h], dtype=torch.float32),
            instance_masks=instance_masks,
            referent_index=referent_index,
            image_id=str(image_id),
            sample_id=f"{ref['ref_id']}-{sent_id}",
            category=self.annotations.categories.get(int(ann["category_id"]), ""),
            meta={
                "dataset": self.dataset,
                "split_by": self.split_by,
                "split": self.split,
                "ref_id": ref["ref_id"],
                "ann_id": ref["ann_id"],
                "sent_id": sent_id,
                "instance_ann_ids": ann_ids,
            },
        )
        return self.transform(sample) if self.transform is not None else sample


def _sentence_text(sentence: dict) -> str:
    """The cleaned ``sent`` of a REFER sentence, its ``raw`` text if that is empty."""
    return str(sentence.get("sent") or sentence.get("raw") or "")
