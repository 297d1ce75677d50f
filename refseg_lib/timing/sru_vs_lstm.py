"""Forward + backward time of our SRU against ``torch.nn.LSTM`` (DMN sec. 5.3), on this CPU.

    python -m refseg_lib.timing.sru_vs_lstm [--small] [--reps N] [--no-package]

DMN replaces LSTMs by SRUs in its language module (LM) and its synthesis module (SM, the
mSRU) and reports a third of the training time (sec. 5.3). This script times one training
step of each recurrent part alone: the input requires grad, the loss is the sum of the
outputs, and ``loss.backward()`` runs. The configurations:

- LM: a stack of layers over (T, B, C) word vectors; our ``SRU`` against ``nn.LSTM`` of the
  same input size, hidden size and depth, at the quick profile's sizes (64 -> 64, 2 layers,
  T = 10) and at DMN's (1000 -> 1000, 2 layers, T = 15 and 20), batch 1 and 32.
- SM: our ``MultimodalSRU`` against a 1x1 ConvLSTM (RMI's mLSTM, DMN's Fig. 7 baseline). A 1x1
  ConvLSTM *is* an ``nn.LSTM`` run with the pixels as the batch, which is how
  ``MultimodalSRU(cell="lstm")`` computes it: (B, T, C, h, w) -> (T, B*h*w, C). DMN's size:
  a 16x16 map (a 512 px image at stride 32), batch 1, T = 15, 1000 -> 1000, 3 layers; quick:
  an 8x8 map, batch 32, T = 10, 64 -> 64, 2 layers.

A third column times the ``sru`` package of Lei et al. (``sru.SRU``, v2.6), when it imports
(it is no dependency of the course; run with it on ``PYTHONPATH``). On a CPU with gradients
enabled it runs its pure-PyTorch loop (its C++ CPU kernel serves inference only), and its
cell is SRU v2 (Lei et al. 2018: the gates also read c_{t-1} through vectors v_f, v_r), a few
more elementwise operations per step than DMN's eqs. (3)-(6).

Timing: each implementation is warmed up, then every repetition times each implementation
once, in a rotating order, so that a slow spell of a shared machine hits all of them; the
table gives medians. Threads are torch's default. ``--small`` keeps the quick sizes and DMN's
LM at batch 1 (some 20 s; notebook 01 runs it); without it the script also writes
``reports/sru_vs_lstm.{md,csv}`` and ``reports/figures/sru_vs_lstm.png``.
"""

from __future__ import annotations

import argparse
import statistics
import time
import warnings
from collections.abc import Callable
from dataclasses import dataclass

import pandas as pd
import torch
from matplotlib.figure import Figure
from torch import nn
from tqdm.auto import tqdm

from refseg_lib.nn.sru import SRU, MultimodalSRU
from refseg_lib.records import hardware_info
from refseg_lib.reports import save_figure, write_table

IMPLEMENTATIONS = ("ours", "LSTM", "sru pkg")
TARGET_LSTM_RATIO = {1: 3.0, 32: 2.2}  # LSTM / ours at DMN's LM sizes, per batch size


@dataclass(frozen=True)
class Case:
    """One configuration: a language module (LM, no map) or a synthesis module (SM, a map)."""

    group: str  # "quick LM", "DMN LM", "quick SM", "DMN SM"
    input_size: int
    hidden_size: int
    layers: int
    steps: int  # T, words
    batch: int
    map_size: int = 0  # h = w of the SM's map; 0 for an LM
    reps: int = 15

    @property
    def module(self) -> str:
        return "SM" if self.map_size else "LM"

    @property
    def label(self) -> str:
        where = f", {self.map_size}x{self.map_size} map" if self.map_size else ""
        return (f"{self.group}: {self.input_size}->{self.hidden_size} x{self.layers}, "
                f"T={self.steps}, B={self.batch}{where}")

    def macs_ratio(self) -> float:
        """Multiply-adds per step, LSTM / SRU: 4H(I + H) against k H I, summed over layers.

        k = 3 projections (x~, f, r), 4 when the highway needs one (input size != hidden).
        """
        lstm = sru = 0
        for i in range(self.layers):
            size = self.input_size if i == 0 else self.hidden_size
            lstm += 4 * self.hidden_size * (size + self.hidden_size)
            sru += (3 if size == self.hidden_size else 4) * self.hidden_size * size
        return lstm / sru


