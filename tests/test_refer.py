"""The REFER-format loader against the tiny fixture and pycocotools' own decoding."""

from __future__ import annotations

import json
import os
import pickle
import struct
from pathlib import Path

import numpy as np
import pytest
import torch
from pycocotools import mask as mask_utils
from pycocotools.coco import COCO
from torch.utils.data import DataLoader

from refseg_lib.data.refer import (
    SPLIT_SCHEMES,
    ReferDataset,
    load_refer_annotations,
    load_refs,
    segmentation_to_mask,
)
from refseg_lib.data.refer_fixture import write_refer_fixture
from refseg_lib.data.text import Vocabulary
from refseg_lib.data.transforms import Collate, Resize
from refseg_lib.data.types import Sample
from refseg_lib.paths import data_root

pytestmark = pytest.mark.filterwarnings("ignore:__array__ implementation:DeprecationWarning")

UNC_SPLITS = {"train": (3, 6), "val": (2, 3), "testA": (1, 2), "testB": (1, 1)}  # refs, sentences


@pytest.fixture
def root(tmp_path: Path) -> Path:
    return write_refer_fixture(tmp_path)


@pytest.fixture
def coco(root: Path) -> COCO:
    return COCO(str(root / "refcoco" / "instances.json"))


def all_samples(root: Path) -> list[Sample]:
    return [s for split in UNC_SPLITS for s in ReferDataset(root, split=split)]


@pytest.mark.parametrize("split", UNC_SPLITS)
def test_counts_per_split(root: Path, split: str) -> None:
    refs = pickle.loads((root / "refcoco" / "refs(unc).p").read_bytes())
    dataset = ReferDataset(root, "refcoco", split)
    expected_refs = [r for r in refs if r["split"] == split]
    assert len(dataset.refs) == len(expected_refs) == UNC_SPLITS[split][0]
    assert len(dataset) == sum(len(r["sentences"]) for r in expected_refs) == UNC_SPLITS[split][1]
    assert len(dataset.sentences) == len(dataset)
    assert dataset.available_splits == tuple(UNC_SPLITS)


@pytest.mark.parametrize("dataset,split_by", [(d, s) for d in SPLIT_SCHEMES
                                              for s in SPLIT_SCHEMES[d]])
def test_every_dataset_and_scheme_loads(tmp_path: Path, dataset: str, split_by: str) -> None:
    root = write_refer_fixture(tmp_path, dataset, split_by)
    annotations = load_refer_annotations(root, dataset, split_by)
    assert sum(annotations.splits.values()) == 7
    total = 0
    for split in annotations.splits:
        data = ReferDataset(dataset=dataset, split=split, split_by=split_by,
                            annotations=annotations)
        total += len(data)
        assert data[0].image.shape == (3, 32, 40)
    assert total == 12


def test_default_split_by(tmp_path: Path) -> None:
    write_refer_fixture(tmp_path, "refcocog", "umd")
    assert ReferDataset(tmp_path, "refcocog", "test").split_by == "umd"


def test_masks_equal_pycocotools_annToMask(root: Path, coco: COCO) -> None:
    checked = set()
    for sample in all_samples(root):
        ann_ids = sample.meta["instance_ann_ids"]
        for ann_id, mask in zip(ann_ids, sample.instance_masks, strict=True):
            reference = coco.annToMask(coco.anns[ann_id]).astype(bool)
            np.testing.assert_array_equal(mask.numpy(), reference, err_msg=f"ann {ann_id}")
            checked.add(ann_id)
    assert checked == set(coco.anns)  # every annotation of the fixture, every format
    formats = {type(coco.anns[a]["segmentation"]).__name__ for a in checked}
    assert formats == {"list", "dict"}


def test_overlapping_polygon_parts_give_the_union(root: Path, coco: COCO) -> None:
    ann = coco.anns[12]  # two overlapping rectangles
    rles = mask_utils.frPyObjects(ann["segmentation"], 32, 40)
    parts = mask_utils.decode(rles)  # (H, W, parts)
    assert parts.shape[2] == 2 and parts.sum(axis=2).max() == 2  # the parts do overlap
    union = np.any(parts, axis=2)
    sample = next(s for s in ReferDataset(root, split="train") if s.meta["ann_id"] == 12)
    np.testing.assert_array_equal(sample.mask.numpy(), union)
    # REFER's getMask sums the parts; keeping `sum == 1` would drop the overlap
    assert (parts.sum(axis=2) == 1).sum() < sample.mask.sum().item()


