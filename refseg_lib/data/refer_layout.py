"""Where the files of a REFER dataset live and how the settings that say so are resolved: the
data root, the split scheme and the image folder, each an argument or command-line option, else
its environment variable, else the default (``locate``); a root that is wrong for a dataset
gets a message naming the setting it came from and what to set instead
(``ReferLocation.annotation_problem``; ``refer_check`` adds the splits and the images).
"""

from __future__ import annotations

import os
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from types import MappingProxyType
from typing import NamedTuple

from refseg_lib.paths import data_root

#: Split schemes (``split_by``) published for each dataset, the default one first.
SPLIT_SCHEMES: Mapping[str, tuple[str, ...]] = MappingProxyType(
    {
        "refcoco": ("unc", "google"),
        "refcoco+": ("unc",),
        "refcocog": ("umd", "google"),
        "refclef": ("unc", "berkeley"),
    }
)

#: Image folder of each dataset, relative to the data root.
IMAGE_DIRS: Mapping[str, str] = MappingProxyType(
    {
        "refcoco": "images/mscoco/images/train2014",
        "refcoco+": "images/mscoco/images/train2014",
        "refcocog": "images/mscoco/images/train2014",
        "refclef": "images/saiapr_tc-12",
    }
)

ANNOTATIONS_URL = "http://bvisionweb1.cs.unc.edu/licheng/referit/data/{dataset}.zip"
COCO_IMAGES_URL = "http://images.cocodataset.org/zips/train2014.zip"
SAIAPR_IMAGES_URL = "http://bvisionweb1.cs.unc.edu/licheng/referit/data/images/saiapr_tc-12.zip"

def default_image_root(root: str | Path, dataset: str) -> Path:
    """Where REFER keeps the images of ``dataset`` under the data ``root``."""
    check_dataset(dataset)
    return Path(root) / IMAGE_DIRS[dataset]


def images_source(dataset: str) -> str:
    """Where the images of ``dataset`` are downloaded from, as a message says it."""
    if dataset == "refclef":
        return f"the ReferIt (saiapr_tc-12) images {SAIAPR_IMAGES_URL}"
    return f"the COCO train2014 images (https://cocodataset.org/#download, {COCO_IMAGES_URL})"


def check_dataset(dataset: str, split_by: str | None = None) -> str:
    """Validate ``dataset`` (and ``split_by``); return the split scheme, the default if None."""
    if dataset not in SPLIT_SCHEMES:
        raise DataError(f"unknown dataset {dataset!r}; valid: {', '.join(SPLIT_SCHEMES)}")
    schemes = SPLIT_SCHEMES[dataset]
    if split_by is None:
        return schemes[0]
    if split_by not in schemes:
        raise DataError(
            f"unknown split_by {split_by!r} for {dataset}; valid: {', '.join(schemes)}"
        )
    return split_by




class DataError(FileNotFoundError, ValueError):
    """A data root, split scheme, split or image folder that cannot be used; the message says
    which setting to change and how. Both a ``FileNotFoundError`` and a ``ValueError``."""


class Setting(NamedTuple):
    option: str  # on the command line
    argument: str  # in Python (run_experiment, ReferDataset)
    env: str | None  # the environment variable read when neither is given


SETTINGS = {
    "root": Setting("--data-root", "root", "REFSEG_DATA"),
    "split_by": Setting("--split-by", "split_by", "REFSEG_SPLIT_BY"),
    "image_root": Setting("--image-root", "image_root", "REFSEG_IMAGE_ROOT"),
    "dataset": Setting("--dataset", "dataset", None),
    "splits": Setting("--eval-splits", "eval_splits", None),
}
_REFS_FILE = re.compile(r"refs\((.+)\)\.p")


@dataclass(frozen=True)
class Named:
    """How each setting was given (``"option"``, ``"env"`` or ``"default"``) and whether on the
    command line (``cli``), so that a message names the one to change in the user's words."""

    cli: bool = False
    given: Mapping[str, str] = field(default_factory=dict)

    def label(self, setting: str) -> str:
        spec, how = SETTINGS[setting], self.given.get(setting, "option")
        name = spec.option if self.cli else f"{spec.argument}="
        if how == "env":
            return f"from ${spec.env}"
        if how == "default":
            return f"the default: neither {name} nor ${spec.env} is set"
        return f"from {name}"

    def fix(self, setting: str, value: object) -> str:
        spec = SETTINGS[setting]
        text = f"{spec.option} {value}" if self.cli else f"{spec.argument}={str(value)!r}"
        if spec.env and self.given.get(setting) == "env":
            return f"export {spec.env}={value} (or {text})"
        return text


