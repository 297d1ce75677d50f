"""Profiles and the one function that trains, evaluates and records a model.

``run_experiment("lstm_cnn", profile="quick")`` builds the datasets, the vocabulary (training
split only), the registered model, trains it with ``engine.fit`` (resuming from its checkpoint
if one exists), evaluates it on the evaluation splits and writes one run record per split under
``reports/runs/``. Notebooks, ``python -m refseg_lib train`` and ``reproduce`` all call it, so
every number in ``reports/`` comes from the same path.
"""

from __future__ import annotations

import dataclasses
import difflib
import hashlib
import json
import math
import re
from collections.abc import Callable, Mapping, Sequence
from contextlib import nullcontext
from dataclasses import dataclass, field
from pathlib import Path

from torch import nn
from torch.utils.data import Dataset, Subset

from refseg_lib.data import Collate, Letterbox, Vocabulary, build_dataset
from refseg_lib.data.instances import InstanceTask
from refseg_lib.engine import (
    EvalResult,
    TrainConfig,
    TrainResult,
    checkpoint_lock,
    distributed_env,
    evaluate,
    fit,
    init_weights_from,
    predict,
    seed_everything,
)
from refseg_lib.losses import mask_bce
from refseg_lib.metrics import PRIMARY_THRESHOLD, tag_record_metrics
from refseg_lib.models import build_model
from refseg_lib.models.common import start_at_prior
from refseg_lib.models.registry import list_models, model_settings, model_takes
from refseg_lib.paths import atomic_write_text, checkpoints_dir
from refseg_lib.postprocess import MCN_THRESHOLD
from refseg_lib.records import (
    NAME_CHARACTERS,
    RunRecord,
    count_parameters,
    hardware_info,
    pack_mask,
    safe_part,
    write_run_record,
)
from refseg_lib.reference import REFERENCE_PREDICTORS, reference_meters


@dataclass(frozen=True)
class Profile:
    """Data sizes and the training budget shared by every model of a profile."""

    name: str
    image_size: int  # ShapeRef side / letterbox size of real images
    train_samples: int | None  # ShapeRef samples per training epoch (None: the whole split)
    eval_samples: int | None  # samples per evaluation split (None: the whole split)
    train: TrainConfig = field(default_factory=TrainConfig)
    curve_points: int = 10  # evaluations during training (the record's learning curve)
    curve_samples: int = 200  # the first samples of the first evaluation split they score
    start_at_prior: bool = False  # mask logits start at the training masks' foreground share


PROFILES = {
    # CPU, minutes: what a laptop and `make reproduce` run. One recipe for every model (each keeps
    # its paper's loss), so that quick-profile comparisons are fair; each system trains for the
    # budget its learning curve justifies (DMN_STAGE_STEPS, CMSA_STEPS ... below; this
    # max_steps: Only VM and LSTM-CNN). Batches of 16: for the same samples seen, twice the
    # updates of batches of 32 at about the same cost (32,000 samples, val overall IoU: LSTM-CNN
    # 46.3 against 43.2, M3Att 47.6 against 45.8). AdamW at 3e-3 (decoupled weight decay
    # 1e-4), a linear warm-up over 100 steps (a fifth of a shorter run), then half a cosine
    # down to 0, and the mask logits' bias started at the training masks' foreground share
    # (start_at_prior).
    # Each choice is measured by benchmarks/recipe_check.py (reports/recipe.md, notebook 00b): a
    # rate of 1e-2 helps LSTM-CNN a little but breaks M3Att, so every model keeps 3e-3.
    "quick": Profile("quick", image_size=80, train_samples=20000, eval_samples=500,
                     train=TrainConfig(max_steps=1200, batch_size=16, optimizer="adamw", lr=3e-3,
                                       weight_decay=1e-4, schedule="cosine", warmup_steps=100,
                                       grad_clip=5.0, log_every=50, checkpoint_every=500),
                     start_at_prior=True),
    # GPU, real data: the models' own paper hyperparameters override the optimiser settings.
    "paper": Profile("paper", image_size=320, train_samples=None, eval_samples=None,
                     train=TrainConfig(max_steps=100_000, batch_size=16, lr=2.5e-4,
                                       schedule="poly", min_lr=1e-5, log_every=100,
                                       checkpoint_every=2000, eval_every=5000)),
}