@pytest.mark.parametrize("counts", ["list", "str"])
def test_rle_forms(counts: str) -> None:
    mask = np.zeros((5, 6), dtype=np.uint8)
    mask[1:4, 2:5] = 1
    if counts == "list":
        segmentation = {"size": [5, 6], "counts": [11, 3, 2, 3, 2, 3, 6]}
    else:
        rle = mask_utils.encode(np.asfortranarray(mask))
        segmentation = {"size": [5, 6], "counts": rle["counts"].decode("ascii")}
    np.testing.assert_array_equal(segmentation_to_mask(segmentation, 5, 6), mask.astype(bool))
    np.testing.assert_array_equal(segmentation_to_mask([segmentation], 5, 6), mask.astype(bool))
    with pytest.raises(ValueError, match="size"):
        segmentation_to_mask(segmentation, 6, 5)


def test_boxes_sentences_and_ids(root: Path, coco: COCO) -> None:
    refs = {r["ref_id"]: r for r in pickle.loads((root / "refcoco" / "refs(unc).p").read_bytes())}
    for sample in all_samples(root):
        ref_id, sent_id = (int(v) for v in sample.sample_id.split("-"))
        ref = refs[ref_id]
        sentence = next(s for s in ref["sentences"] if s["sent_id"] == sent_id)
        assert sample.sentence == sentence["sent"]
        assert sample.image_id == str(ref["image_id"])
        ann = coco.anns[ref["ann_id"]]
        x, y, w, h = ann["bbox"]
        torch.testing.assert_close(sample.box, torch.tensor([x, y, x + w, y + h]))
        assert sample.category == coco.cats[ann["category_id"]]["name"]
        assert sample.tags == ()
    first = ReferDataset(root, split="train")[0]
    assert (first.sentence, first.sample_id, first.category) == ("man on the left", "0-0", "person")


def test_instance_masks_hold_the_referent(root: Path, coco: COCO) -> None:
    for sample in all_samples(root):
        assert sample.instance_masks.dtype == torch.bool and sample.mask.dtype == torch.bool
        assert len(sample.instance_masks) == len(coco.getAnnIds(imgIds=int(sample.image_id)))
        assert sample.meta["instance_ann_ids"][sample.referent_index] == sample.meta["ann_id"]
        assert torch.equal(sample.instance_masks[sample.referent_index], sample.mask)
        assert sample.mask.any()


def test_images(root: Path) -> None:
    samples = {s.image_id: s for s in all_samples(root)}
    for sample in samples.values():
        assert sample.image.dtype == torch.float32 and sample.image.shape == (3, 32, 40)
        assert sample.image.min() >= 0 and sample.image.max() <= 1
    grey = samples["2"].image  # a greyscale JPEG: three equal channels
    torch.testing.assert_close(grey[0], grey[1])
    torch.testing.assert_close(grey[0], grey[2])
    red = samples["1"].image[:, 10, 10]  # inside the person painted (220, 40, 40)
    torch.testing.assert_close(red, torch.tensor([220, 40, 40]) / 255, atol=0.06, rtol=0)
    blue = samples["3"].image[:, 8, 8]  # a CMYK JPEG, person painted (30, 30, 200)
    torch.testing.assert_close(blue, torch.tensor([30, 30, 200]) / 255, atol=0.06, rtol=0)


def test_image_size_must_match_instances(root: Path) -> None:
    instances_path = root / "refcoco" / "instances.json"
    instances = json.loads(instances_path.read_text())
    instances["images"][0]["height"] = 33
    instances_path.write_text(json.dumps(instances))
    with pytest.raises(ValueError, match="instances.json says"):
        ReferDataset(root, split="train")[0]


def test_batches_through_transform_and_collate(root: Path) -> None:
    train = ReferDataset(root, split="train", transform=Resize(24))
    assert "man on the left" in train.sentences
    collate = Collate(Vocabulary.build(train.sentences), dataset="refcoco")
    val = ReferDataset(dataset="refcoco", split="val", transform=Resize(24),
                       annotations=train.annotations)
    val = pickle.loads(pickle.dumps(val))  # what DataLoader workers receive under spawn
    batch = next(iter(DataLoader(val, batch_size=3, collate_fn=collate)))
    assert batch.images.shape == (3, 3, 24, 24) and batch.masks.shape == (3, 24, 24)
    assert batch.sample_ids == ["3-6", "3-7", "4-8"]


