"""The training engine: exact resume, seeds, checkpoints, schedules, evaluation, run records.

Everything runs on CPU with a tiny model on 32-pixel ShapeRef scenes (a few seconds in all).
``TinyReferModel`` and ``tiny_data`` are also used by the DDP worker (tests/ddp_worker.py).
"""

from __future__ import annotations

import json
import math
from types import SimpleNamespace

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from refseg_lib.data import Collate, Vocabulary, build_dataset
from refseg_lib.engine import (
    CheckpointError,
    TrainConfig,
    autocast_dtype,
    build_optimizer,
    epochs_to_steps,
    evaluate,
    fit,
    load_checkpoint,
    make_loader,
    pick_device,
    predict,
    set_loader_epoch,
    steps_per_epoch,
)
from refseg_lib.losses import mask_bce, resize_logits
from refseg_lib.models import ModelOutput
from refseg_lib.paths import atomic_write
from refseg_lib.records import (
    RunRecord,
    count_parameters,
    load_run_records,
    read_run_record,
    write_run_record,
)

IMAGE_SIZE = 32


class TinyReferModel(nn.Module):
    """A strided conv over the image gated by the mean word embedding: logits at half size.

    The dropout makes the run depend on torch's random state, which resuming must restore.
    """

    def __init__(self, vocab_size: int, dim: int = 8, dropout: float = 0.1):
        super().__init__()
        self.embed = nn.Embedding(vocab_size, dim, padding_idx=0)
        self.conv = nn.Conv2d(3, dim, 3, stride=2, padding=1)
        self.drop = nn.Dropout(dropout)
        self.head = nn.Conv2d(dim, 1, 1)

    def forward(self, images, tokens, lengths) -> ModelOutput:
        words = self.embed(tokens).sum(dim=1) / lengths[:, None]  # (B, D)
        pixels = torch.relu(self.conv(images))  # (B, D, H/2, W/2)
        fused = self.drop(pixels * torch.tanh(words)[:, :, None, None])
        return ModelOutput(mask_logits=self.head(fused)[:, 0])  # (B, H/2, W/2)


def tiny_data(num_train: int = 40, num_val: int = 16) -> SimpleNamespace:
    """ShapeRef train/val samples, rendered once and kept in lists, and their collate."""
    train = build_dataset("shapes", split="train", num_samples=num_train, image_size=IMAGE_SIZE)
    val = build_dataset("shapes", split="val", num_samples=num_val, image_size=IMAGE_SIZE)
    vocabulary = Vocabulary.build(train.sentences)
    return SimpleNamespace(train=[train[i] for i in range(len(train))],
                           val=[val[i] for i in range(len(val))],
                           collate=Collate(vocabulary), vocab_size=len(vocabulary))


def tiny_model(vocab_size: int, init_seed: int = 0, **kwargs) -> TinyReferModel:
    torch.manual_seed(init_seed)
    return TinyReferModel(vocab_size, **kwargs)


@pytest.fixture(scope="module")
def data() -> SimpleNamespace:
    return tiny_data()


def _fit(data, config, **kwargs):
    model = kwargs.pop("model", None) or tiny_model(data.vocab_size)
    result = fit(model, data.train, data.collate, config, progress=False, **kwargs)
    return model, result


class Killed(Exception):
    """Stands for the process being killed."""


def _kill_at(step_to_kill: int):
    def callback(step, state):
        if step == step_to_kill:
            raise Killed(f"killed after step {step}")

    return callback


def _assert_state_equal(a, b, where=""):
    """Nested dicts / lists of tensors and numbers are equal, tensors bit for bit."""
    if isinstance(a, torch.Tensor):
        assert torch.equal(a, b), where
    elif isinstance(a, dict):
        assert a.keys() == b.keys(), where
        for key in a:
            _assert_state_equal(a[key], b[key], f"{where}/{key}")
    elif isinstance(a, (list, tuple)):
        assert len(a) == len(b), where
        for i, (x, y) in enumerate(zip(a, b, strict=True)):
            _assert_state_equal(x, y, f"{where}[{i}]")
    else:
        assert a == b, where