# The paper profile's optimiser settings where a paper gives its own (over PROFILES["paper"]).
PAPER_TRAIN = {
    # CMSA sec. 4.1 and the official code: Adam 2.5e-4, weight decay 5e-4 on weights only,
    # biases at 2x lr, poly 0.9 down to 1e-5
    "cmsa": dict(lr=2.5e-4, weight_decay=5e-4, decay_biases=False, bias_lr_factor=2.0,
                 schedule="poly", poly_power=0.9, min_lr=1e-5),
    # MCN sec. 4.3: Adam 1e-3, batch 35, 45 epochs, x0.1 at epochs 30, 35 and 40; epochs of
    # RefCOCO's 120,624 training expressions (3,447 steps of 35)
    "mcn": dict(lr=1e-3, batch_size=35, schedule="step", max_steps=45 * 3447,
                milestones=(30 * 3447, 35 * 3447, 40 * 3447), gamma=0.1),
    # RIS, official code (bernard24/RIS, plants): Adam 1e-4 at a constant rate for 100k
    # iterations, each gradient element clamped to +-5 (ours clips the norm at 5); its batch of
    # one image is the profile's 16 here (a batched GPU run)
    "ris": dict(lr=1e-4, grad_clip=5.0, schedule="constant", max_steps=100_000),
}

# The paper profile's image side where a paper gives its own (over PROFILES["paper"]).
PAPER_IMAGE_SIZE = {"mcn": 416,  # MCN sec. 4.3 (YOLOv3's input)
                    "m3att": 480}  # our guess: the authors' ReLA/GRES setting (CVPR 2023)


# Extra metrics of a trained model on one split: (net, train_set, eval_set, collate) -> metrics
Analysis = Callable[[nn.Module, Dataset, Dataset, Collate], dict[str, float]]


@dataclass
class Experiment:
    """What ``run_experiment`` returns: the trained model and everything needed to reuse it."""

    model: nn.Module
    vocabulary: Vocabulary
    collate: Collate
    train: TrainResult
    evaluations: dict[str, EvalResult]
    records: list[Path]
    checkpoint: Path  # where training kept (and resumes from) its state


def get_profile(name: str, model: str | None = None) -> Profile:
    """The profile ``name``; with ``model``, at that model's own paper image size if it has
    one (``PAPER_IMAGE_SIZE``), as ``run_experiment`` trains it."""
    if name not in PROFILES:
        raise ValueError(f"unknown profile {name!r}; choose one of {', '.join(PROFILES)}")
    if name == "paper" and model in PAPER_IMAGE_SIZE:
        return dataclasses.replace(PROFILES[name], image_size=PAPER_IMAGE_SIZE[model])
    return PROFILES[name]


def load_split(dataset: str, split: str, profile: Profile, *, style: str = "refshape",
               num_samples: int | None = None, seed: int = 0, root: str | Path | None = None,
               split_by: str | None = None, image_root: str | Path | None = None,
               task: str | None = None):
    """One split of ``dataset`` at the profile's image size (ShapeRef or a REFER dataset, read
    from ``root`` / ``image_root`` with the split scheme ``split_by``); ``task``
    (``data.instances.QUERIES``) turns it into an instance task (notebook 08)."""
    if dataset == "shapes":
        data = build_dataset("shapes", split=split, style=style, num_samples=num_samples,
                             image_size=profile.image_size, seed=seed)
    else:
        data = build_dataset(dataset, split=split, root=root, split_by=split_by,
                             image_root=image_root, transform=Letterbox(profile.image_size))
    return data if task is None else InstanceTask(data, task, seed=seed)


def check_data(dataset: str, splits: Sequence[str], *, style: str = "refshape",
               root: str | Path | None = None, split_by: str | None = None,
               image_root: str | Path | None = None, cli: bool = False) -> str:
    """Check, before any training, that every split of ``splits`` can be read (ShapeRef: the
    style and split names; a REFER dataset: the data root, split scheme, splits and the images
    of the first refs of each, ``data.refer_check``); an error that says what to do
    otherwise (``refer_check.DataError``, also a ``FileNotFoundError``). Returns the
    benchmark's variant: the ShapeRef style, or the REFER split scheme
    (what records and checkpoints are named by)."""
    from refseg_lib.data.refer_check import DataError, check, locate

    if dataset == "shapes":
        from refseg_lib.data.shapes import SPLITS, STYLES

        option = "--eval-splits" if cli else "eval_splits="
        if style not in STYLES:
            raise DataError(f"unknown ShapeRef style {style!r}; valid: {', '.join(STYLES)}")
        unknown = [s for s in splits if s not in SPLITS]
        if unknown:
            raise DataError(f"ShapeRef has no split {', '.join(map(repr, unknown))}; its splits:"
                            f" {', '.join(SPLITS)} (e.g. {option} val testA testB)")
        return style

    location = locate(dataset, root, split_by, image_root, cli=cli)
    check(location, splits)
    return location.split_by


class SettingError(ValueError):
    """A setting of a run (model, variant name, model configuration, starting checkpoint) that
    cannot be used; the message says what to do."""


# A run's name becomes part of file names: the characters ``records.safe_part`` keeps, not
# starting with a dot (``check_name``).
NAME = re.compile(f"(?!\\.)[{NAME_CHARACTERS}]+")


