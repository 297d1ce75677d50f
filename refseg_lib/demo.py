"""Type an expression, see the mask: the course's models on a scene of your choice.

``segment(trained, image, sentence)`` is the plain function (what papermill and nbval run);
``demo_widget(models)`` wraps it in ipywidgets for JupyterLab or Colab: pick or generate a
ShapeRef scene, type an expression, pick a model. Words the model never saw in training are
named, because a model reads each of them as ``<unk>`` and a user would otherwise wonder why
"the crimson star" fails where "the red star" works; so are the words past the model's maximum
length and the characters no word holds (emoji, "+"). ``segment`` takes the images users have
(uint8, numpy, PIL, greyscale, RGBA: ``as_image``) and names each conversion it made; what it
cannot use (NaN, a file path, a batch) is refused with an error that says what to pass.
"""

from __future__ import annotations

import json
import os
import textwrap
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch
from matplotlib.figure import Figure
from PIL import Image
from torch import nn

from refseg_lib.data import Vocabulary, build_dataset
from refseg_lib.data.text import MAX_LENGTH, ignored_characters, pad_sequences, tokenize
from refseg_lib.data.types import Sample
from refseg_lib.engine import predict
from refseg_lib.experiments import LEADERBOARD, LEADERBOARD_RIS, build_for
from refseg_lib.metrics import PRIMARY_THRESHOLD
from refseg_lib.paths import atomic_write, reports_dir
from refseg_lib.records import safe_part
from refseg_lib.viz import overlay


@dataclass
class TrainedModel:
    """A trained network with the vocabulary it was trained on."""

    name: str
    net: nn.Module
    vocabulary: Vocabulary
    scores: dict[str, float] = field(default_factory=dict)  # its saved val scores, if known


@dataclass
class Segmentation:
    """What ``segment`` returns: the words as the model read them, its mask, and what was
    changed or left out on the way."""

    sentence: str
    words: list[str]  # the tokens the model read (the first MAX_LENGTH), unknown ones included
    unknown: list[str]  # the words the model reads as <unk>
    known: list[str]  # the model's vocabulary (its training words)
    probabilities: torch.Tensor  # (H, W) float
    mask: torch.Tensor  # (H, W) bool: probability > 0.5
    unread: list[str] = field(default_factory=list)  # the tokens past MAX_LENGTH, never read
    dropped: list[str] = field(default_factory=list)  # characters no word holds (emoji, "+")
    notes: list[str] = field(default_factory=list)  # each conversion made to the image

    def message(self) -> str:
        """One line on what the model read: the words past its maximum length, the unknown
        words, the characters no word holds, and each conversion made to the image. It says
        "all N words are known" only when the model read every word, knew them all and nothing
        was dropped."""
        parts = []
        if self.unread:
            shown = ", ".join(map(repr, self.unread[:5])) + (", ..." if len(self.unread) > 5
                                                               else "")
            parts.append(f"the model reads only the first {len(self.words)} of its "
                         f"{len(self.words) + len(self.unread)} words; ignored: {shown}")
        if self.unknown:
            listed = ", ".join(repr(w) for w in dict.fromkeys(self.unknown))
            parts.append(f"unknown words, read as <unk>: {listed}; the model knows only the "
                         f"{len(self.known)} words of its training expressions: rephrase with "
                         "those")
        elif self.unread or self.dropped:
            parts.append(f"the {len(self.words)} words it reads are known to the model")
        else:
            parts.append(f"all {len(self.words)} words are known to the model")
        if self.dropped:
            parts.append("ignored characters: " + ", ".join(map(repr, self.dropped)))
        return "; ".join(parts + self.notes)


def segment(trained: TrainedModel, image, sentence: str) -> Segmentation:
    """The mask ``trained`` predicts for ``sentence`` on ``image``: a tensor (3, H, W) in [0, 1],
    or any image ``as_image`` converts (uint8, numpy, PIL, greyscale, RGBA...): the result's
    ``notes`` and ``message()`` name each conversion made."""
    if not isinstance(sentence, str):
        raise TypeError(_not_a_sentence(sentence))
    words = tokenize(sentence)
    if not words:
        raise ValueError(f"the expression {sentence!r} has no words: type what to segment, "
                         "e.g. 'the red star on the left'")
    pixels, notes = as_image(image)
    limit = MAX_LENGTH["shapes"]
    vocabulary = trained.vocabulary
    tokens, lengths = pad_sequences([vocabulary.encode(sentence, limit)])
    probabilities = predict(trained.net, pixels[None], tokens, lengths)[0]  # (H, W)
    read = words[:limit]
    return Segmentation(sentence, read, [w for w in read if w not in vocabulary],
                        vocabulary.itos[2:], probabilities, probabilities > PRIMARY_THRESHOLD,
                        unread=words[limit:], dropped=ignored_characters(sentence), notes=notes)