# ---------------------------------------------------------------------------------------------
# Resume, seeds, checkpoints
# ---------------------------------------------------------------------------------------------

# 40 samples in batches of 8: 5 steps per epoch, so 12 steps cross two epoch boundaries.
RESUME_CONFIG = dict(max_steps=12, batch_size=8, lr=1e-2, schedule="plateau", eval_every=4,
                     checkpoint_every=4, log_every=1, grad_clip=1.0, seed=3)


@pytest.mark.parametrize("kill_step", [6, 11])
def test_killed_and_resumed_run_is_bit_identical(data, tmp_path, kill_step):
    config = TrainConfig(**RESUME_CONFIG)
    model_a, result_a = _fit(data, config, val_set=data.val, checkpoint_path=tmp_path / "a.pt")

    path_b = tmp_path / "b.pt"
    with pytest.raises(Killed):  # killed between checkpoints: the resume repeats some steps
        _fit(data, config, val_set=data.val, checkpoint_path=path_b,
             callbacks=[_kill_at(kill_step)])
    saved = load_checkpoint(path_b)["progress"]
    assert saved["step"] == 4 * (kill_step // 4) < kill_step

    other_init = tiny_model(data.vocab_size, init_seed=99)  # overwritten by the checkpoint
    model_b, result_b = _fit(data, config, val_set=data.val, checkpoint_path=path_b,
                             model=other_init)
    assert result_b.resumed_from == saved["step"] and result_b.steps == 12
    for name, tensor in model_a.state_dict().items():
        assert torch.equal(tensor, model_b.state_dict()[name]), name
    final_a, final_b = load_checkpoint(tmp_path / "a.pt"), load_checkpoint(path_b)
    for part in ("model", "optimizer", "scheduler", "progress"):
        if part == "progress":  # wall times differ, the rest must not
            for timing in ("train_time_s", "eval_time_s"):
                final_a[part].pop(timing), final_b[part].pop(timing)
        _assert_state_equal(final_a[part], final_b[part], part)
    assert result_a.history == result_b.history
    assert result_a.val_history == result_b.val_history


def test_same_seed_same_run_and_other_seed_other_run(data):
    config = TrainConfig(max_steps=6, batch_size=8, lr=1e-2, log_every=2, seed=5)
    model_1, result_1 = _fit(data, config, val_set=data.val)
    model_2, result_2 = _fit(data, config, val_set=data.val)
    model_3, result_3 = _fit(data, TrainConfig(**{**config.to_dict(), "seed": 6}),
                             val_set=data.val)
    assert result_1.history == result_2.history
    assert result_1.final_val == result_2.final_val
    for p1, p2 in zip(model_1.parameters(), model_2.parameters(), strict=True):
        assert torch.equal(p1, p2)
    assert any(not torch.equal(p1, p3) for p1, p3 in zip(model_1.parameters(),
                                                         model_3.parameters(), strict=True))
    assert result_1.history != result_3.history


def test_loader_order_is_a_function_of_seed_and_epoch(data):
    def order(seed, epoch, start=0):
        loader = make_loader(data.train, 8, data.collate, shuffle=True, seed=seed, drop_last=True)
        set_loader_epoch(loader, epoch, start)
        return [sid for batch in loader for sid in batch.sample_ids]

    assert order(0, 1) == order(0, 1)
    assert order(0, 1) != order(0, 2) and order(0, 1) != order(1, 1)
    assert order(0, 1, start=2) == order(0, 1)[16:]  # resuming skips consumed batches
    assert sorted(order(0, 3)) == sorted(order(0, 4))  # one epoch = every sample once


def test_checkpoint_is_atomic_and_loads_weights_only(data, tmp_path):
    path = tmp_path / "run.pt"
    _, result = _fit(data, TrainConfig(max_steps=4, batch_size=8, checkpoint_every=2),
                     checkpoint_path=path)
    assert [p.name for p in tmp_path.iterdir()] == ["run.pt"]  # no temporary file left
    checkpoint = torch.load(path, weights_only=True)  # tensors and plain data only
    assert checkpoint["progress"]["step"] == 4
    assert checkpoint["config"] == TrainConfig(max_steps=4, batch_size=8,
                                               checkpoint_every=2).to_dict()
    assert set(checkpoint["rng"]) == {"python", "numpy", "torch", "cuda"}

    # A writer dying mid-file leaves the previous checkpoint intact and no temporary file.
    before = path.read_bytes()

    def dies(f):
        f.write(b"half a checkpoint")
        raise Killed("killed while writing")

    with pytest.raises(Killed):
        atomic_write(path, dies)
    assert path.read_bytes() == before
    assert [p.name for p in tmp_path.iterdir()] == ["run.pt"]

    # A finished run is not trained again.
    _, again = _fit(data, TrainConfig(max_steps=4, batch_size=8, checkpoint_every=2),
                    checkpoint_path=path)
    assert again.resumed_from == 4 and again.history == result.history


def test_bad_checkpoints_give_clear_errors(data, tmp_path):
    config = TrainConfig(max_steps=2, batch_size=8)
    garbage = tmp_path / "garbage.pt"
    garbage.write_bytes(b"this is not a checkpoint")
    with pytest.raises(CheckpointError, match=r"garbage.pt \(\w+, details above\).*corrupt"):
        _fit(data, config, checkpoint_path=garbage)

    good = tmp_path / "good.pt"
    _fit(data, config, checkpoint_path=good)
    truncated = tmp_path / "truncated.pt"
    truncated.write_bytes(good.read_bytes()[: good.stat().st_size // 2])
    with pytest.raises(CheckpointError, match="truncated.pt"):
        _fit(data, config, checkpoint_path=truncated)

    wider = tiny_model(data.vocab_size, dim=16)
    with pytest.raises(CheckpointError, match="good.pt does not match this model"):
        _fit(data, TrainConfig(max_steps=4, batch_size=8), checkpoint_path=good, model=wider)
    with pytest.raises(CheckpointError, match=r"trained with other settings \(lr"):
        _fit(data, TrainConfig(max_steps=4, batch_size=8, lr=0.5), checkpoint_path=good)


# ---------------------------------------------------------------------------------------------
# Schedules
# ---------------------------------------------------------------------------------------------


def _lrs(data, model=None, **config):
    base = dict(max_steps=8, batch_size=8, lr=0.1, optimizer="sgd", log_every=1)
    _, result = _fit(data, TrainConfig(**{**base, **config}), model=model,
                     val_set=data.val if config.get("schedule") == "plateau" else None)
    return [row["lr"] for row in result.history]


def test_constant_and_step_schedules(data):
    assert _lrs(data) == pytest.approx([0.1] * 8)
    # MCN: x0.1 after each milestone (steps 3 and 6 here)
    steps = _lrs(data, schedule="step", milestones=(3, 6), gamma=0.1)
    assert steps == pytest.approx([0.1] * 3 + [0.01] * 3 + [0.001] * 2)


def test_poly_schedule_reaches_its_floor(data):
    lrs = _lrs(data, schedule="poly", min_lr=0.01, poly_power=0.9)
    # CMSA: lr_s = min_lr + (lr - min_lr) (1 - s / max_steps) ** 0.9, s = completed steps
    assert lrs == pytest.approx([0.01 + 0.09 * (1 - s / 8) ** 0.9 for s in range(8)])


def test_cosine_schedule_after_a_linear_warm_up(data):
    lrs = _lrs(data, schedule="cosine", warmup_steps=4)
    # the quick profile: lr (s + 1) / warmup over the warm-up, times half a cosine to min_lr
    cosine = [0.05 * (1 + math.cos(math.pi * s / 8)) for s in range(8)]
    assert lrs == pytest.approx([c * min(1.0, (s + 1) / 4) for s, c in enumerate(cosine)])
    with pytest.raises(ValueError, match="warmup_steps"):
        TrainConfig(warmup_steps=-1)


def test_mask_logits_start_at_the_foreground_prior():
    from refseg_lib.models import build_model
    from refseg_lib.models.common import start_at_prior

    for name, extra in (("lstm_cnn", {}), ("m3att", {"words": ("<pad>", "<unk>", "a")})):
        net = build_model(name, profile="quick", vocab_size=3, **extra)
        assert start_at_prior(net, 0.1) == list(type(net).MASK_LOGIT_BIASES)
        for bias in type(net).MASK_LOGIT_BIASES:
            value = dict(net.named_parameters())[bias]
            assert torch.allclose(value, torch.full_like(value, math.log(0.1 / 0.9)))
    with pytest.raises(ValueError, match="prior"):
        start_at_prior(net, 1.0)


def test_plateau_schedule_drops_after_patience(data):
    # A model that predicts background everywhere (bias -50) keeps val IoU at 0 through 6
    # small steps, so DMN's ReduceLROnPlateau (patience 2) cuts the lr after the 4th
    # evaluation (the first sets the best, the next three do not improve on it).
    model = tiny_model(data.vocab_size)
    nn.init.constant_(model.head.bias, -50.0)
    lrs = _lrs(data, model=model, schedule="plateau", eval_every=1, max_steps=6)
    assert lrs == pytest.approx([0.1] * 4 + [0.01] * 2)


def test_optimizer_groups_and_precision(data):
    model = tiny_model(data.vocab_size)
    config = TrainConfig(optimizer="adamw", lr=0.1, weight_decay=5e-4, bias_lr_factor=2.0,
                         decay_biases=False)  # CMSA: biases at 2x lr without decay
    weights, biases = build_optimizer(model, config).param_groups
    assert (weights["lr"], weights["weight_decay"]) == (0.1, 5e-4)
    assert (biases["lr"], biases["weight_decay"]) == (0.2, 0.0)
    assert all(p.ndim == 1 for p in biases["params"])

    cpu = torch.device("cpu")
    assert autocast_dtype("auto", cpu) is None and autocast_dtype("bf16", cpu) == torch.bfloat16
    with pytest.raises(ValueError, match="fp16"):
        autocast_dtype("fp16", cpu)
    _, result = _fit(data, TrainConfig(max_steps=2, batch_size=8, amp="bf16"), val_set=data.val)
    assert math.isfinite(result.history[-1]["loss"]) and result.final_val["n"] == 16


def test_config_checks_and_step_arithmetic():
    with pytest.raises(ValueError, match="unknown optimizer 'rmsprop'"):
        TrainConfig(optimizer="rmsprop")
    with pytest.raises(ValueError, match="milestones"):
        TrainConfig(schedule="step", milestones=(6, 3))
    assert steps_per_epoch(40, 8) == 5 and steps_per_epoch(41, 8, drop_last=False) == 6
    assert steps_per_epoch(40, 8, world_size=2) == 2
    assert epochs_to_steps(30, 40, 8) == 150  # MCN's first milestone at epoch 30
    assert pick_device().type in ("cpu", "cuda", "mps")
    assert pick_device("cpu") == torch.device("cpu")


# ---------------------------------------------------------------------------------------------
# Losses, evaluation, learning
# ---------------------------------------------------------------------------------------------


def test_mask_bce_scores_logits_resized_to_the_mask(data):
    batch = data.collate(data.train[:4])
    logits = torch.randn(4, 16, 16)
    loss, parts = mask_bce(ModelOutput(mask_logits=logits), batch)
    upsampled = F.interpolate(logits[:, None], size=(32, 32), mode="bilinear",
                              align_corners=False)[:, 0]
    expected = F.binary_cross_entropy_with_logits(upsampled, batch.masks.float())
    torch.testing.assert_close(loss, expected)
    assert parts == {"bce": pytest.approx(float(expected))}
    assert resize_logits(upsampled, (32, 32)) is upsampled
    with pytest.raises(ValueError, match=r"\(B, h, w\)"):
        resize_logits(logits[0], (32, 32))


def test_evaluate_reports_overall_and_mean_iou_by_tag(data):
    model = tiny_model(data.vocab_size)
    result = evaluate(model, data.val, data.collate, batch_size=5, thresholds=(0.5, 0.35),
                      progress=False)
    summary = result.summary
    assert summary["n"] == 16
    for key in ("overall_iou", "mean_iou", "Pr@0.5", "Pr@0.9", "overall_iou@0.35"):
        assert 0.0 <= summary[key] <= 1.0, key
    assert len(result.per_sample) == 16
    assert result.per_sample["sample_id"].is_unique
    assert result.per_sample["iou"].mean() == pytest.approx(summary["mean_iou"])
    assert result.by_tag.loc["all", "n"] == 16 and len(result.by_tag) > 1
    assert result.eval_time_s > 0 and result.samples_per_s > 0
    assert model.training  # mode restored

    batch = data.collate(data.val[:3])
    probabilities = predict(model, batch.images, batch.tokens, batch.lengths)
    assert probabilities.shape == (3, IMAGE_SIZE, IMAGE_SIZE)
    assert float(probabilities.min()) >= 0.0 and float(probabilities.max()) <= 1.0


def test_loss_decreases_on_shaperef(data):
    config = TrainConfig(max_steps=60, batch_size=8, lr=2e-2, log_every=10)
    _, result = _fit(data, config, val_set=data.val)
    losses = [row["loss"] for row in result.history]
    assert len(losses) == 6 and all(math.isfinite(x) for x in losses)
    assert losses[-1] < 0.8 * losses[0]
    assert result.samples_per_s > 0 and result.final_val["n"] == 16
    assert result.history[-1]["epoch"] == pytest.approx(12.0)  # 60 steps of 5 per epoch


# ---------------------------------------------------------------------------------------------
# Run records
# ---------------------------------------------------------------------------------------------


def _record(**changes) -> RunRecord:
    fields = dict(model="tiny", variant="base", dataset="shapes", style="refshape+",
                  split="val", profile="quick", config=TrainConfig().to_dict(),
                  metrics={"overall_iou": 0.5, "mean_iou": 0.25, "Pr@0.5": 0.3, "n": 16},
                  train_time_s=1.5, eval_time_s=0.5, samples_per_s=100.0,
                  params=count_parameters(TinyReferModel(10)), source="tests/test_engine.py")
    return RunRecord(**{**fields, **changes})


def test_run_records_round_trip(tmp_path):
    empty = load_run_records(tmp_path)
    assert empty.empty and {"model", "variant", "split", "profile"} <= set(empty.columns)

    record = _record()
    path = write_run_record(record, tmp_path)
    assert path.name == "tiny__base__shapes-refshape+__val__quick.json"
    assert read_run_record(path).to_dict() == record.to_dict()
    stored = json.loads(path.read_text())
    assert list(stored) == sorted(stored) and stored["config"]["milestones"] == []
    assert stored["git_revision"] and stored["hardware"]["torch"] == torch.__version__

    write_run_record(_record(metrics={"overall_iou": 0.6, "mean_iou": 0.3, "n": 16}), tmp_path)
    write_run_record(_record(variant="no_text", dataset="refcoco", style=""), tmp_path)
    assert sorted(p.name for p in tmp_path.iterdir()) == [
        "tiny__base__shapes-refshape+__val__quick.json",  # overwritten, not duplicated
        "tiny__no_text__refcoco__val__quick.json",
    ]
    frame = load_run_records(tmp_path).set_index("variant")
    assert frame.loc["base", "overall_iou"] == 0.6 and frame.loc["no_text", "overall_iou"] == 0.5
    assert math.isnan(frame.loc["base", "Pr@0.5"])
    assert frame.loc["base", "config"]["lr"] == TrainConfig().lr
    with pytest.raises(ValueError, match="non-empty 'split'"):
        _record(split="")