def check_name(value: str, option: str = "variant=") -> str:
    """``value`` if it can name a run's files as it is; else a ``SettingError`` that says what
    to type (``option``: the setting as the user gave it, e.g. ``--variant``)."""
    if not isinstance(value, str) or not NAME.fullmatch(value):
        cleaned = re.sub(r"[^A-Za-z0-9_+]+", "-", str(value)).strip("-") or "base"
        raise SettingError(f"{option} {value!r} cannot name a run: a run's name becomes part of "
                           "its checkpoint's and records' file names, so it may hold only "
                           "letters, digits and . _ + - (and not start with a dot), e.g. "
                           f"{option} {cleaned}")
    return value


def checkpoint_path(model: str, variant: str, dataset: str, style: str, profile: str) -> Path:
    """Where a run keeps its checkpoint (ignored by git); rerunning resumes from it. ``style``:
    the ShapeRef style or the REFER split scheme. Each part is cleaned as a record's file name
    is (``records.safe_part``), so the file lies in the checkpoint folder whatever the names."""
    benchmark = f"{dataset}-{style}" if style else dataset
    parts = [safe_part(p) for p in (model, variant, benchmark, profile)]
    return checkpoints_dir() / f"{'__'.join(parts).lstrip('.')}.pt"


# A model's settings that every run sets itself (``run_experiment``), never a user's config.
RUN_SET = frozenset({"vocab_size", "words", "profile"})


def check_model_config(model: str, config: Mapping | None, profile: str = "quick", *,
                       option: str = "model_config=") -> dict:
    """``config`` (a model's settings, e.g. ``{"dropout": 0.2}``) as a dict, once ``model``
    has been built with it; otherwise a ``SettingError`` naming the setting at fault (a
    misspelled key gets the closest settings of the model) and listing the model's settings.
    ``option``: how the user gave it (``--model-config``)."""
    if model not in list_models():
        close = difflib.get_close_matches(model, list_models(), n=1)
        raise SettingError(f"unknown model {model!r}" + (f" (did you mean {close[0]!r}?)"
                           if close else "") + f"; the course's models: "
                           f"{', '.join(list_models())}")
    if config is None:
        return {}
    if not isinstance(config, Mapping):
        raise SettingError(f"{option} must be a JSON object of {model}'s settings, e.g. "
                           f"{{\"dropout\": 0.2}}; got {type(config).__name__} {config!r}")
    config = dict(config)
    reserved = sorted(set(config) & RUN_SET)
    if reserved:
        raise SettingError(f"{option} sets {' and '.join(reserved)}, which the run sets "
                           "itself (from its vocabulary and profile): leave "
                           f"{'it' if len(reserved) == 1 else 'them'} out")
    try:
        build_for(model, profile, Vocabulary(["the"]), config)
    except (TypeError, ValueError, KeyError) as error:
        known = [k for k in model_settings(model) if k not in RUN_SET]
        hints = []
        for key in config:
            if key not in known:
                close = difflib.get_close_matches(key, known, n=1)
                hints.append(f"{key!r} is not a setting of {model}" +
                             (f" (did you mean {close[0]!r}?)" if close else ""))
        raise SettingError(f"{option} {json.dumps(config)} does not build {model}: "
                           f"{'; '.join(hints) or error}. {model}'s settings: "
                           f"{', '.join(known)}") from error
    return config


def build_for(model: str, profile: str, vocabulary: Vocabulary, config: Mapping) -> nn.Module:
    """The registered ``model`` with its settings ``config``, sized for ``vocabulary`` (and
    given its words, for a model with a pretrained word encoder)."""
    words = {"words": tuple(vocabulary.itos)} if model_takes(model, "words") else {}
    return build_model(model, profile=profile, vocab_size=len(vocabulary), **words, **config)


def check_init_from(init_from: str | Path | None, option: str = "init_from=") -> Path | None:
    """The starting checkpoint ``init_from`` if it is a file; else a ``SettingError``."""
    if init_from is None:
        return None
    path = Path(init_from)
    if not path.is_file():
        example = checkpoint_path("dmn", "base-lowres", "shapes", "refshape", "quick")
        raise SettingError(
            f"{option} {path}: no such file. It takes the checkpoint of an earlier run (a .pt "
            f"that training wrote, e.g. {example}): train that run first, or correct the path")
    return path


def run_settings(model: str, model_config: Mapping, dataset: str, benchmark: str,
                 task: str | None, profile: Profile, train_set: Dataset, vocabulary: Vocabulary,
                 seed: int) -> dict:
    """What decides a run besides its ``TrainConfig``, kept in its checkpoint: resuming with
    anything else is refused (``engine.check_resumable``)."""
    words = hashlib.sha256("\n".join(vocabulary.itos).encode("utf-8")).hexdigest()[:12]
    return {"model": model, "model_config": dict(model_config), "dataset": dataset,
            "benchmark": benchmark, "task": task, "image_size": profile.image_size,
            "train_samples": len(train_set), "data_seed": seed,
            "vocabulary": f"{len(vocabulary)} words, sha256 {words}"}


