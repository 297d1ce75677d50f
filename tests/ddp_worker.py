"""Worker of tests/test_ddp.py, started twice by ``torchrun --nproc_per_node=2``.

Each rank builds the tiny model of ``test_engine`` from its *own* seed (so DDP must broadcast
rank 0's weights), trains two steps with ``fit`` on CPU / gloo, and saves its initial and
final weights, the sample ids of its batches and its history to ``<out>/rank<r>.pt``.
Usage: ``torchrun --standalone --nproc_per_node=2 tests/ddp_worker.py OUT_DIR``.
"""

from __future__ import annotations

import sys
from pathlib import Path

import torch
from test_engine import TinyReferModel, tiny_data  # this script's folder is on sys.path

from refseg_lib.engine import TrainConfig, distributed_env, fit


def main(out: Path) -> None:
    env = distributed_env()
    data = tiny_data(num_train=32, num_val=8)
    torch.manual_seed(100 + env.rank)  # different weights on each rank before DDP
    model = TinyReferModel(data.vocab_size)
    initial = {name: tensor.clone() for name, tensor in model.state_dict().items()}
    batches: list[list[str]] = []
    config = TrainConfig(max_steps=2, batch_size=4, lr=1e-2, log_every=1, seed=0)
    result = fit(model, data.train, data.collate, config, val_set=data.val,
                 checkpoint_path=out / "ddp.pt", device="cpu", progress=False,
                 callbacks=[lambda step, state: batches.append(list(state["batch"].sample_ids))])
    torch.save({"initial": initial, "final": model.state_dict(), "batches": batches,
                "history": result.history, "final_val": result.final_val,
                "world_size": env.world_size},
               out / f"rank{env.rank}.pt")


if __name__ == "__main__":
    main(Path(sys.argv[1]))