def _not_a_sentence(sentence) -> str:
    """The error for an expression that is not a ``str``: what to pass instead."""
    if isinstance(sentence, (bytes, bytearray)):
        return (f"the expression is {type(sentence).__name__}, not str: decode it first, "
                'e.g. sentence.decode("utf-8")')
    kind = "None" if sentence is None else type(sentence).__name__
    hint = ('join its words first, e.g. " ".join(words)' if isinstance(sentence, (list, tuple))
            else "pass the words as one string, e.g. 'the red star on the left'")
    return f"the expression must be a str, got {kind}: {hint}"


#: Element types ``torch.from_numpy`` takes as they are; any other numeric array is read as
#: float64 first (uint16 or big-endian images, float128).
_TORCH_NUMPY = {np.dtype(t) for t in ("bool", "uint8", "int8", "int16", "int32", "int64",
                                       "float16", "float32", "float64", "complex64",
                                       "complex128")}
#: PIL modes read as they are; others are converted by PIL to RGB (RGBA if transparent).
_PIL_MODES = ("1", "L", "RGB", "RGBA", "I", "I;16", "F")
_EXPECTED = "a torch tensor (3, H, W), a numpy array (H, W, 3) or a PIL image"


def as_image(image) -> tuple[torch.Tensor, list[str]]:
    """``image`` as the models read it, a float32 tensor (3, H, W) in [0, 1], and a note on each
    conversion made (none for an image already in that form).

    Taken: a torch tensor (channels first: (3, H, W)), a numpy array or a PIL image (channels
    last: (H, W, 3)); the other layout when only it has a channel axis of 1, 3 or 4; a batch of
    one image (1, 3, H, W), read as its image. Values: floats in [0, 1] as they are; uint8 and
    other integers (0-255) and floats whose maximum is above 1 and at most 255 scaled by 1/255;
    bools as 0 and 1. A greyscale image ((H, W) or one channel) has its channel repeated as red,
    green and blue; an RGBA image has its alpha channel dropped (not composited).

    Refused, with an error that says what to pass: NaN or infinite values, negative values or
    values above 255, complex numbers, an empty image, another rank, a batch of several images,
    a file path, a list or anything else that is not an image.
    """
    notes: list[str] = []
    pixels, name, channels_last = _as_tensor(image, notes)
    if pixels.numel() == 0:
        raise ValueError(f"the image is empty (shape {tuple(pixels.shape)}): pass an image of at "
                         "least one pixel")
    if pixels.is_complex():
        raise TypeError(f"the image has complex values ({name}): pass real ones, e.g. "
                        "image.real or image.abs()")
    pixels = _channels_first(pixels, channels_last, notes)
    pixels = _unit_range(pixels, name, notes)
    if pixels.shape[0] == 4:
        pixels = pixels[:3]
        notes.append("RGBA image: the alpha channel dropped (not composited)")
    elif pixels.shape[0] == 1:
        pixels = pixels.expand(3, -1, -1)
        notes.append("greyscale image: its one channel repeated as red, green and blue")
    return pixels, notes


def _as_tensor(image, notes: list[str]) -> tuple[torch.Tensor, str, bool]:
    """``image`` as a tensor, the name of its element type, and whether its layout is expected
    to be channels last (numpy and PIL) rather than first (torch)."""
    if isinstance(image, torch.Tensor):
        name = str(image.dtype).removeprefix("torch.")
        if image.dtype in (torch.uint16, torch.uint32, torch.uint64):  # few operations take them
            image = image.double()
        return image.detach(), name, False
    if isinstance(image, Image.Image):
        if image.mode not in _PIL_MODES:
            mode = "RGBA" if "A" in image.mode or "transparency" in image.info else "RGB"
            notes.append(f"PIL image in mode {image.mode!r}: converted to {mode} by PIL")
            image = image.convert(mode)
        image = np.asarray(image)
    if isinstance(image, np.ndarray):
        if image.dtype.kind not in "biufc":
            raise TypeError(f"the image is a numpy array of {image.dtype}, not of numbers: pass "
                            "numbers (uint8 0-255 or floats in [0, 1])")
        name = image.dtype.name
        if image.dtype not in _TORCH_NUMPY:
            image = image.astype(np.complex128 if image.dtype.kind == "c" else np.float64)
        return torch.from_numpy(np.array(image)), name, True  # a copy: writable, contiguous
    if isinstance(image, (str, os.PathLike)):
        raise TypeError(f"the image is a path ({str(image)!r}), not an image: open it first, "
                        "e.g. PIL.Image.open(path), and pass that (or its numpy array)")
    hint = (": make it a tensor first, torch.tensor(image) (channels first) or numpy.array(image)"
            " (channels last)" if isinstance(image, (list, tuple)) else "")
    kind = "None" if image is None else type(image).__name__
    raise TypeError(f"the image must be {_EXPECTED}, got {kind}{hint}")


