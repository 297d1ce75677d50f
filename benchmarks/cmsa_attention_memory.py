"""Peak memory of CMSA's full cross-modal self-attention (eqs. 2-3), written out vs ours.

    python benchmarks/cmsa_attention_memory.py [--device cuda] [--paper]

Eq. (3) is a softmax over all L = N x h x w (word, pixel) positions for each of the L queries:
an L x L matrix. At the paper's input (320 x 320 at stride 8: a 40 x 40 map, 20 words,
L = 32 000) that matrix alone is 4.1 GB in float32 per image and level. Our
``CrossModalSelfAttention`` sends the full variant through ``scaled_dot_product_attention``
(``refseg_lib.models.cmsa._attend_full``), whose fused kernels never hold it.

For each case the script runs forward and backward of one level's attention twice in the same
process: written out (``softmax(q k^T) v`` with the padding mask) and ours, and reports the
peak memory each adds above its inputs. On CUDA the peak is
``torch.cuda.max_memory_allocated``; on a CPU it is the process's peak resident set (VmHWM,
reset through ``/proc/self/clear_refs``, Linux only). The ratio written-out / ours is the
figure to read (both measured the same way, one after the other). The paper case's written-out
run needs some 12 GB; it is computed, not run, unless ``--paper`` is given on a GPU. The
script writes ``reports/cmsa_attention_memory.{md,csv}``.
"""

from __future__ import annotations

import argparse
import gc
from dataclasses import dataclass
from pathlib import Path

import pandas as pd
import torch

from refseg_lib.models.cmsa import _attend_full
from refseg_lib.records import hardware_info
from refseg_lib.reports import write_table

MB = 2**20


@dataclass(frozen=True)
class Case:
    name: str
    batch: int
    words: int
    side: int  # the level's map is side x side
    key_dim: int

    @property
    def positions(self) -> int:
        return self.words * self.side * self.side

    def matrix_mb(self, bytes_per: int = 4) -> float:
        """The L x L weights of eq. (3), per image."""
        return self.positions**2 * bytes_per / MB


CASES = [
    Case("quick profile (80 px, stride 8, ~9 words, keys 16), batch 16", 16, 9, 10, 16),
    Case("160 px, stride 8, 20 words, keys 64, batch 1", 1, 20, 20, 64),
    Case("paper (320 px, stride 8, 20 words, res5 keys 512), batch 1", 1, 20, 40, 512),
]


def written_out(q, k, v, valid):
    batch, n, p, d = q.shape
    q, k, v = (x.reshape(batch, n * p, d) for x in (q, k, v))
    keys = valid[:, :, None].expand(batch, n, p).reshape(batch, 1, n * p)
    weights = torch.softmax((q @ k.transpose(1, 2)).masked_fill(~keys, -torch.inf), dim=-1)
    return (weights @ v).view(batch, n, p, d)


class PeakMemory:
    """Peak memory added inside the ``with`` block, in MiB (CUDA allocator or CPU VmHWM)."""

    def __init__(self, device: torch.device):
        self.device = device

    def __enter__(self):
        gc.collect()
        if self.device.type == "cuda":
            torch.cuda.synchronize()
            torch.cuda.reset_peak_memory_stats()
            self.start = torch.cuda.memory_allocated()
        else:
            Path("/proc/self/clear_refs").write_text("5")  # resets VmHWM to the current RSS
            self.start = _status_kb("VmRSS") * 1024
        return self

    def __exit__(self, *exc):
        if self.device.type == "cuda":
            torch.cuda.synchronize()
            peak = torch.cuda.max_memory_allocated()
        else:
            peak = _status_kb("VmHWM") * 1024
        self.mb = (peak - self.start) / MB


def _status_kb(field: str) -> int:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1])
    raise RuntimeError(f"{field} not in /proc/self/status (the CPU measure needs Linux)")


def measure(case: Case, attend, device: torch.device) -> float:
    generator = torch.Generator().manual_seed(0)
    shape = (case.batch, case.words, case.side * case.side, case.key_dim)
    q, k, v = (torch.randn(shape, generator=generator).to(device).requires_grad_()
               for _ in range(3))
    valid = torch.ones(case.batch, case.words, dtype=torch.bool, device=device)
    valid[:, case.words * 2 // 3:] = False  # a third of the words are padding
    with PeakMemory(device) as peak:
        attend(q, k, v, valid).sum().backward()
    return peak.mb


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--paper", action="store_true", help="also run the paper case (GPU)")
    args = parser.parse_args()
    device = torch.device(args.device)
    rows = []
    for case in CASES:
        run = case is not CASES[-1] or args.paper
        ours = measure(case, _attend_full, device) if run else None
        explicit = measure(case, written_out, device) if run else None
        rows.append({"case": case.name, "L = N h w": case.positions,
                     "eq. 3 matrix per image, fp32 (MiB)": case.matrix_mb(4),
                     "bf16 (MiB)": case.matrix_mb(2),
                     "written out, measured (MiB)": explicit, "ours, measured (MiB)": ours,
                     "written out / ours": explicit / ours if run else None})
    table = pd.DataFrame(rows)
    print(table.to_string(index=False))
    hardware = hardware_info(device)
    write_table(table, "cmsa_attention_memory", "CMSA attention: peak memory of one level",
                notes=[f"forward + backward of one level's full attention (eqs. 2-3) on "
                       f"{args.device}; peak memory above the inputs: "
                       + ("torch.cuda.max_memory_allocated" if device.type == "cuda" else
                          "the process's peak resident set (VmHWM)"),
                       "written out: softmax(q k^T) v with the padding mask; ours: "
                       "refseg_lib.models.cmsa._attend_full (scaled_dot_product_attention)",
                       "the paper case is computed only (its written-out backward needs about "
                       "3 L^2 floats, some 12 GB) unless run with --paper on a GPU",
                       f"machine: {hardware['device_name']}, {hardware['cpu_count']} CPUs, "
                       f"torch {hardware['torch']}"],
                floatfmt=".1f")


if __name__ == "__main__":
    main()