def cases(small: bool = False, reps: int | None = None) -> list[Case]:
    """The configurations, quick sizes first; ``small``: the ones that take seconds."""
    chosen = [
        Case("quick LM", 64, 64, 2, 10, 1, reps=30),
        Case("quick LM", 64, 64, 2, 10, 32, reps=30),
        Case("DMN LM", 1000, 1000, 2, 15, 1),
    ]
    if not small:
        chosen += [
            Case("DMN LM", 1000, 1000, 2, 15, 32),
            Case("DMN LM", 1000, 1000, 2, 20, 1),
            Case("DMN LM", 1000, 1000, 2, 20, 32),
        ]
    chosen.append(Case("quick SM", 64, 64, 2, 10, 32, map_size=8, reps=10))
    if not small:
        chosen.append(Case("DMN SM", 1000, 1000, 3, 15, 1, map_size=16, reps=9))
    if small:
        chosen = [Case(**{**c.__dict__, "reps": min(c.reps, 10)}) for c in chosen]
    if reps is not None:
        chosen = [Case(**{**c.__dict__, "reps": reps}) for c in chosen]
    return chosen


def import_sru_package():
    """The ``sru`` package, or None when it does not import (it needs ninja and a compiler)."""
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # "compiling the CUDA kernels ... unsuccessful"
            import sru
    except Exception:  # noqa: BLE001 - any failure means: time without it
        return None
    return sru


class _PackageMSRU(nn.Module):
    """The ``sru`` package's SRU run per pixel, as ``MultimodalSRU`` runs ours."""

    def __init__(self, rnn: nn.Module):
        super().__init__()
        self.rnn = rnn

    def forward(self, maps: torch.Tensor) -> torch.Tensor:
        batch, steps, channels, height, width = maps.shape
        sequences = maps.permute(1, 0, 3, 4, 2).reshape(steps, -1, channels)  # (T, B*h*w, C)
        last = self.rnn(sequences)[0][-1]  # (B*h*w, hidden)
        return last.view(batch, height, width, -1).permute(0, 3, 1, 2)


def build(implementation: str, case: Case, package) -> tuple[nn.Module, Callable]:
    """The module and a function ``inputs -> output`` for one implementation of ``case``."""
    sizes = (case.input_size, case.hidden_size, case.layers)
    if case.map_size:
        if implementation == "sru pkg":
            module = _PackageMSRU(package.SRU(*sizes))
        else:
            module = MultimodalSRU(*sizes, cell="sru" if implementation == "ours" else "lstm")
        return module, module
    if implementation == "sru pkg":
        module = package.SRU(*sizes)
    else:
        module = (SRU if implementation == "ours" else nn.LSTM)(*sizes)
    return module, lambda x: module(x)[0]  # every output h_t of the last layer


def make_input(case: Case, generator: torch.Generator) -> torch.Tensor:
    if case.map_size:  # (B, T, C, h, w): the M_t of eq. (9)
        shape = (case.batch, case.steps, case.input_size, case.map_size, case.map_size)
    else:  # (T, B, C): word vectors
        shape = (case.steps, case.batch, case.input_size)
    return torch.randn(shape, generator=generator).requires_grad_()


def time_step(module: nn.Module, run: Callable, x: torch.Tensor) -> float:
    """Seconds of one forward + backward, loss = sum of the outputs."""
    module.zero_grad(set_to_none=True)
    x.grad = None
    start = time.perf_counter()
    run(x).sum().backward()
    return time.perf_counter() - start


