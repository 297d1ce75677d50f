import pytest
import torch

from refseg_lib.data.text import Vocabulary
from refseg_lib.data.transforms import Collate, Letterbox, Resize
from refseg_lib.data.types import Sample, mask_to_box


def _sample(h=20, w=40, sentence="the left square"):
    image = torch.rand(3, h, w)
    instances = torch.zeros(2, h, w, dtype=torch.bool)
    instances[0, 4:12, 8:20] = True
    instances[1, 2:6, 30:36] = True
    return Sample(image=image, sentence=sentence, mask=instances[0].clone(),
                  box=mask_to_box(instances[0]), instance_masks=instances, referent_index=0,
                  tags=("category", "location"))


def test_mask_to_box_convention():
    mask = torch.zeros(5, 6, dtype=torch.bool)
    mask[1:3, 2:5] = True
    assert mask_to_box(mask).tolist() == [2, 1, 5, 3]
    assert mask_to_box(torch.zeros(3, 3, dtype=torch.bool)).tolist() == [0, 0, 0, 0]


def test_sample_checks_shapes():
    sample = _sample()
    with pytest.raises(ValueError, match="mask"):
        sample.replace(mask=torch.zeros(3, 3, dtype=torch.bool))
    with pytest.raises(ValueError, match="unknown phenomenon"):
        sample.replace(tags=("colour",))


@pytest.mark.parametrize("transform", [Resize(32), Letterbox(32)])
def test_transforms_keep_mask_and_box_aligned(transform):
    out = transform(_sample())
    assert out.image.shape == (3, 32, 32) and out.mask.shape == (32, 32)
    assert out.instance_masks.shape == (2, 32, 32)
    assert torch.equal(out.mask, out.instance_masks[0])
    # the transformed box and the box of the transformed mask agree to within a pixel
    assert torch.allclose(out.box, mask_to_box(out.mask), atol=1.0)


def test_letterbox_pads_and_records_geometry():
    out = Letterbox(32)(_sample(h=20, w=40))
    scale, left, top = out.meta["letterbox"]
    assert scale == 32 / 40 and left == 0 and top == 8
    assert not out.mask[:8].any() and not out.mask[-8:].any()
    torch.testing.assert_close(out.image[:, 0, 0], torch.full((3,), 0.5))


def test_collate_batches_and_encodes():
    vocab = Vocabulary.build(["the left square", "the right circle"])
    batch = Collate(vocab, max_length=2)([_sample(), _sample(sentence="right")])
    assert batch.images.shape == (2, 3, 20, 40)
    assert batch.tokens.shape == (2, 2) and batch.lengths.tolist() == [2, 1]
    assert batch.masks.dtype == torch.bool and batch.boxes.shape == (2, 4)
    assert batch.tags[0] == ("category", "location")
    assert len(batch) == 2 and len(batch.to("cpu").instance_masks) == 2


def test_collate_refuses_mixed_sizes_with_advice():
    vocab = Vocabulary.build(["x"])
    with pytest.raises(ValueError, match="Letterbox"):
        Collate(vocab)([_sample(), _sample(h=10)])