def _channels_first(pixels: torch.Tensor, channels_last: bool, notes: list[str]) -> torch.Tensor:
    """``pixels`` as (C, H, W) with C in 1, 3, 4: a batch of one read as its image, (H, W) as
    one channel, and the other layout taken when only it has a channel axis of 1, 3 or 4."""
    if pixels.ndim == 4 and pixels.shape[0] == 1:
        notes.append(f"a batch of one image {tuple(pixels.shape)}: its one image read")
        pixels = pixels[0]
    shape = tuple(pixels.shape)
    if pixels.ndim == 4:
        raise ValueError(f"the image is a batch of {shape[0]} images {shape}: segment reads one, "
                         "pass one of them (e.g. image[0]) and call segment once per image")
    if pixels.ndim == 2:
        return pixels[None]
    if pixels.ndim != 3:
        raise ValueError(f"the image must be (3, H, W) for a tensor, (H, W, 3) for a numpy array "
                         f"or PIL image, or (H, W) for greyscale; got shape {shape} "
                         f"({pixels.ndim}-D)")
    first, last = (size in (1, 3, 4) for size in (shape[0], shape[-1]))
    if not (first or last):
        raise ValueError(f"the image of shape {shape} has no channel axis of size 1, 3 or 4: "
                         f"pass {_EXPECTED}")
    if not (last if channels_last else first):  # only the other layout fits
        layout = "first (C, H, W)" if channels_last else "last (H, W, C)"
        notes.append(f"{'a numpy array' if channels_last else 'a tensor'} of shape {shape}: "
                     f"read as channels {layout}")
        channels_last = not channels_last
    return pixels.permute(2, 0, 1) if channels_last else pixels


def _unit_range(pixels: torch.Tensor, name: str, notes: list[str]) -> torch.Tensor:
    """``pixels`` as float32 in [0, 1]; refused when it holds NaN, infinite or negative values
    or values above 255. ``name`` is the image's own element type (a uint16 array comes here as
    float64): integers, and floats above 1, are read as 0-255 and scaled by 1/255."""
    if pixels.dtype == torch.bool:
        notes.append("the image was bool: False and True read as 0 and 1")
        return pixels.float()
    if pixels.is_floating_point():
        bad = [f"{count} {what} value(s)" for what, count in (
            ("NaN", int(torch.isnan(pixels).sum())), ("infinite", int(torch.isinf(pixels).sum())))
            if count]
        if bad:
            raise ValueError(f"the image has {' and '.join(bad)}: replace them (e.g. "
                             "torch.nan_to_num(image)) or pass another image")
    low, high = float(pixels.min()), float(pixels.max())
    if low < 0:
        raise ValueError(f"the image has {int((pixels < 0).sum())} negative value(s) (the lowest "
                         f"{low:g}): pass floats in [0, 1] or uint8 0-255 (undo a normalisation "
                         "by a mean and std first)")
    if high > 255:
        raise ValueError(f"the image has values up to {high:g}, above 255: pass floats in [0, 1] "
                         "or uint8 0-255 (a 16-bit image: divide it by 65535 first)")
    if name.startswith(("int", "uint")):
        notes.append(f"the image was {name} (0-255): scaled to [0, 1]")
    elif high > 1:
        notes.append(f"the image was {name} with values up to {high:g}, read as 0-255: scaled "
                     "to [0, 1]")
    else:
        if name != "float32":
            notes.append(f"the image was {name}: converted to float32")
        return pixels.float()
    return (pixels.double() / 255).float()


