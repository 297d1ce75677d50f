"""Inference latency per image of MCN against its single-task models (MCN Table 4's speed).

    python -m refseg_lib.timing.mcn_latency [--device cuda] [--paper] [--reps 30]

MCN's claim (sec. 4.4, Table 4) is that one network does both tasks at about the cost of one:
56 ms per image with Darknet-53 on a 1080Ti, against 367 ms for the two-stage MattNet. Here the
same process times, at batch 1 in eval mode without gradients, MCN (Base structure, both
branches, ASNLS), Single_REC (13^2) and Single_RES (52^2), interleaved within each repetition,
and reports the median milliseconds per image and the ratio to MCN. Quick sizes always (small
CNN at the quick profile's 80 px); the paper sizes (Darknet-53 at 416 px, untrained weights)
with ``--paper`` (on a CPU this takes about a minute). The script writes
``reports/mcn_latency.{md,csv}``.
"""

from __future__ import annotations

import argparse
import statistics
import time

import pandas as pd
import torch

from refseg_lib.experiments import get_profile
from refseg_lib.models import build_model
from refseg_lib.models.mcn import VARIANTS
from refseg_lib.records import hardware_info
from refseg_lib.reports import write_table

MODELS = {"MCN (both tasks, ASNLS)": {**VARIANTS["cem"][0], "postprocess": "asnls"},
          "Single_REC (13^2)": VARIANTS["single_rec_13"][0],
          "Single_RES (52^2)": VARIANTS["single_res_52"][0]}


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def measure(profile: str = "quick", reps: int = 30, device: str = "cpu",
            warmup: int = 3) -> pd.DataFrame:
    """Median ms per image (batch 1) of each of ``MODELS``, interleaved, and the ratio to MCN."""
    device = torch.device(device)
    side = get_profile("quick").image_size if profile == "quick" else 416  # MCN: 416 px
    extra = {} if profile == "quick" else {"pretrained": False}
    torch.manual_seed(0)
    models = {name: build_model("mcn", profile=profile, vocab_size=100, **flags, **extra)
              .to(device).eval() for name, flags in MODELS.items()}
    images = torch.rand(1, 3, side, side, device=device)
    tokens = torch.randint(2, 100, (1, 8), device=device)
    lengths = torch.tensor([8], device=device)
    times: dict[str, list[float]] = {name: [] for name in models}
    with torch.inference_mode():
        for rep in range(warmup + reps):
            for name, model in models.items():
                _sync(device)
                start = time.perf_counter()
                model(images, tokens, lengths)
                _sync(device)
                if rep >= warmup:
                    times[name].append((time.perf_counter() - start) * 1000)
    mcn = statistics.median(times[next(iter(models))])
    return pd.DataFrame([{"profile": profile, "model": name, "ms per image": statistics.median(t),
                          "/ MCN": statistics.median(t) / mcn,
                          "params": sum(p.numel() for p in models[name].parameters())}
                         for name, t in times.items()])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--paper", action="store_true", help="also time the paper sizes")
    parser.add_argument("--reps", type=int, default=30)
    args = parser.parse_args()
    profiles = ["quick", "paper"] if args.paper else ["quick"]
    table = pd.concat([measure(p, args.reps, args.device) for p in profiles], ignore_index=True)
    print(table.to_string(index=False))
    hardware = hardware_info(args.device)
    write_table(table, "mcn_latency", "MCN: inference latency per image against single-task "
                "models", notes=[
                    f"batch 1, eval mode, torch.inference_mode, on {args.device}; median of "
                    f"{args.reps} repetitions after 3 warm-up ones, the models interleaved "
                    "within each repetition; '/ MCN' is the ratio to MCN's time in the same run",
                    "quick: small_cnn at 80 px; paper: Darknet-53 (untrained) at 416 px. MCN "
                    "Table 4: 56 ms with Darknet-53 on a GTX 1080Ti",
                    f"machine: {hardware['device_name']}, {hardware['cpu_count']} CPUs, "
                    f"torch {hardware['torch']}"],
                floatfmt=".2f")


if __name__ == "__main__":
    main()