def measure(small: bool = False, reps: int | None = None, package: bool = True,
            warmup: int = 2, progress: bool = True) -> pd.DataFrame:
    """Median milliseconds per forward + backward, one row per case, with the ratios.

    Columns: the case's fields, ``ours ms``, ``LSTM ms``, ``sru pkg ms`` (NaN without the
    package), ``LSTM / ours``, ``sru pkg / ours`` and ``FLOP ratio`` (LSTM / SRU multiply-adds).
    """
    sru_package = import_sru_package() if package else None
    implementations = [i for i in IMPLEMENTATIONS if i != "sru pkg" or sru_package is not None]
    chosen = cases(small, reps)
    total = sum((c.reps + warmup) * len(implementations) for c in chosen)
    rows = []
    with tqdm(total=total, desc="SRU vs LSTM", disable=not progress) as bar, \
            warnings.catch_warnings():
        warnings.simplefilter("ignore")  # the package: "Running SRU on CPU with grad_enabled"
        for case in chosen:
            bar.set_postfix_str(case.label)
            torch.manual_seed(0)
            built = {i: build(i, case, sru_package) for i in implementations}
            x = make_input(case, torch.Generator().manual_seed(0))
            times: dict[str, list[float]] = {i: [] for i in implementations}
            for i in implementations:
                for _ in range(warmup):
                    time_step(*built[i], x)
                    bar.update()
            for rep in range(case.reps):
                shift = rep % len(implementations)  # rotate which one goes first
                for i in implementations[shift:] + implementations[:shift]:
                    times[i].append(time_step(*built[i], x))
                    bar.update()
            medians = {i: 1e3 * statistics.median(t) for i, t in times.items()}
            rows.append({
                "group": case.group, "module": case.module, "batch": case.batch,
                "steps": case.steps, "input": case.input_size, "hidden": case.hidden_size,
                "layers": case.layers, "map": case.map_size or None, "reps": case.reps,
                "ours ms": medians["ours"], "LSTM ms": medians["LSTM"],
                "sru pkg ms": medians.get("sru pkg", float("nan")),
                "LSTM / ours": medians["LSTM"] / medians["ours"],
                "sru pkg / ours": medians.get("sru pkg", float("nan")) / medians["ours"],
                "FLOP ratio": case.macs_ratio(),
            })
            del built
    return pd.DataFrame(rows)


def targets(results: pd.DataFrame) -> pd.DataFrame:
    """The targets at DMN's LM sizes: LSTM / ours >= 3 at batch 1 and >= 2.2 at batch 32;
    faster than the ``sru`` package (when it was timed)."""
    rows = []
    for _, row in results[results["group"] == "DMN LM"].iterrows():
        where = f"DMN LM, T={row['steps']}, B={row['batch']}"
        goal, ratio = TARGET_LSTM_RATIO[row["batch"]], row["LSTM / ours"]
        rows.append({"target": f"{where}: LSTM / ours >= {goal}", "measured": ratio,
                     "result": _verdict(ratio >= goal)})
        if pd.notna(row["sru pkg / ours"]):
            rows.append({"target": f"{where}: sru pkg / ours > 1",
                         "measured": row["sru pkg / ours"],
                         "result": _verdict(row["sru pkg / ours"] > 1)})
    return pd.DataFrame(rows)


def _verdict(passed: bool) -> str:
    return "PASS" if passed else "FAIL"


def figure(results: pd.DataFrame) -> Figure:
    """Milliseconds per training step, one row of points per configuration, log scale."""
    fig = Figure(figsize=(7.5, 0.45 * len(results) + 1.3), layout="constrained")
    ax = fig.add_subplot()
    labels = [_short_label(row) for _, row in results.iterrows()]
    positions = range(len(results))[::-1]  # first case on top
    styles = {"ours": ("o", "C0", 4), "LSTM": ("s", "C3", 3), "sru pkg": ("^", "C2", 3)}
    for name, (marker, color, order) in styles.items():
        column = results[f"{name} ms"]
        if column.notna().any():  # ours on top where two points coincide
            ax.scatter(column, positions, marker=marker, color=color, label=name, zorder=order,
                       alpha=0.85)
    for position, (_, row) in zip(positions, results.iterrows(), strict=True):
        slowest = max(v for v in (row["ours ms"], row["LSTM ms"], row["sru pkg ms"]) if v == v)
        ax.annotate(f"LSTM / ours {row['LSTM / ours']:.1f}x", (slowest, position),
                    xytext=(6, -3), textcoords="offset points", fontsize=7)
    ax.set_yticks(list(positions), labels, fontsize=8)
    ax.set_xscale("log")
    ax.set_xlim(right=ax.get_xlim()[1] * 4)  # room for the annotations
    ax.grid(axis="x", which="both", alpha=0.3)
    ax.set_xlabel("ms per forward + backward (median)")
    ax.set_title("SRU vs LSTM on this CPU", fontsize=10)
    fig.legend(*ax.get_legend_handles_labels(), loc="outside lower center", ncols=3,
               fontsize=8, frameon=False)
    return fig


