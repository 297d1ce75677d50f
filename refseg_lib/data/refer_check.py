"""A REFER data root checked before any work: the annotations (``refer_layout``), every split
a run needs and the images of their first refs, each problem with a message that names the
option or variable to change and says what to do.

``check(locate(...), splits)`` is what ``run_experiment`` and ``python -m refseg_lib train`` run
before the first training step; ``describe_root`` is ``python -m refseg_lib data check``.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

from refseg_lib.data.refer import ReferAnnotations, ReferDataset, load_refer_annotations
from refseg_lib.data.refer_layout import (
    SPLIT_SCHEMES,
    DataError,
    ReferLocation,
    annotation_files,
    default_image_root,
    images_source,
    locate,
    schemes_in,
)

__all__ = ["DataError", "check", "describe_root", "image_problem", "load_annotations", "locate",
           "split_problem"]


def load_annotations(location: ReferLocation) -> ReferAnnotations:
    """The dataset's annotations; a ``DataError`` saying what to do when they are missing."""
    problem = location.annotation_problem()
    if problem:
        raise DataError(problem)
    return load_refer_annotations(location.root, location.dataset, location.split_by)


def split_problem(location: ReferLocation, annotations: ReferAnnotations,
                  splits: Sequence[str]) -> str | None:
    """Which of ``splits`` the split scheme lacks, and the splits it has, or None."""
    available = list(annotations.splits)
    missing = [s for s in dict.fromkeys(splits) if s not in available]
    if not missing:
        return None
    evaluable = " ".join(s for s in available if s != "train")
    return (f"{location.dataset} refs({location.split_by}).p (split scheme {location.split_by}, "
            f"{location.named.label('split_by')}) has no split {', '.join(map(repr, missing))}; "
            f"its splits: {', '.join(available)}. Evaluate on those: "
            f"{location.named.fix('splits', evaluable)}.")


def image_problem(location: ReferLocation, annotations: ReferAnnotations,
                  splits: Sequence[str] = (), per_split: int | None = 2) -> str | None:
    """Whether the images of the first ``per_split`` refs of each split exist and can be read
    at their size; ``per_split=None``: whether every image of every split exists (the first
    three read)."""
    root = location.image_root
    where = f"the image folder {root} ({location.named.label('image_root')})"
    dataset = ReferDataset(annotations=annotations, dataset=location.dataset,
                           split=next(iter(annotations.splits)), image_root=root)
    wanted = list(dict.fromkeys(int(ref["image_id"]) for s in (splits or annotations.splits)
                                for ref in [r for r in annotations.refs
                                            if r["split"] == s][:per_split]))
    missing = [i for i in wanted if not dataset.image_path(i).is_file()]
    if missing:
        first = dataset.image_path(missing[0])
        found = _find(location, first)
        move = (f"The images are in {found}: use {location.named.fix('image_root', found)}."
                if found else _get_images(location))
        state = "does not exist" if not root.is_dir() else (
            f"lacks {len(missing)} of the {len(wanted)} images checked, e.g. {first.name}")
        return f"{where} {state}. {move}"
    for image_id in wanted if per_split else wanted[:3]:  # the first ones read
        try:
            dataset.load_image(image_id)
        except (OSError, ValueError) as error:
            return (f"cannot use {dataset.image_path(image_id)} ({where}): {error}. "
                    f"{_get_images(location)}")
    return None


def _get_images(location: ReferLocation) -> str:
    source = images_source(location.dataset)
    default = default_image_root(location.root, location.dataset)
    return (f"Get {source} and unzip them into {default}, or point "
            f"{location.named.fix('image_root', '<folder>')} at where they are.")


def _find(location: ReferLocation, image: Path) -> Path | None:
    """The image folder a misplaced ``image`` is in: one level above or below the one given,
    or REFER's default folder."""
    root = location.image_root
    relative = image.relative_to(root)
    top = relative.parts[0] if len(relative.parts) > 1 else None  # RefCLEF's NN/images/
    candidates = [root / "train2014", root / "images" / "train2014",
                  root / "mscoco" / "images" / "train2014", root / "saiapr_tc-12", root.parent,
                  default_image_root(location.root, location.dataset)]
    for folder in candidates:
        if folder != root and ((folder / relative).is_file() or top and (folder / top).is_dir()):
            return folder
    return None


def check(location: ReferLocation, splits: Sequence[str] = ("train",),
          per_split: int = 2) -> ReferAnnotations:
    """Everything a run needs before its first step: the annotations, every split in
    ``splits``, and the images of the first refs of each; a ``DataError`` otherwise."""
    annotations = load_annotations(location)
    problem = split_problem(location, annotations, splits) or image_problem(
        location, annotations, splits, per_split)
    if problem:
        raise DataError(problem)
    return annotations


def describe_root(root: str | Path | None = None, datasets: Sequence[str] = (),
                  split_by: str | None = None, image_root: str | Path | None = None, *,
                  cli: bool = False) -> tuple[list[str], list[str]]:
    """``(lines, problems)``: what a data root holds (each dataset's split schemes, refs and
    sentences per split, images found) and each problem with what to do.

    ``datasets`` (default: those found under the root) are checked with ``split_by`` (default:
    each one's schemes found) and ``image_root``; every image the refs name is looked for.
    """
    first = locate(datasets[0] if datasets else "refcoco", root, None, image_root, cli=cli)
    named, base = first.named, first.root
    lines = [f"data root {base} ({named.label('root')})"]
    found = [d for d in SPLIT_SCHEMES if annotation_files(base / d)]
    problems = []
    if not datasets and not found:
        problems.append(first.annotation_problem() or f"{base} holds no REFER dataset.")
    for dataset in datasets or found:
        schemes = [split_by] if split_by else (schemes_in(base / dataset) or [None])
        for scheme in schemes:
            try:
                location = locate(dataset, root, scheme, image_root, cli=cli)
            except DataError as error:  # a scheme the dataset does not have
                problems.append(str(error))
                continue
            problem = location.annotation_problem()
            if problem:
                problems.append(problem)
                continue
            annotations = load_annotations(location)
            counts = {s: (n, sum(len(r["sentences"]) for r in annotations.refs if r["split"] == s))
                      for s, n in annotations.splits.items()}
            lines.append(f"{dataset}/refs({location.split_by}).p: " + ", ".join(
                f"{s} {n:,} refs / {k:,} sentences" for s, (n, k) in counts.items()))
            image_ids = {int(r["image_id"]) for r in annotations.refs}
            problem = image_problem(location, annotations, per_split=None)
            state = "missing or unreadable" if problem else "all found"
            lines.append(f"  images: {len(image_ids):,} named by the refs, {state} in "
                         f"{location.image_root} ({named.label('image_root')})")
            if problem:
                problems.append(problem)
    return lines, list(dict.fromkeys(problems))