@pytest.mark.parametrize("relative", ["refcoco/instances.json", "refcoco/refs(unc).p"])
def test_missing_annotation_files(root: Path, relative: str) -> None:
    (root / relative).unlink()
    with pytest.raises(FileNotFoundError) as error:
        ReferDataset(root, split="train")
    message = str(error.value)
    assert str(root / relative) in message and "data/README.md" in message
    assert "refcoco.zip" in message and "lichengunc/refer" in message


def test_missing_image(root: Path) -> None:
    image = root / "images/mscoco/images/train2014/COCO_train2014_000000000001.jpg"
    image.unlink()
    dataset = ReferDataset(root, split="train")  # images are read lazily
    with pytest.raises(FileNotFoundError) as error:
        dataset[0]
    message = str(error.value)
    assert str(image) in message and "data/README.md" in message
    assert "cocodataset.org" in message


def test_bad_names_list_the_valid_ones(root: Path) -> None:
    with pytest.raises(ValueError, match="available: train, val, testA, testB"):
        ReferDataset(root, split="test")
    with pytest.raises(ValueError, match="refcoco, refcoco\\+, refcocog, refclef"):
        ReferDataset(root, dataset="refcocoX")
    with pytest.raises(ValueError, match="valid: unc, google"):
        ReferDataset(root, split_by="umd")


def test_data_root_from_environment(root: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("REFSEG_DATA", str(root))
    assert data_root() == root
    assert len(ReferDataset(split="testB")) == 1
    monkeypatch.delenv("REFSEG_DATA")
    assert data_root() == Path(__file__).resolve().parents[1] / "data"


class _RunsCode:
    """Pickles as a call of ``function(*args)``: what a malicious refs file would hold."""

    def __init__(self, function, *args):
        self.function, self.args = function, args

    def __reduce__(self):
        return self.function, self.args


@pytest.mark.parametrize("payload", ["os.system", "builtins.eval", "builtins.open"])
def test_restricted_unpickler_refuses_code(root: Path, payload: str) -> None:
    marker = root / "pwned"
    function, args = {
        "os.system": (os.system, (f"echo pwned > {marker}",)),
        "builtins.eval": (eval, (f"open({str(marker)!r}, 'w').write('pwned')",)),
        "builtins.open": (open, (str(marker), "w")),
    }[payload]
    refs_path = root / "refcoco" / "refs(unc).p"
    refs_path.write_bytes(pickle.dumps([{"ref_id": _RunsCode(function, *args)}], protocol=2))
    with pytest.raises(pickle.UnpicklingError, match="refused to load the global"):
        ReferDataset(root, split="train")
    with pytest.raises(pickle.UnpicklingError, match=payload.split(".")[1]):
        load_refs(refs_path)
    assert not marker.exists()


def _python2_pickle(obj: object) -> bytes:
    """Protocol 2 as Python 2 wrote it: byte strings as SHORT_BINSTRING (no globals)."""
    out = bytearray(b"\x80\x02")

    def put(value: object) -> None:
        if isinstance(value, dict):
            out.extend(b"}(")
            for key, item in value.items():
                put(key)
                put(item)
            out.extend(b"u")
        elif isinstance(value, list):
            out.extend(b"](")
            for item in value:
                put(item)
            out.extend(b"e")
        elif isinstance(value, bytes):
            out.extend(b"U" + bytes([len(value)]) + value)
        elif isinstance(value, int):
            out.extend(b"J" + struct.pack("<i", value))
        else:
            raise TypeError(type(value))

    put(obj)
    out.extend(b".")
    return bytes(out)


@pytest.mark.parametrize("raw,text", [(b"caf\xc3\xa9", "café"), (b"caf\xe9", "café")])
def test_python2_byte_strings(tmp_path: Path, raw: bytes, text: str) -> None:
    ref = {b"ref_id": 0, b"ann_id": 1, b"image_id": 2, b"split": b"train",
           b"sentences": [{b"sent": raw, b"sent_id": 0}]}
    path = tmp_path / "refs(unc).p"
    path.write_bytes(_python2_pickle([ref]))
    refs = load_refs(path)
    assert refs == [{"ref_id": 0, "ann_id": 1, "image_id": 2, "split": "train",
                     "sentences": [{"sent": text, "sent_id": 0}]}]


def test_fixture_is_deterministic(tmp_path: Path) -> None:
    first, second = tmp_path / "a", tmp_path / "b"
    write_refer_fixture(first)
    write_refer_fixture(second)
    files = sorted(p.relative_to(first) for p in first.rglob("*") if p.is_file())
    assert len(files) == 7
    for relative in files:
        assert (first / relative).read_bytes() == (second / relative).read_bytes()
