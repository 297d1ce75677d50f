"""Type an expression, see the mask: the course's models on a scene of your choice.

``segment(trained, image, sentence)`` is the plain function (what papermill and nbval run);
``demo_widget(models)`` wraps it in ipywidgets for JupyterLab or Colab: pick or generate a
ShapeRef scene, type an expression, pick a model. Words the model never saw in training are
named, because a model reads each of them as ``<unk>`` and a user would otherwise wonder why
"the crimson star" fails where "the red star" works.
"""

from __future__ import annotations

import json
import textwrap
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path

import torch
from matplotlib.figure import Figure
from torch import nn

from refseg_lib.data import Vocabulary, build_dataset
from refseg_lib.data.text import MAX_LENGTH, pad_sequences, tokenize
from refseg_lib.data.types import Sample
from refseg_lib.engine import predict
from refseg_lib.experiments import LEADERBOARD, LEADERBOARD_RIS
from refseg_lib.metrics import PRIMARY_THRESHOLD
from refseg_lib.paths import reports_dir
from refseg_lib.records import atomic_write, safe_part
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
    """What ``segment`` returns: the words as the model read them and its mask."""

    sentence: str
    words: list[str]  # the tokens, unknown ones included
    unknown: list[str]  # the words the model reads as <unk>
    known: list[str]  # the model's vocabulary (its training words)
    probabilities: torch.Tensor  # (H, W) float
    mask: torch.Tensor  # (H, W) bool: probability > 0.5

    def message(self) -> str:
        """One line on the words, naming the unknown ones."""
        if not self.unknown:
            return f"all {len(self.words)} words are known to the model"
        listed = ", ".join(repr(w) for w in dict.fromkeys(self.unknown))
        return (f"unknown words, read as <unk>: {listed}; the model knows only the "
                f"{len(self.known)} words of its training expressions: rephrase with those")


def segment(trained: TrainedModel, image: torch.Tensor, sentence: str) -> Segmentation:
    """The mask ``trained`` predicts for ``sentence`` on ``image`` (3, H, W) in [0, 1]."""
    if image.ndim != 3 or image.shape[0] != 3:
        raise ValueError(f"image must be (3, H, W), got {tuple(image.shape)}")
    words = tokenize(sentence)
    if not words:
        raise ValueError(f"the expression {sentence!r} has no words: type what to segment, "
                         "e.g. 'the red star on the left'")
    ids = trained.vocabulary.encode(sentence, MAX_LENGTH["shapes"])
    tokens, lengths = pad_sequences([ids])
    probabilities = predict(trained.net, image[None], tokens, lengths)[0]  # (H, W)
    vocabulary = trained.vocabulary
    return Segmentation(sentence, words, vocabulary.unknown_words(sentence),
                        vocabulary.itos[2:], probabilities, probabilities > PRIMARY_THRESHOLD)


def scene(index: int = 0, *, split: str = "val", style: str = "refshape", seed: int = 0,
          image_size: int | None = None) -> Sample:
    """ShapeRef sample ``index`` of ``split`` (default size: the quick profile's, at which the
    trained models were trained): the same scene for the same arguments on any machine;
    another ``seed`` generates other scenes."""
    from refseg_lib.experiments import get_profile

    data = build_dataset("shapes", split=split, style=style, seed=seed, num_samples=index + 1,
                         image_size=image_size or get_profile("quick").image_size)
    return data[index]


def show(image: torch.Tensor, result: Segmentation, *, truth: torch.Tensor | None = None,
         title: str = "") -> Figure:
    """The image, the model's probability map and its mask (and the true mask, if given)."""
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
    name = "__".join([model, safe_part(variant), safe_part(style), profile])
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
        net = _build(model, profile, vocabulary, payload["config"])
        net.load_state_dict(payload["weights"])
        evaluation, scores = payload["evaluation"], payload["scores"]
    else:
        path = checkpoint_path(model, variant.split("+")[0], "shapes", style, profile)
        vocab_path = path.with_suffix(".vocab.json")
        if not path.exists() or not vocab_path.exists():
            raise FileNotFoundError(_not_trained(model, variant, style, profile, saved))
        record = _saved_record(model, variant, style, profile, required=False)
        vocabulary = Vocabulary.from_state_dict(json.loads(vocab_path.read_text()))
        net = _build(model, profile, vocabulary, record["config"].get("model") or {})
        load_model_weights(net, path)
        evaluation = record["config"].get("evaluation") or {}
        scores = {k: float(v) for k, v in record["metrics"].items() if k == "overall_iou"}
    for attribute, value in evaluation.items():  # e.g. MCN's postprocess="asnls"
        setattr(net, attribute, value)
    return TrainedModel(name or f"{model} {variant}", net.eval(), vocabulary, scores)


def _build(model: str, profile: str, vocabulary: Vocabulary, config: Mapping) -> nn.Module:
    from refseg_lib.models import build_model
    from refseg_lib.models.registry import model_takes

    words = {"words": tuple(vocabulary.itos)} if model_takes(model, "words") else {}
    return build_model(model, profile=profile, vocab_size=len(vocabulary), **words, **config)


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
