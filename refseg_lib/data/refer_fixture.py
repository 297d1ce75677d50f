"""A tiny REFER dataset written in the official file format, for tests and offline demos.

``write_refer_fixture(root)`` writes five 40 x 32 images (RGB, greyscale and CMYK JPEGs) and
seven refs with 1-3 sentences each across the splits of the scheme, in exactly the layout and
formats that ``ReferDataset`` reads (see ``refer.py``). Its annotations cover every
segmentation format of the real files:

- single-part polygons, and one two-part polygon whose parts overlap (REFER's ``getMask``
  sums such parts, we take their union);
- an RLE dict with uncompressed counts (a list, as COCO's crowd regions);
- an RLE dict with compressed counts (a string);
- a list of RLE dicts.
"""

from __future__ import annotations

import json
import pickle
from pathlib import Path

import numpy as np
from PIL import Image
from pycocotools import mask as mask_utils

from refseg_lib.data.refer import IMAGE_DIRS, check_dataset, segmentation_to_mask

HEIGHT, WIDTH = 32, 40

CATEGORIES = (
    {"supercategory": "person", "id": 1, "name": "person"},
    {"supercategory": "vehicle", "id": 3, "name": "car"},
    {"supercategory": "animal", "id": 17, "name": "cat"},
    {"supercategory": "animal", "id": 18, "name": "dog"},
)

# image id -> (PIL mode, background RGB)
IMAGES = {1: ("RGB", (120, 160, 120)), 2: ("L", (60, 60, 60)), 3: ("CMYK", (200, 200, 160)),
          4: ("RGB", (90, 110, 170)), 5: ("RGB", (170, 170, 170))}


def _block(y0: int, y1: int, x0: int, x1: int) -> np.ndarray:
    """Bool (HEIGHT, WIDTH) mask of rows [y0, y1) and columns [x0, x1)."""
    mask = np.zeros((HEIGHT, WIDTH), dtype=bool)
    mask[y0:y1, x0:x1] = True
    return mask


def _ellipse(cy: float, cx: float, ry: float, rx: float) -> np.ndarray:
    yy, xx = np.mgrid[:HEIGHT, :WIDTH]
    return ((yy - cy) / ry) ** 2 + ((xx - cx) / rx) ** 2 <= 1


def _uncompressed_rle(mask: np.ndarray) -> dict:
    """COCO's uncompressed RLE: run lengths of the column-major pixels, zeros first."""
    flat = mask.flatten(order="F").astype(np.int8)
    bounds = np.concatenate([[0], np.flatnonzero(np.diff(flat)) + 1, [flat.size]])
    counts = np.diff(bounds).tolist()
    return {"size": [HEIGHT, WIDTH], "counts": ([0] if flat[0] else []) + counts}


def _compressed_rle(mask: np.ndarray) -> dict:
    """COCO's compressed RLE, counts as the string JSON stores."""
    rle = mask_utils.encode(np.asfortranarray(mask.astype(np.uint8)))
    return {"size": [HEIGHT, WIDTH], "counts": rle["counts"].decode("ascii")}


def _annotation_specs() -> list[tuple[int, int, int, object, tuple[int, int, int], int]]:
    """(ann id, image id, category id, segmentation, RGB colour, iscrowd), painted in order."""
    return [
        (11, 1, 1, [[4, 4, 16, 4, 16, 24, 4, 24]], (220, 40, 40), 0),
        # two overlapping rectangles: REFER's getMask gives 2 where they overlap
        (12, 1, 18, [[20, 6, 32, 6, 32, 18, 20, 18], [26, 12, 36, 12, 36, 26, 26, 26]],
         (150, 90, 30), 0),
        (13, 1, 1, _uncompressed_rle(_block(26, 31, 2, 15)), (40, 40, 220), 1),
        (21, 2, 17, _compressed_rle(_ellipse(14, 24, 8, 11)), (250, 250, 250), 0),
        (22, 2, 1, [[2, 30, 10, 18, 18, 30]], (150, 150, 150), 0),
        (31, 3, 1, [[3, 3, 14, 2, 18, 10, 10, 16, 2, 12]], (30, 30, 200), 0),
        (32, 3, 18, [_uncompressed_rle(_block(18, 30, 20, 38))], (160, 60, 20), 0),
        (41, 4, 1, [[24, 3, 34, 3, 34, 28, 24, 28]], (230, 200, 40), 0),
        (42, 4, 1, [[5, 5, 14, 5, 14, 28, 5, 28]], (40, 200, 60), 0),
        (51, 5, 3, [[4, 14, 30, 14, 30, 26, 4, 26]], (210, 20, 20), 0),
        (52, 5, 17, [[30, 2, 38, 2, 38, 10, 30, 10]], (20, 20, 20), 0),
    ]