def scene(index: int = 0, *, split: str = "val", style: str = "refshape", seed: int = 0,
          image_size: int | None = None) -> Sample:
    """ShapeRef sample ``index`` of ``split`` (default size: the quick profile's, at which the
    trained models were trained): the same scene for the same arguments on any machine;
    another ``seed`` generates other scenes."""
    from refseg_lib.experiments import get_profile

    data = build_dataset("shapes", split=split, style=style, seed=seed, num_samples=index + 1,
                         image_size=image_size or get_profile("quick").image_size)
    return data[index]


def show(image, result: Segmentation, *, truth: torch.Tensor | None = None,
         title: str = "") -> Figure:
    """The image (any image ``segment`` takes), the model's probability map and its mask (and
    the true mask, if given)."""
    image = as_image(image)[0].cpu()
    panels = [("image", image.permute(1, 2, 0).numpy()),
              ("probability", result.probabilities.numpy()),
              ("predicted mask", overlay(image, result.mask))]
    if truth is not None:
        panels.append(("true mask", overlay(image, truth)))
    fig = Figure(figsize=(2.4 * len(panels), 3.0), layout="constrained")
    for ax, (name, picture) in zip(fig.subplots(1, len(panels)), panels, strict=True):
        ax.imshow(picture, interpolation="nearest", vmin=0, vmax=1,
                  cmap="magma" if picture.ndim == 2 else None)
        ax.set_title(name, fontsize=9)
        ax.axis("off")
    heading = f"{title}: " if title else ""
    fig.suptitle("\n".join(textwrap.wrap(f'{heading}"{result.sentence}" — {result.message()}',
                                         110)), fontsize=9)
    return fig


SAVED_MODEL_FORMAT = "refseg-trained-model-1"
# The trained models ``make reproduce`` keeps (``reports/models/``) for the notebooks' figures
# and the demo: each system's full model, as in the leaderboard, and RIS's curriculum run.
SHOWN_MODELS = {**LEADERBOARD, "RIS": LEADERBOARD_RIS}


def saved_model_path(model: str, variant: str, style: str = "refshape",
                     profile: str = "quick") -> Path:
    """Where ``make reproduce`` keeps a system's trained model beside its saved results."""
    name = "__".join(safe_part(part) for part in (model, variant, style, profile))
    return reports_dir() / "models" / f"{name}.pt"


def save_trained(model: str, variant: str, *, style: str = "refshape",
                 profile: str = "quick") -> Path:
    """Keep the trained model of a saved run in ``reports/models/``: its weights (no optimizer
    state), vocabulary, model configuration, evaluation setting and saved val scores, in one
    file that ``torch.load(weights_only=True)`` reads. ``variant`` is the saved run's name;
    ``"cem+asnls"`` is checkpoint ``"cem"`` evaluated with ``postprocess="asnls"``."""
    from refseg_lib.engine import load_checkpoint
    from refseg_lib.experiments import checkpoint_path

    trained_as = variant.split("+")[0]
    path = checkpoint_path(model, trained_as, "shapes", style, profile)
    vocab_path = path.with_suffix(".vocab.json")
    if not path.exists() or not vocab_path.exists():
        raise FileNotFoundError(_not_trained(model, variant, style, profile, path))
    record = _saved_record(model, variant, style, profile)
    payload = {"format": SAVED_MODEL_FORMAT, "model": model, "variant": variant, "style": style,
               "profile": profile, "config": record["config"].get("model") or {},
               "evaluation": record["config"].get("evaluation") or {},
               "scores": {k: float(v) for k, v in record["metrics"].items()
                          if k in ("overall_iou", "mean_iou", "Pr@0.5", "count_acc")},
               "vocabulary": json.loads(vocab_path.read_text()),
               "weights": load_checkpoint(path)["model"]}
    target = saved_model_path(model, variant, style, profile)
    target.parent.mkdir(parents=True, exist_ok=True)
    return atomic_write(target, lambda f: torch.save(payload, f))


