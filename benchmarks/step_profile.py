"""Where a training step's time goes, per system of the leaderboard (quick profile, one thread).

    python benchmarks/step_profile.py [--steps 30] [--warmup 10] [--eval-samples 128]

Each system is built as the leaderboard builds it (the same model, variant flags, ShapeRef
data at the profile's image size, batch and optimiser) and trained for ``--warmup`` untimed
steps, then ``--steps`` timed ones, each cut into its parts: **data** (the loader's next
batch: scene generation, rendering, collation), **forward** (model and loss), **backward**,
**update** (optimiser step). **evaluate** is the time per sample of ``engine.evaluate`` on
``--eval-samples`` val samples. Medians per step; the shares are of the step's total, so they
compare systems run in the same process on the same machine. The budget columns multiply the
step by the leaderboard's and the ablations' step counts. One thread (torch and BLAS), since
the main job runs one training per core. Writes ``reports/step_profile.{md,csv}``.
"""

from __future__ import annotations

import os

for _variable in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
    os.environ.setdefault(_variable, "1")  # must happen before numpy is imported

import argparse  # noqa: E402
import importlib  # noqa: E402
import statistics  # noqa: E402
import time  # noqa: E402

import pandas as pd  # noqa: E402
import torch  # noqa: E402

from refseg_lib.data import Collate, Vocabulary  # noqa: E402
from refseg_lib.engine import build_optimizer, evaluate, make_loader, seed_everything  # noqa: E402
from refseg_lib.experiments import LEADERBOARD, get_profile, load_split  # noqa: E402
from refseg_lib.losses import mask_bce  # noqa: E402
from refseg_lib.models import build_model, model_takes  # noqa: E402
from refseg_lib.plan import plan_jobs  # noqa: E402
from refseg_lib.records import hardware_info  # noqa: E402
from refseg_lib.reports import write_table  # noqa: E402

PARTS = ("data", "forward", "backward", "update")


def variant_flags(model: str, variant: str) -> dict:
    """The model config of a leaderboard variant (``<flags>[+evaluation setting]``)."""
    name = variant.split("+")[0]
    if model in ("only_vm", "lstm_cnn"):  # the baselines have no variants
        return {}
    return dict(importlib.import_module(f"refseg_lib.models.{model}").VARIANTS[name][0])


def profile_system(model: str, variant: str, *, steps: int, warmup: int, eval_samples: int,
                   seed: int = 0) -> dict[str, float]:
    """Median ms of each part of a training step, and ms per evaluated sample."""
    chosen = get_profile("quick", model)
    train_set = load_split("shapes", "train", chosen, num_samples=chosen.train_samples,
                           seed=seed)
    vocabulary = Vocabulary.build(train_set.sentences)
    collate = Collate(vocabulary, dataset="shapes")
    seed_everything(seed)
    words = {"words": tuple(vocabulary.itos)} if model_takes(model, "words") else {}
    net = build_model(model, profile="quick", vocab_size=len(vocabulary), **words,
                      **variant_flags(model, variant))
    loss_fn = getattr(net, "training_loss", mask_bce)
    optimizer = build_optimizer(net, chosen.train)
    loader = iter(make_loader(train_set, chosen.train.batch_size, collate, shuffle=True,
                              seed=seed, drop_last=True))
    net.train()
    times: dict[str, list[float]] = {part: [] for part in PARTS}
    for step in range(warmup + steps):
        tic = time.perf_counter()
        batch = next(loader)
        t_data = time.perf_counter()
        output = net(batch.images, batch.tokens, batch.lengths)
        loss, _ = loss_fn(output, batch)
        t_forward = time.perf_counter()
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        t_backward = time.perf_counter()
        optimizer.step()
        t_update = time.perf_counter()
        if step >= warmup:
            for part, (a, b) in zip(PARTS, [(tic, t_data), (t_data, t_forward),
                                            (t_forward, t_backward), (t_backward, t_update)],
                                           strict=True):
                times[part].append(1e3 * (b - a))
    row = {f"{part} (ms)": statistics.median(values) for part, values in times.items()}
    val = load_split("shapes", "val", chosen, num_samples=eval_samples, seed=seed)
    result = evaluate(net, val, collate, progress=False)
    row["evaluate (ms/sample)"] = 1e3 / result.samples_per_s
    return row


def measure(steps: int = 30, warmup: int = 10, eval_samples: int = 128) -> pd.DataFrame:
    torch.set_num_threads(1)
    rows = {}
    for system, (model, variant) in LEADERBOARD.items():
        rows[system] = profile_system(model, variant, steps=steps, warmup=warmup,
                                      eval_samples=eval_samples)
        print(system, {k: round(v, 1) for k, v in rows[system].items()}, flush=True)
    table = pd.DataFrame(rows).T.rename_axis("system")
    step = table[[f"{part} (ms)" for part in PARTS]].sum(axis=1)
    table["step (ms)"] = step
    for part in PARTS:
        table[f"{part} (%)"] = 100 * table[f"{part} (ms)"] / step
    budgets = {j.model: j.steps // len(j.calls) for j in plan_jobs("quick", notebooks=[
        "00b", "02", "05", "06", "07"])}  # each system's budget (steps of all its stages)
    table["budget (steps)"] = [budgets[LEADERBOARD[s][0]] for s in table.index]
    table["budget (min)"] = step * table["budget (steps)"] / 6e4
    return table


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=30)
    parser.add_argument("--warmup", type=int, default=10)
    parser.add_argument("--eval-samples", type=int, default=128)
    args = parser.parse_args()
    table = measure(args.steps, args.warmup, args.eval_samples)
    print(table.round(1).to_string())
    write_table(table, "step_profile", "Where a training step's time goes (quick profile, 1 "
                "thread)", [f"python benchmarks/step_profile.py --steps {args.steps} --warmup "
                            f"{args.warmup} --eval-samples {args.eval_samples}; medians of the "
                            "timed steps; times vary between machines, shares less so.",
                            f"Hardware: {hardware_info()}."])


if __name__ == "__main__":
    main()