def locate(dataset: str, root: str | Path | None = None, split_by: str | None = None,
           image_root: str | Path | None = None, *, cli: bool = False) -> ReferLocation:
    """The settings of a REFER dataset: each one given, else from its environment variable,
    else the default (``data/``, the dataset's usual split scheme, REFER's image folder)."""
    if dataset not in SPLIT_SCHEMES:
        raise DataError(f"unknown dataset {dataset!r}; valid: {', '.join(SPLIT_SCHEMES)}")
    values, given = {}, {}
    for setting, value in (("root", root), ("split_by", split_by), ("image_root", image_root)):
        from_env = os.environ.get(SETTINGS[setting].env or "") or None
        given[setting] = "option" if value is not None else "env" if from_env else "default"
        values[setting] = value if value is not None else from_env
    named = Named(cli, given)
    where = Path(values["root"]) if values["root"] is not None else data_root()
    schemes = SPLIT_SCHEMES[dataset]
    scheme = values["split_by"] or schemes[0]
    if scheme not in schemes:
        raise DataError(f"unknown split_by {scheme!r} ({named.label('split_by')}) for {dataset}; "
                        f"valid: {', '.join(schemes)} (use {named.fix('split_by', schemes[0])})")
    images = Path(values["image_root"]) if values["image_root"] is not None else \
        default_image_root(where, dataset)
    return ReferLocation(dataset, where, scheme, images, named)


def annotation_files(folder: Path) -> list[str]:
    """The REFER annotation files directly in ``folder`` (none if it is not a folder)."""
    if not folder.is_dir():
        return []
    return sorted(p.name for p in folder.iterdir()
                  if p.name == "instances.json" or _REFS_FILE.fullmatch(p.name))


def schemes_in(folder: Path) -> list[str]:
    return [m.group(1) for name in annotation_files(folder) if (m := _REFS_FILE.fullmatch(name))]


@dataclass(frozen=True)
class ReferLocation:
    """Where one REFER dataset is read from (see ``locate``)."""

    dataset: str
    root: Path
    split_by: str
    image_root: Path
    named: Named = field(default_factory=Named)

    @property
    def _get(self) -> str:
        return (f"Get {ANNOTATIONS_URL.format(dataset=self.dataset)} (the 'Download' section of "
                "https://github.com/lichengunc/refer) and unzip it into the data root, so that "
                f"{self.root / self.dataset} holds instances.json and refs({self.split_by}).p; "
                "data/README.md shows the whole layout.")

    def annotation_problem(self) -> str | None:
        """What is wrong with the data root for this dataset and scheme, or None."""
        root, dataset, named = self.root, self.dataset, self.named
        folder = root / dataset
        refs = folder / f"refs({self.split_by}).p"
        if refs.is_file() and (folder / "instances.json").is_file():
            return None
        where = f"the data root {root} ({named.label('root')})"
        if root.is_file():
            return (f"{where} is a file, not a folder. Point it at the folder that holds "
                    f"{dataset}/ and images/. {self._get}")
        if not root.is_dir():
            return (f"{where} does not exist. Point it at the folder that holds {dataset}/ and "
                    f"images/, or create it. {self._get}")
        own = annotation_files(root)
        if own:
            return (f"{where} holds {', '.join(own)} itself: it is a dataset folder, one level "
                    f"too deep. The data root is the folder above it: use "
                    f"{named.fix('root', root.parent)}.")
        if annotation_files(folder / dataset):
            return (f"{folder} holds another {dataset}/ folder with the annotation files (the "
                    f"zip was unzipped one level too deep): move its files up into {folder}.")
        if not folder.is_dir():
            deeper = [c for c in sorted(root.iterdir()) if annotation_files(c / dataset)]
            if deeper:
                return (f"{where} has no {dataset}/ folder but {deeper[0]} has one: the root "
                        f"is one level too high; use {named.fix('root', deeper[0])}.")
            others = [d for d in SPLIT_SCHEMES if annotation_files(root / d)]
            hint = (f" It holds {', '.join(others)}: to use one, {named.fix('dataset', others[0])}."
                    if others else "")
            return f"{where} has no {dataset}/ folder.{hint} {self._get}"
        schemes = schemes_in(folder)
        if not refs.is_file() and schemes:
            return (f"{folder} has no refs({self.split_by}).p (split scheme {self.split_by}, "
                    f"{named.label('split_by')}); it has refs({schemes[0]}).p: use "
                    f"{named.fix('split_by', schemes[0])}, or unzip the annotations again.")
        missing = refs if not refs.is_file() else folder / "instances.json"
        return f"{missing} is missing ({where}). {self._get}"