# ref id -> (ann id, UNC split, [(raw, sent), ...])
_REFS = {
    0: (11, "train", [("Man on the left.", "man on the left"), ("left person", "left person")]),
    1: (12, "train", [("Brown dog on the right", "brown dog on the right")]),
    2: (21, "train", [("white cat", "white cat"),
                      ("Round thing in the middle.", "round thing in the middle"),
                      ("the cat", "the cat")]),
    3: (31, "val", [("person top left", "person top left"), ("guy", "guy")]),
    4: (32, "val", [("dog at the bottom right", "dog at the bottom right")]),
    5: (41, "testA", [("Woman on the right", "woman on the right"), ("right lady", "right lady")]),
    6: (51, "testB", [("red car", "red car")]),
}


def _split_name(unc_split: str, dataset: str, split_by: str) -> str:
    """The fixture's UNC split renamed to the scheme's splits (UMD, Google, Berkeley)."""
    if split_by == "unc" or unc_split in ("train", "val"):
        return unc_split
    return "val" if (dataset, split_by) == ("refcocog", "google") else "test"


def _bbox(segmentation: object) -> list[float]:
    """COCO's bbox [x, y, w, h]: the polygon's extent, or the RLE's box."""
    if isinstance(segmentation, list) and not isinstance(segmentation[0], dict):
        xs = [v for part in segmentation for v in part[0::2]]
        ys = [v for part in segmentation for v in part[1::2]]
        return [float(min(xs)), float(min(ys)), float(max(xs) - min(xs)), float(max(ys) - min(ys))]
    mask = segmentation_to_mask(segmentation, HEIGHT, WIDTH)
    rle = mask_utils.encode(np.asfortranarray(mask.astype(np.uint8)))
    return [float(v) for v in mask_utils.toBbox(rle)]


def write_refer_fixture(root: str | Path, dataset: str = "refcoco", split_by: str = "unc") -> Path:
    """Write the tiny ``dataset`` / ``split_by`` fixture under ``root``; return ``root``.

    Files: ``<root>/<dataset>/refs(<split_by>).p`` (protocol 2, as the originals),
    ``<root>/<dataset>/instances.json`` and the JPEGs under ``<root>/<IMAGE_DIRS[dataset]>``
    (COCO names, or saiapr's ``<NN>/images/<id>.jpg`` for RefCLEF). Deterministic.
    """
    split_by = check_dataset(dataset, split_by)
    root = Path(root)
    annotation_dir = root / dataset
    image_dir = root / IMAGE_DIRS[dataset]
    annotation_dir.mkdir(parents=True, exist_ok=True)

    specs = _annotation_specs()
    images, annotations = [], []
    for image_id, (mode, background) in IMAGES.items():
        if dataset == "refclef":
            file_name, folder = f"{image_id}.jpg", image_dir / f"{image_id // 1000:02d}" / "images"
        else:
            file_name, folder = f"COCO_train2014_{image_id:012d}.jpg", image_dir
        pixels = np.empty((HEIGHT, WIDTH, 3), dtype=np.uint8)
        pixels[:] = background
        for ann_id, ann_image, category_id, segmentation, colour, iscrowd in specs:
            if ann_image != image_id:
                continue
            mask = segmentation_to_mask(segmentation, HEIGHT, WIDTH)
            pixels[mask] = colour
            annotations.append({
                "segmentation": segmentation, "area": float(mask.sum()), "iscrowd": iscrowd,
                "image_id": image_id, "bbox": _bbox(segmentation),
                "category_id": category_id, "id": ann_id,
            })
        folder.mkdir(parents=True, exist_ok=True)
        Image.fromarray(pixels).convert(mode).save(folder / file_name, quality=95)
        images.append({
            "license": 1, "file_name": file_name, "coco_url": "", "height": HEIGHT,
            "width": WIDTH, "date_captured": "2014-01-01 00:00:00", "flickr_url": "",
            "id": image_id,
        })
    instances = {
        "info": {"description": f"refseg tiny {dataset} fixture"},
        "licenses": [{"id": 1, "name": "CC0", "url": ""}],
        "images": images, "annotations": annotations, "categories": list(CATEGORIES),
    }
    (annotation_dir / "instances.json").write_text(json.dumps(instances), encoding="utf-8")

    category_of = {ann["id"]: ann["category_id"] for ann in annotations}
    image_of = {ann["id"]: ann["image_id"] for ann in annotations}
    refs, sent_id = [], 0
    for ref_id, (ann_id, unc_split, texts) in _REFS.items():
        sentences = []
        for raw, sent in texts:
            sentences.append({"tokens": sent.split(), "raw": raw, "sent_id": sent_id,
                              "sent": sent})
            sent_id += 1
        refs.append({
            "sent_ids": [s["sent_id"] for s in sentences],
            "file_name": f"COCO_train2014_{image_of[ann_id]:012d}_{ann_id}.jpg",
            "ann_id": ann_id, "ref_id": ref_id, "image_id": image_of[ann_id],
            "split": _split_name(unc_split, dataset, split_by), "sentences": sentences,
            "category_id": category_of[ann_id],
        })
    with (annotation_dir / f"refs({split_by}).p").open("wb") as f:
        pickle.dump(refs, f, protocol=2)
    return root