def _short_label(row: pd.Series) -> str:
    where = f", {row['map']:.0f}x{row['map']:.0f} map" if pd.notna(row["map"]) else ""
    return (f"{row['group']} {row['input']}->{row['hidden']} x{row['layers']}, "
            f"T={row['steps']}, B={row['batch']}{where}")


def write_reports(results: pd.DataFrame, goals: pd.DataFrame) -> list:
    hardware = hardware_info("cpu")
    notes = [
        "One training step of the recurrent part alone: forward, loss = sum of the outputs, "
        "backward (the input requires grad). Medians over the `reps` repetitions after a "
        "warm-up; the implementations alternate within each repetition.",
        "ours: `refseg_lib.nn.sru.SRU` / `MultimodalSRU`; LSTM: `torch.nn.LSTM` of the same "
        "sizes (SM: a 1x1 ConvLSTM, i.e. `nn.LSTM` with the pixels as the batch); sru pkg: "
        "`sru.SRU` 2.6 (Lei et al.), which on a CPU with gradients runs its PyTorch loop "
        "and computes SRU v2 (gates that also read c_{t-1}).",
        "FLOP ratio: multiply-adds per step of the LSTM (4H(I+H) per layer) over the SRU's "
        "(kHI, k = 3, or 4 when the input size differs from the hidden size).",
        *(f"{r.result}: {r.target} (measured {r.measured:.2f})"
          for r in goals.itertuples()),
        f"Hardware: {hardware['device_name']}, {hardware['cpu_count']} CPUs, "
        f"{hardware['threads']} torch threads, torch {hardware['torch']}, "
        f"Python {hardware['python']}, {hardware['platform']}.",
        "Regenerate: `python benchmarks/sru_vs_lstm.py` (with the `sru` package on "
        "PYTHONPATH for its column).",
    ]
    written = list(write_table(results, "sru_vs_lstm", "SRU vs LSTM: time per training step",
                               notes=notes))
    written.append(save_figure(figure(results), "sru_vs_lstm"))
    return written


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--small", action="store_true",
                        help="quick sizes and DMN's LM at batch 1 only; writes no report")
    parser.add_argument("--reps", type=int, default=None, help="repetitions for every case")
    parser.add_argument("--no-package", action="store_true", help="skip the sru package")
    args = parser.parse_args()

    results = measure(args.small, args.reps, package=not args.no_package)
    hardware = hardware_info("cpu")
    print(f"{hardware['device_name']}, {hardware['cpu_count']} CPUs, {hardware['threads']} "
          f"threads, torch {hardware['torch']}")
    shown = ["group", "batch", "steps", "input", "hidden", "layers", "map", "ours ms", "LSTM ms",
             "sru pkg ms", "LSTM / ours", "sru pkg / ours", "FLOP ratio"]
    table = results[shown].astype(object).where(results[shown].notna(), None)
    print(table.to_markdown(index=False, floatfmt=".2f", missingval="-"))
    goals = targets(results)
    if len(goals):
        print()
        print(goals.to_markdown(index=False, floatfmt=".2f"))
    if not args.small:
        for path in write_reports(results, goals):
            print(f"wrote {path}")


if __name__ == "__main__":
    main()