def run_experiment(model: str, *, variant: str = "base", dataset: str = "shapes",
                   style: str = "refshape", profile: str = "quick",
                   eval_splits: tuple[str, ...] = ("val",), model_config: dict | None = None,
                   train_overrides: dict | None = None, seed: int = 0,
                   root: str | Path | None = None, split_by: str | None = None,
                   image_root: str | Path | None = None, source: str = "", resume: bool = True,
                   init_from: str | Path | None = None, write_records: bool = True,
                   progress: bool = True, eval_samples: int | None = None,
                   eval_settings: dict[str, dict] | None = None,
                   analysis: Analysis | None = None, task: str | None = None,
                   examples: Sequence[int] = ()) -> Experiment:
    """Train ``model`` (a registry name) on ``dataset`` and evaluate it on ``eval_splits``.

    ``model_config`` goes to ``build_model`` (the variant's flags); ``train_overrides`` replaces
    fields of the profile's ``TrainConfig`` (e.g. ``{"max_steps": 200}``; ``{"seed": 1}``
    changes the batch order and dropout while the data and initial weights follow ``seed``);
    ``init_from`` is the checkpoint of an earlier stage to start from (``checkpoint_path(...)``
    of that run), loaded where names and shapes match (the run's own checkpoint, when
    resuming, takes precedence).
    ``eval_samples`` caps each evaluation split (default: the profile's). ``eval_settings``
    evaluates the trained model again with attributes set, each recorded as the variant plus
    its key: ``{"+roi": {"postprocess": "roi"}}`` (MCN's Table 1), in ``evaluations`` under
    ``"val+roi"``. ``analysis(net, train_set, eval_set, collate)`` returns extra metrics recorded
    beside each split's evaluation (M3Att's word-recovery probe). ``task`` replaces the
    referent by a set of instances (``data.instances.InstanceTask``: ``"all"``, ``"plural"``),
    for the recurrent instance segmentation of notebook 08. ``examples`` (indices into the
    first evaluation split) records the predicted masks of those samples in that split's
    records (``RunRecord.examples``, notebook 09's qualitative grid). A model with its own
    objective defines ``training_loss(output, batch)`` (MCN's eq. 12); the others train on
    ``losses.mask_bce``. A REFER ``dataset`` is read from ``root`` and ``image_root`` with the
    split scheme ``split_by`` (``data.refer.ReferDataset``'s defaults), the scheme naming its
    records and checkpoint as the style does ShapeRef's; ``check_data`` runs first, so a wrong
    root, scheme, split or image folder stops the run before its first step.
    """
    check_name(variant)
    model_config = check_model_config(model, model_config, profile)
    check_init_from(init_from)
    style = check_data(dataset, ("train", *eval_splits), style=style, root=root,
                       split_by=split_by, image_root=image_root)
    data = dict(style=style, seed=seed, root=root, split_by=split_by, image_root=image_root,
                task=task)
    chosen = get_profile(profile, model)
    paper = PAPER_TRAIN.get(model, {}) if profile == "paper" else {}
    config = dataclasses.replace(chosen.train, **{"seed": seed, **paper, **(train_overrides or {})})
    if config.warmup_steps > config.max_steps // 5:  # a short run (DMN's second stage)
        config = dataclasses.replace(config, warmup_steps=config.max_steps // 5)
    if config.eval_every is None and chosen.curve_points:  # the learning curve's points
        config = dataclasses.replace(
            config, eval_every=max(1, math.ceil(config.max_steps / chosen.curve_points)))
    train_set = load_split(dataset, "train", chosen, num_samples=chosen.train_samples, **data)
    curve_set = load_split(dataset, eval_splits[0], chosen, num_samples=chosen.curve_samples,
                           **data) if eval_splits and chosen.curve_points else None
    vocabulary = Vocabulary.build(train_set.sentences)
    collate = Collate(vocabulary, dataset=dataset)
    seed_everything(seed)  # the initial weights depend on the seed alone, not on earlier draws
    net = build_for(model, profile, vocabulary, model_config)
    if chosen.start_at_prior and getattr(net, "MASK_LOGIT_BIASES", ()):
        start_at_prior(net, foreground_share(train_set))
    initialised = [] if init_from is None else init_weights_from(net, init_from)
    path = checkpoint_path(model, variant, dataset, style, profile)
    settings = run_settings(model, model_config, dataset, style, task, chosen, train_set,
                            vocabulary, seed)
    main = distributed_env().is_main  # under torchrun, rank 0 evaluates and records
    with checkpoint_lock(path) if main else nullcontext():  # one run on a checkpoint at a time
        if not resume and path.exists():
            path.unlink()
        result = fit(net, train_set, collate, config, checkpoint_path=path, progress=progress,
                     loss_fn=getattr(net, "training_loss", mask_bce), val_set=curve_set,
                     settings=settings)
        if not main:
            return Experiment(net, vocabulary, collate, result, {}, [], path)
        atomic_write_text(path.with_suffix(".vocab.json"), json.dumps(vocabulary.state_dict()))
        evaluations, records = {}, []
        for split in eval_splits:
            eval_set = load_split(dataset, split, chosen,
                                  num_samples=eval_samples or chosen.eval_samples, **data)
            for key, setting in (eval_settings or {"": {}}).items():
                defaults = {name: getattr(net, name) for name in setting}
                try:
                    for name, value in setting.items():
                        setattr(net, name, value)
                    evaluation = evaluate(net, eval_set, collate,
                                          batch_size=config.eval_batch_size,
                                          thresholds=config.eval_thresholds, progress=progress)
                    shown = predicted_examples(net, eval_set, collate, examples) if (
                        examples and split == eval_splits[0]) else {}  # under the same setting
                finally:
                    for name, value in defaults.items():
                        setattr(net, name, value)
                evaluations[split + key] = evaluation
                if analysis is not None and not key:
                    evaluation.summary.update(analysis(net, train_set, eval_set, collate))
                if not write_records:
                    continue
                record = RunRecord(
                    model=model, variant=variant + key, dataset=dataset, style=style,
                    split=split, profile=profile,
                    config={"train": config.to_dict(), "model": model_config or {},
                            "evaluation": setting, "task": task,
                            "init_from": None if init_from is None else Path(init_from).name,
                            "initialised_tensors": len(initialised),
                            "image_size": chosen.image_size, "train_samples": len(train_set),
                            "eval_samples": len(eval_set), "vocabulary": len(vocabulary)},
                    metrics={**evaluation.summary, **tag_record_metrics(evaluation.by_tag)},
                    train_time_s=result.train_time_s,
                    eval_time_s=evaluation.eval_time_s, samples_per_s=result.samples_per_s,
                    params=count_parameters(net), hardware=hardware_info(), source=source,
                    examples=shown, curve=learning_curve(result))
                records.append(write_run_record(record))
        return Experiment(net, vocabulary, collate, result, evaluations, records, path)


def foreground_share(dataset: Dataset, num_samples: int = 500) -> float:
    """The fraction of pixels inside the referent's mask over the first ``num_samples``
    samples of ``dataset`` (the prior ``models.common.start_at_prior`` starts the logits at)."""
    masks = [dataset[i].mask for i in range(min(num_samples, len(dataset)))]
    return float(sum(m.float().mean() for m in masks) / len(masks))


CURVE_METRICS = ("overall_iou", "mean_iou", "Pr@0.5", "count_acc")


def learning_curve(result: TrainResult) -> list[dict[str, float]]:
    """The run record's learning curve: step and ``CURVE_METRICS`` (those the model has) of
    each evaluation during training."""
    return [{"step": row["step"], **{k: row[k] for k in CURVE_METRICS if k in row}}
            for row in result.val_history]


def predicted_examples(net: nn.Module, dataset: Dataset, collate: Collate,
                       indices: Sequence[int]) -> dict[str, str]:
    """The masks ``net`` predicts (probability > 0.5) for ``dataset[i]``, ``i`` in ``indices``,
    packed for a run record: sample id -> ``records.pack_mask``; indices past the end of
    ``dataset`` (a capped evaluation) are left out."""
    indices = [i for i in indices if i < len(dataset)]
    if not indices:
        return {}
    batch = collate([dataset[i] for i in indices])
    masks = predict(net, batch.images, batch.tokens, batch.lengths) > PRIMARY_THRESHOLD
    return {sample_id: pack_mask(mask) for sample_id, mask in
            zip(batch.sample_ids, masks, strict=True)}


REFERENCE_VARIANTS = {kind: kind.replace(" ", "_") for kind in REFERENCE_PREDICTORS}


def run_reference(*, style: str = "refshape", profile: str = "quick",
                  eval_splits: Sequence[str] = ("val",), seed: int = 0,
                  eval_samples: int | None = None, source: str = "",
                  **_: object) -> list[Path]:
    """Score the untrained reference predictors (``reference``: the largest object and the
    category reader, floors; the resolver, the ceiling) on the evaluation samples a trained
    model meets (the profile's image size and sample count), recorded as runs of the model
    ``"reference"`` (variants ``largest_object``, ``category_reader``, ``resolver``) so that
    every table can show them beside ours. ShapeRef only: they read its symbolic scenes."""
    chosen = get_profile(profile)
    thresholds = (PRIMARY_THRESHOLD, MCN_THRESHOLD)  # a binary answer: the same at both
    paths = []
    for split in eval_splits:
        samples = eval_samples or chosen.eval_samples
        meters = reference_meters(split, style=style, image_size=chosen.image_size,
                                  num_samples=samples, seed=seed, thresholds=thresholds)
        for kind, meter in meters.items():
            by_tag = meter.by_tag(category_only=True)
            record = RunRecord(
                model="reference", variant=REFERENCE_VARIANTS[kind], dataset="shapes",
                style=style, split=split, profile=profile,
                config={"image_size": chosen.image_size, "eval_samples": len(meter),
                        "predictor": kind},
                metrics={**meter.summary(), **tag_record_metrics(by_tag)}, train_time_s=0.0,
                params=0, hardware=hardware_info(), source=source)
            paths.append(write_run_record(record))
    return paths


# Budgets of the quick profile (training steps of batch 16): what `make reproduce` can train for
# every run of every table within 90 minutes on two cores (the plan: plan.plan_jobs). Each
# system's curve in its records says how far training had got (notebook 09 plots them), and
# benchmarks/budget_check.py sets each full model beside a run twice as long.
#
# DMN's two training stages (sec. 4.3; official README: 24 epochs at low resolution, then 4 with
# the upsampling module): quick profile about the same ratio, 900 + 150 steps, each stage with
# the profile's recipe.
DMN_STAGE_STEPS = {"quick": (900, 150), "paper": (None, None)}


def run_dmn(variant: str = "base", *, profile: str = "quick",
            stage_steps: tuple[int | None, int | None] | None = None, suffix: str = "",
            train_overrides: dict | None = None, **kwargs) -> tuple[Experiment, Experiment]:
    """DMN's two stages for one ``VARIANTS`` entry: low resolution (no UM), then with the UM.

    Stage 1 is recorded as ``<variant>-lowres`` (``no_skip`` shares ``base-lowres``: the
    variants differ only in the UM); stage 2, started from stage 1's weights, as ``<variant>``.
    ``suffix`` is appended to both names (e.g. ``"-live"`` for runs that must not touch the
    recorded ones); ``stage_steps`` overrides the step counts; ``kwargs`` go to both
    ``run_experiment`` calls.
    """
    from refseg_lib.models.dmn import VARIANTS

    if variant not in VARIANTS:
        raise ValueError(f"unknown DMN variant {variant!r}; choose one of {', '.join(VARIANTS)}")
    flags = VARIANTS[variant][0]
    low_flags = {k: v for k, v in flags.items() if k != "skip_connections"}
    names = ("base" if variant == "no_skip" else variant) + "-lowres" + suffix, variant + suffix
    configs = {**low_flags, "upsampling": False}, flags
    stages: list[Experiment] = []
    for name, config, steps in zip(names, configs, stage_steps or DMN_STAGE_STEPS[profile],
                                   strict=True):
        overrides = dict(train_overrides or {})
        if steps is not None:
            overrides["max_steps"] = steps
        init = stages[0].checkpoint if stages else None
        stages.append(run_experiment("dmn", variant=name, profile=profile, model_config=config,
                                     train_overrides=overrides, init_from=init, **kwargs))
    return stages[0], stages[1]


# CMSA quick profile: 700 steps for each of its eleven variants: the cross-modal self-attention
# over every (word, pixel) pair makes its step the costliest of the course (benchmarks/
# step_profile.py); notebook 05 says so beside every comparison.
CMSA_STEPS = {"quick": 700, "paper": None}


def _run_variant(model: str, label: str, variants: dict, variant: str, steps: int | None, *,
                 profile: str, suffix: str, train_overrides: dict | None,
                 model_config: dict | None, **kwargs) -> Experiment:
    """Run one ``variants`` entry of ``model`` (``label`` in errors) for ``steps`` (decay at
    80%; None: the profile's budget) unless ``train_overrides`` sets ``max_steps``; recorded as
    ``<variant><suffix>``."""
    if variant not in variants:
        raise ValueError(f"unknown {label} variant {variant!r}; choose one of "
                         f"{', '.join(variants)}")
    overrides = dict(train_overrides or {})
    if steps is not None and "max_steps" not in overrides:
        overrides["max_steps"] = steps
    return run_experiment(model, variant=variant + suffix, profile=profile,
                          model_config={**variants[variant][0], **(model_config or {})},
                          train_overrides=overrides, **kwargs)


def run_cmsa(variant: str = "base", *, profile: str = "quick", suffix: str = "",
             train_overrides: dict | None = None, model_config: dict | None = None,
             **kwargs) -> Experiment:
    """One CMSA ``VARIANTS`` entry (Tables 2 and 3), recorded as ``<variant><suffix>``;
    ``model_config`` adds to the variant's flags (e.g. ``{"pretrained": False}``); ``kwargs``
    go to ``run_experiment`` (``style="refshape+"``, ``eval_splits``, ...)."""
    from refseg_lib.models.cmsa import VARIANTS

    return _run_variant("cmsa", "CMSA", VARIANTS, variant, CMSA_STEPS[profile], profile=profile,
                        suffix=suffix, train_overrides=train_overrides,
                        model_config=model_config, **kwargs)


# MCN quick profile: 900 steps for each of its twelve runs; MCN's binarisation threshold 0.35 is
# evaluated beside the harness's 0.5.
MCN_STEPS = {"quick": 900, "paper": None}
MCN_POSTPROCESS = {"+roi": {"postprocess": "roi"}, "+soft_nls": {"postprocess": "soft_nls"},
                   "+asnls": {"postprocess": "asnls"}}


def run_mcn(variant: str = "base", *, profile: str = "quick", suffix: str = "",
            train_overrides: dict | None = None, model_config: dict | None = None,
            **kwargs) -> Experiment:
    """One MCN ``VARIANTS`` entry (Tables 2 and 3), recorded as ``<variant><suffix>`` and
    evaluated at 0.5 and 0.35; a run with both a box and a mask is also evaluated with each
    post-processing of Table 1 (records ``<variant><suffix>+roi``, ``+soft_nls``, ``+asnls``).
    ``model_config`` adds to the variant's flags; ``kwargs`` go to ``run_experiment``."""
    from refseg_lib.models.mcn import VARIANTS
    from refseg_lib.postprocess import MCN_THRESHOLD

    flags = {**VARIANTS.get(variant, ({}, ""))[0], **(model_config or {})}
    both = flags.get("rec_scale", "13") is not None and flags.get("res_scale", "52") is not None
    settings = {"": {}, **MCN_POSTPROCESS} if both else None
    overrides = {"eval_thresholds": (0.5, MCN_THRESHOLD), **(train_overrides or {})}
    return _run_variant("mcn", "MCN", VARIANTS, variant, MCN_STEPS[profile], profile=profile,
                        suffix=suffix, train_overrides=overrides, model_config=model_config,
                        eval_settings=settings, **kwargs)


# M3Att quick profile: 900 steps for each ablation row, as MCN's.
# The paper profile guesses the authors' later setting (ReLA/GRES: Swin-B + BERT at 480 px) and
# LAVT's optimiser (AdamW 5e-5, weight decay 1e-2, poly 0.9), the family M3Att compares with;
# the paper's own training details could not be read (notebook 07's design note).
M3ATT_STEPS = {"quick": 900, "paper": None}
M3ATT_VARIANTS = ("vanilla", "m3dec", "imi", "lfr", "lfr-minilm")


def run_m3att(variant: str = "lfr", *, profile: str = "quick", suffix: str = "",
              train_overrides: dict | None = None, model_config: dict | None = None,
              **kwargs) -> Experiment:
    """One row of the M3Att ablation (``models.m3att.VARIANTS``, plus ``"lfr-minilm"``: the
    full model on the pretrained MiniLM encoder), recorded as ``<variant><suffix>``."""
    from refseg_lib.models.m3att import VARIANTS

    # The quick profile's Adam at 1e-3 is 20-100 times the rates BERT-style encoders are
    # fine-tuned at: its MiniLM row keeps MiniLM fixed (which also costs 2.4x less time on a
    # CPU); the paper profile fine-tunes it at 5e-5.
    minilm = {**VARIANTS["lfr"][0], "text_encoder": "minilm", "freeze_text": profile == "quick"}
    variants = {**VARIANTS, "lfr-minilm": (minilm, "+LFR, MiniLM words")}
    kwargs.setdefault("analysis", word_recovery_analysis())
    return _run_variant("m3att", "M3Att", variants, variant, M3ATT_STEPS[profile], profile=profile,
                        suffix=suffix, train_overrides=train_overrides,
                        model_config=model_config, **kwargs)


PROBE_TRAIN_SAMPLES = 2000  # training expressions the word-recovery probes are fitted on


def word_recovery_analysis() -> Analysis:
    """An analysis for one run: ``models.m3att.word_recovery``'s probes fitted once, on the
    first ``PROBE_TRAIN_SAMPLES`` training samples, then scored on each evaluation split (the
    records' ``word_recovery`` metrics)."""
    from refseg_lib.models.m3att import fit_word_probes, word_recovery

    fitted: dict = {}

    def analysis(net, train_set, eval_set, collate) -> dict[str, float]:
        vocab_size = len(collate.vocabulary)
        if "probes" not in fitted:
            fit_on = Subset(train_set, range(min(PROBE_TRAIN_SAMPLES, len(train_set))))
            fitted["probes"] = fit_word_probes(net, fit_on, collate, vocab_size)
        return word_recovery(net, None, eval_set, collate, vocab_size, probes=fitted["probes"])

    return analysis


# Recurrent instance segmentation, quick profile: 800 steps in all for every run; with the
# curriculum (sec. 4), the first RIS_CURRICULUM_STEPS of them unroll two steps per image and the
# rest n + 2, so both arms of notebook 08's comparison see the same number of updates. A
# ConvLSTM unrolled 8 times is a slow step on a CPU.
RIS_STEPS = {"quick": 800, "paper": None}
RIS_CURRICULUM_STEPS = {"quick": 250, "paper": 20_000}


def run_ris(task: str = "all", *, curriculum: bool = True, profile: str = "quick",
            steps: int | None = None, curriculum_steps: int | None = None, suffix: str = "",
            train_overrides: dict | None = None, model_config: dict | None = None,
            **kwargs) -> Experiment:
    """Recurrent instance segmentation on the instance task ``task`` (``"all"``: every object,
    unconditioned; ``"plural"``: the objects an "all the red shapes" expression selects, with the
    sentence-conditioned model), recorded as ``<task>[-curriculum]<suffix>``.

    With ``curriculum``, stage 1 (``<task>-stage1<suffix>``) unrolls two steps per image for
    ``curriculum_steps``, and stage 2 starts from its weights with n + 2 steps for the rest of
    ``steps``. ``engine.evaluate`` adds the instance metrics to each record's metrics.
    ``kwargs`` go to ``run_experiment`` (``eval_splits``, ``source``, ...).
    """
    total = steps or RIS_STEPS[profile]
    first = (curriculum_steps or RIS_CURRICULUM_STEPS[profile]) if curriculum else 0
    config = {"conditioned": task == "plural", **(model_config or {})}
    # (name, extra model config, steps): stage 1 unrolls two steps, the last stage n + 2
    stages = [(f"{task}-stage1{suffix}", {"train_steps": 2}, first)] if curriculum else []
    final = f"{task}{'-curriculum' if curriculum else ''}{suffix}"
    stages.append((final, {}, None if total is None else total - first))
    experiment = None
    for name, extra, budget in stages:
        overrides = dict(train_overrides or {})
        if budget is not None:
            overrides["max_steps"] = budget
        experiment = run_experiment(
            "ris", variant=name, profile=profile, task=task, model_config={**config, **extra},
            train_overrides=overrides, init_from=experiment.checkpoint if experiment else None,
            **kwargs)
    return experiment


# The leaderboard (notebook 09): every system in the same harness (ShapeRef, the profile's image
# size, small_cnn, batch and recipe), each for its own budget (the steps its learning curve
# justifies), in each expression style. Its refshape rows are the ablation notebooks' full models
# (one run, one number everywhere); ``plan.plan_jobs`` trains the other styles.
LEADERBOARD_STYLES = ("refshape", "refshape+", "refshape-g")
LEADERBOARD_SPLITS = ("val", "testA", "testB")
# system -> (registry name, the recorded variant the leaderboard reads): each system's full model
# (DMN after its second stage, MCN's mask after ASNLS, M3Att with IMI and LFR)
LEADERBOARD = {
    "Only VM": ("only_vm", "base"),
    "LSTM-CNN": ("lstm_cnn", "base"),
    "DMN": ("dmn", "base"),
    "CMSA+GF": ("cmsa", "base"),
    "MCN": ("mcn", "cem+asnls"),
    "M3Att": ("m3att", "lfr"),
}
# val samples whose predicted masks the full models' records keep (notebook 09's grid)
LEADERBOARD_EXAMPLES = tuple(range(0, 480, 60))
# RIS segments every object of a scene (no sentence): its own task, notebook 08's curriculum run
LEADERBOARD_RIS = ("ris", "all-curriculum")


# A run trained for twice its budget (plan.budget_jobs), recorded as <variant>-2x.
DOUBLE_SUFFIX = "-2x"


def recipe_steps(model: str, variant: str = "base", profile: str = "quick") -> int:
    """Training steps the course's recipe gives the run ``model`` / ``variant`` in ``profile``,
    all its stages: what a record's whole budget (``reports.whole_budget``) is measured against,
    so that a run trained for less is reported as short.

    A first stage's record has its stage's budget (DMN's ``-lowres``: the first of
    ``DMN_STAGE_STEPS``; RIS's ``-stage1``: ``RIS_CURRICULUM_STEPS``); a ``-2x``
    variant (``budget_jobs``) twice the budget; other suffixes (``-seed1``, MCN's ``+asnls``)
    none. A step count the profile leaves open (None) is the profile's ``max_steps``, in the
    paper profile the paper's own (``PAPER_TRAIN``). The untrained reference
    predictors have 0.
    """
    if model == "reference":
        return 0
    paper = PAPER_TRAIN.get(model, {}) if profile == "paper" else {}
    default = paper.get("max_steps") or get_profile(profile).train.max_steps
    if model == "dmn":
        stages = DMN_STAGE_STEPS[profile]
        steps = sum(s or default for s in (stages[:1] if "-lowres" in variant else stages))
    elif model == "ris":
        first = RIS_CURRICULUM_STEPS[profile]
        total = RIS_STEPS[profile]
        steps = first if "-stage1" in variant else total or (
            first + default if "-curriculum" in variant else default)
    else:
        fixed = {"cmsa": CMSA_STEPS, "mcn": MCN_STEPS,
                 "m3att": M3ATT_STEPS}.get(model, {})
        steps = fixed.get(profile) or default
    return 2 * steps if DOUBLE_SUFFIX in variant else steps