def load_trained(model: str, variant: str, *, style: str = "refshape", profile: str = "quick",
                 name: str | None = None) -> TrainedModel:
    """A trained model of the course (e.g. ``load_trained("dmn", "base")``): the one kept in
    ``reports/models/`` by ``make reproduce`` (fetched with the saved results), else the
    checkpoint of a run you trained (``run_experiment``); a clear error says how to get one."""
    from refseg_lib.engine import load_model_weights
    from refseg_lib.experiments import checkpoint_path

    saved = saved_model_path(model, variant, style, profile)
    if saved.exists():
        try:
            payload = torch.load(saved, map_location="cpu", weights_only=True)
        except Exception as error:  # truncated, corrupt, or more than tensors and plain data
            raise ValueError(f"cannot read the saved model {saved} ({error}): delete it and run "
                             "`python -m refseg_lib reproduce` (or fetch the saved results "
                             "again) to get it back") from error
        if not isinstance(payload, dict) or payload.get("format") != SAVED_MODEL_FORMAT:
            raise ValueError(f"{saved} is not a saved model of this course")
        vocabulary = Vocabulary.from_state_dict(payload["vocabulary"])
        net = build_for(model, profile, vocabulary, payload["config"])
        net.load_state_dict(payload["weights"])
        evaluation, scores = payload["evaluation"], payload["scores"]
    else:
        path = checkpoint_path(model, variant.split("+")[0], "shapes", style, profile)
        vocab_path = path.with_suffix(".vocab.json")
        if not path.exists() or not vocab_path.exists():
            raise FileNotFoundError(_not_trained(model, variant, style, profile, saved))
        record = _saved_record(model, variant, style, profile, required=False)
        vocabulary = Vocabulary.from_state_dict(json.loads(vocab_path.read_text()))
        net = build_for(model, profile, vocabulary, record["config"].get("model") or {})
        load_model_weights(net, path)
        evaluation = record["config"].get("evaluation") or {}
        scores = {k: float(v) for k, v in record["metrics"].items() if k == "overall_iou"}
    for attribute, value in evaluation.items():  # e.g. MCN's postprocess="asnls"
        setattr(net, attribute, value)
    return TrainedModel(name or f"{model} {variant}", net.eval(), vocabulary, scores)


def _saved_record(model: str, variant: str, style: str, profile: str, *,
                  required: bool = True) -> dict:
    """The saved val result of the run (its configuration and metrics)."""
    from refseg_lib.records import load_run_records

    try:
        records = load_run_records()
    except FileNotFoundError:
        records = None
    if records is not None:
        mine = records[(records["model"] == model) & (records["variant"] == variant)
                       & (records["style"] == style) & (records["profile"] == profile)
                       & (records["split"] == "val")]
        if len(mine):
            row = mine.iloc[0]
            return {"config": row["config"],
                    "metrics": {k: row[k] for k in ("overall_iou", "mean_iou", "Pr@0.5",
                                                     "count_acc") if k in row and row[k] == row[k]}}
    if required:
        raise FileNotFoundError(f"no saved val result of {model} {variant!r} ({style}, "
                                f"{profile}): run `python -m refseg_lib reproduce` first")
    return {"config": {}, "metrics": {}}


def _not_trained(model: str, variant: str, style: str, profile: str, where: Path) -> str:
    return (f"no trained {model} {variant!r} ({style}, {profile}) at {where}: fetch the saved "
            "results (the first cell of a notebook does) or train it with "
            "`python -m refseg_lib reproduce` (every model of the course; it skips those "
            "already trained)")


def demo_widget(models: Mapping[str, TrainedModel], *, style: str = "refshape"):
    """An ipywidgets panel: a scene (index and seed: "generate" draws a new seed), an
    expression (the scene's own to start with), a model, and the result below."""
    import ipywidgets as widgets
    from IPython.display import display

    if not models:
        raise ValueError("demo_widget needs at least one trained model (see load_trained)")
    index = widgets.BoundedIntText(value=0, min=0, max=9999, description="scene")
    seed = widgets.IntText(value=0, description="seed")
    generate = widgets.Button(description="generate a scene")
    sentence = widgets.Text(description="expression", continuous_update=False,
                            layout=widgets.Layout(width="60%"))
    chosen = widgets.Dropdown(options=list(models), description="model")
    out = widgets.Output()

    def draw(*_) -> None:
        sample = scene(index.value, style=style, seed=seed.value)
        with out:
            out.clear_output(wait=True)
            try:
                result = segment(models[chosen.value], sample.image, sentence.value)
            except ValueError as error:
                print(error)
                return
            truth = sample.mask if sentence.value == sample.sentence else None
            display(show(sample.image, result, truth=truth, title=chosen.value))

    def new_scene(*_) -> None:
        own = scene(index.value, style=style, seed=seed.value).sentence
        if sentence.value == own:
            draw()
        sentence.value = own  # a new value draws

    def reseed(*_) -> None:
        seed.value += 1  # fires new_scene

    index.observe(new_scene, names="value")
    seed.observe(new_scene, names="value")
    generate.on_click(reseed)
    sentence.observe(draw, names="value")
    chosen.observe(draw, names="value")
    new_scene()
    return widgets.VBox([widgets.HBox([index, seed, generate]), sentence, chosen, out])
