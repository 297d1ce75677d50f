"""How many ShapeRef samples one CPU core generates per second, per image size.

    python benchmarks/shapes_throughput.py [--sizes 64 128 320] [--n 2000] [--style refshape]

Everything runs on one thread (torch, and the BLAS behind numpy), after a warm-up; each size
is timed ``--repeats`` times over ``--n`` samples and the best run is reported, since
slowdowns on a shared machine come from elsewhere. A sample is a full ``ShapeRef[i]``: scene,
rendering, a certified expression and the ``Sample`` tensors.
"""

from __future__ import annotations

import os

for _variable in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
    os.environ.setdefault(_variable, "1")  # must happen before numpy is imported

import argparse  # noqa: E402
import platform  # noqa: E402
import time  # noqa: E402

import torch  # noqa: E402

from refseg_lib.data.shapes import SPLITS, STYLES, ShapeRef  # noqa: E402


def samples_per_second(dataset: ShapeRef, n: int, repeats: int, warmup: int) -> float:
    for i in range(warmup):
        dataset[i]
    best = float("inf")
    for _ in range(repeats):
        start = time.perf_counter()
        for i in range(n):
            dataset[i]
        best = min(best, time.perf_counter() - start)
    return n / best


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", type=int, nargs="+", default=[64, 128, 320])
    parser.add_argument("--n", type=int, default=2000, help="samples per timed run")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--warmup", type=int, default=200)
    parser.add_argument("--style", choices=STYLES, default="refshape")
    parser.add_argument("--split", choices=SPLITS, default="train")
    args = parser.parse_args()

    torch.set_num_threads(1)
    print(f"ShapeRef {args.split}/{args.style}, 1 thread, best of {args.repeats} x {args.n} "
          f"samples ({platform.processor() or platform.machine()}, torch {torch.__version__})")
    print(f"| {'size':>5} | {'samples/s':>9} | {'us/sample':>9} |")
    print(f"| {'-' * 5} | {'-' * 9} | {'-' * 9} |")
    for size in args.sizes:
        dataset = ShapeRef(args.split, args.style, num_samples=max(args.n, args.warmup),
                           image_size=size)
        rate = samples_per_second(dataset, args.n, args.repeats, args.warmup)
        print(f"| {size:>5} | {rate:>9.0f} | {1e6 / rate:>9.0f} |", flush=True)


if __name__ == "__main__":
    main()
