"""ShapeRef and REFER datasets go through one path: build_dataset -> Vocabulary -> Collate."""

import pytest
import torch
from torch.utils.data import DataLoader

from refseg_lib.data import Batch, Collate, Letterbox, Vocabulary, build_dataset
from refseg_lib.data.refer_fixture import write_refer_fixture


@pytest.mark.parametrize("name", ["shapes", "refcoco"])
def test_one_interface_for_every_dataset(name, tmp_path):
    if name == "shapes":
        config = {"num_samples": 12, "image_size": 48, "transform": Letterbox(64)}
    else:
        config = {"root": write_refer_fixture(tmp_path), "transform": Letterbox(64)}
    train = build_dataset(name, split="train", **config)
    vocab = Vocabulary.build(train.sentences)
    assert train.sentences[:3] == [train[i].sentence for i in range(3)]
    loader = DataLoader(train, batch_size=3, collate_fn=Collate(vocab, dataset=name))
    batch = next(iter(loader))
    assert isinstance(batch, Batch) and len(batch) == 3
    assert batch.images.shape == (3, 3, 64, 64) and batch.masks.shape == (3, 64, 64)
    assert batch.tokens.dtype == torch.long and (batch.lengths >= 1).all()
    assert (batch.tokens[:, 0] != 0).all()  # no sample is all padding
    for masks, k, mask in zip(batch.instance_masks, batch.referent_indices, batch.masks,
                              strict=True):
        assert torch.equal(masks[k], mask)


def test_unknown_dataset_lists_the_known_ones():
    with pytest.raises(ValueError, match="shapes, refcoco"):
        build_dataset("coco", split="train")
