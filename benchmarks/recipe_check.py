"""Why the quick profile's recipe: LSTM-CNN and M3Att trained 1000 steps under each choice.

    python benchmarks/recipe_check.py [--steps 1000]

Rows (one run each, val overall IoU of ShapeRef refshape at the quick profile's size, and the
learning curve): the previous recipe (Adam at 1e-3, one step decay at 80%, logits starting at
0.5); the quick profile's (AdamW at 3e-3, a 100-step warm-up, half a cosine) without and with
the mask bias started at the foreground prior; the quick profile's at 1e-2. Writes
``reports/recipe.{md,csv}`` and ``reports/figures/recipe.png``, which notebook 00b shows.
"""

from __future__ import annotations

import argparse
import dataclasses
import os
import tempfile

import pandas as pd
import torch
from matplotlib.figure import Figure

from refseg_lib import experiments
from refseg_lib.models.m3att import VARIANTS as M3ATT_VARIANTS
from refseg_lib.reports import save_figure, write_table

PREVIOUS = {"optimizer": "adam", "lr": 1e-3, "weight_decay": 0.0, "schedule": "step",
            "warmup_steps": 0}
RECIPES = {  # name -> (train overrides, start at the prior)
    "Adam 1e-3, step decay (previous)": (PREVIOUS, False),
    "AdamW 3e-3, warm-up, cosine": ({}, False),
    "+ mask bias at the prior (quick profile)": ({}, True),
    "quick profile at 1e-2": ({"lr": 1e-2}, True),
}
MODELS = {"LSTM-CNN": ("lstm_cnn", {}), "M3Att": ("m3att", M3ATT_VARIANTS["lfr"][0])}
ROWS = [("LSTM-CNN", r) for r in RECIPES] + [("M3Att", r) for r in list(RECIPES)[2:]]


def run(system: str, recipe: str, steps: int) -> dict:
    model, config = MODELS[system]
    overrides, prior = RECIPES[recipe]
    quick = experiments.PROFILES["quick"]
    experiments.PROFILES["quick"] = dataclasses.replace(quick, start_at_prior=prior)
    try:
        milestones = (int(0.8 * steps),) if overrides.get("schedule") == "step" else ()
        done = experiments.run_experiment(
            model, variant="recipe", model_config=config, write_records=False, resume=False,
            progress=False,
            train_overrides={**overrides, "max_steps": steps, "milestones": milestones})
    finally:
        experiments.PROFILES["quick"] = quick
    curve = experiments.learning_curve(done.train)
    return {"system": system, "recipe": recipe, "steps": steps,
            "val overall IoU (%)": 100 * done.evaluations["val"].summary["overall_iou"],
            "after a tenth (%)": 100 * curve[0]["overall_iou"], "curve": curve}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=1000)
    args = parser.parse_args()
    torch.set_num_threads(1)
    os.environ["REFSEG_CHECKPOINTS"] = tempfile.mkdtemp()  # scratch: nothing is kept
    rows = [run(system, recipe, args.steps) for system, recipe in ROWS]
    for row in rows:
        print(row["system"], row["recipe"], round(row["val overall IoU (%)"], 1), flush=True)
    table = pd.DataFrame(rows).drop(columns="curve").set_index(["system", "recipe"])
    write_table(table, "recipe", "The quick profile's recipe, measured (val overall IoU)",
                [f"python benchmarks/recipe_check.py --steps {args.steps}; one run each, "
                 "ShapeRef refshape val (500 samples) at the quick profile's size; 'after a "
                 "tenth': the first point of the learning curve (200 samples)."])
    fig = Figure(figsize=(7.5, 3.2), layout="constrained")
    axes = fig.subplots(1, len(MODELS), sharey=True)
    for ax, system in zip(axes, MODELS, strict=True):
        for row in (r for r in rows if r["system"] == system):
            points = [(p["step"], 100 * p["overall_iou"]) for p in row["curve"]]
            ax.plot(*zip(*points, strict=True), marker=".", label=row["recipe"])
        ax.set(title=system, xlabel="step")
        ax.legend(fontsize=6)
    axes[0].set_ylabel("val overall IoU (%)")
    save_figure(fig, "recipe", None)


if __name__ == "__main__":
    main()
