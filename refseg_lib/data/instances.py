"""Instance segmentation tasks built on the referring datasets (notebook 08, recurrent instance
segmentation): the targets are a *set* of instances instead of one referent.

``InstanceTask(dataset, query)`` wraps any dataset of ``Sample`` s and rewrites each sample:

- ``query="all"``: every annotated instance of the image, class-agnostic (Romera-Paredes &
  Torr's task: they segment every person, or every leaf). The sentence is a constant
  ("all the objects"), which an unconditioned model never reads. Works for ShapeRef and REFER.
- ``query="plural"``: ShapeRef only. An expression that refers to several objects at once,
  built from the symbolic scene: "all the red shapes" (a colour), "all the stars" (a category)
  or "all the small shapes" (a size); the kind is drawn uniformly and the value among those
  present in the scene, deterministically per sample. The targets are exactly the objects
  with that property (one to all of them), resolved symbolically as ShapeRef's referring
  expressions are. Tags: ``attribute`` (colour), ``category`` or ``size``. This is our
  extension, not in the paper: it asks the recurrent model to *count what the sentence
  selects*.

In the rewritten sample ``instance_masks`` holds the targets only, ``mask`` their union (what
the harness's mask metrics then score: foreground IoU), ``box`` the union's box and
``referent_index`` 0.
"""

from __future__ import annotations

import numpy as np
import torch
from torch.utils.data import Dataset

from refseg_lib.data.shapes_language import CATEGORIES, COLORS, SIZES
from refseg_lib.data.types import Sample, mask_to_box

QUERIES = ("all", "plural")
ALL_SENTENCE = "all the objects"
PLURALS = {"circle": "circles", "ring": "rings", "heart": "hearts", "crescent": "crescents",
           "triangle": "triangles", "star": "stars", "cross": "crosses", "diamond": "diamonds"}
_KINDS = (("color", COLORS, "attribute"), ("category", CATEGORIES, "category"),
          ("size", SIZES, "size"))


def plural_query(objects, rng: np.random.Generator) -> tuple[str, list[int], str]:
    """(sentence, indices of the objects it selects, phenomenon tag) for a ShapeRef scene's
    ``objects``: a kind (colour, category, size) drawn uniformly, then one of its values
    present in the scene."""
    kind, values, tag = _KINDS[rng.integers(len(_KINDS))]
    present = [value for value in values if any(getattr(o, kind) == value for o in objects)]
    value = present[rng.integers(len(present))]
    sentence = (f"all the {PLURALS[value]}" if kind == "category"
                else f"all the {value} shapes")
    return sentence, [k for k, o in enumerate(objects) if getattr(o, kind) == value], tag


class InstanceTask(Dataset):
    """``dataset`` with every sample's targets replaced by a set of instances (module doc)."""

    def __init__(self, dataset: Dataset, query: str = "all", seed: int = 0):
        if query not in QUERIES:
            raise ValueError(f"unknown instance query {query!r}; choose one of {QUERIES}")
        if query == "plural" and not hasattr(dataset, "scene"):
            raise ValueError("query='plural' needs ShapeRef's symbolic scenes; a REFER dataset "
                             "has no attributes to select by: use query='all'")
        self.dataset, self.query, self.seed = dataset, query, seed

    def __len__(self) -> int:
        return len(self.dataset)

    def __repr__(self) -> str:
        return f"InstanceTask({self.dataset!r}, query={self.query!r})"

    def _plural(self, index: int, objects) -> tuple[str, list[int], str]:
        return plural_query(objects, np.random.default_rng((self.seed, 7, index)))

    @property
    def sentences(self) -> list[str]:
        """Every sentence of the task, without rendering images (for the vocabulary)."""
        if self.query == "all":
            return [ALL_SENTENCE] * len(self)
        return [self._plural(i, self.dataset.scene(i).objects)[0] for i in range(len(self))]

    def __getitem__(self, index: int) -> Sample:
        sample = self.dataset[index]
        keep, sentence, tags = list(range(sample.instance_masks.shape[0])), ALL_SENTENCE, ()
        if self.query == "plural":
            sentence, keep, tag = self._plural(int(index) % len(self),
                                               sample.meta["scene"].objects)
            tags = (tag,)
        instances = sample.instance_masks[keep]  # (N, H, W) bool
        union = instances.any(0) if len(keep) else torch.zeros_like(sample.mask)
        return sample.replace(sentence=sentence, mask=union, box=mask_to_box(union),
                              instance_masks=instances, referent_index=0, tags=tags,
                              sample_id=f"{sample.sample_id}-{self.query}")
