"""``fit`` under torchrun: two CPU processes (gloo) train one model on two data shards."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import torch

WORKER = Path(__file__).with_name("ddp_worker.py")
REPO = Path(__file__).resolve().parents[1]


def test_two_ranks_end_with_identical_weights(tmp_path):
    env = {**os.environ, "OMP_NUM_THREADS": "1",
           "PYTHONPATH": os.pathsep.join(filter(None, [str(REPO), os.environ.get("PYTHONPATH")]))}
    env.pop("WORLD_SIZE", None), env.pop("RANK", None), env.pop("LOCAL_RANK", None)
    command = [sys.executable, "-m", "torch.distributed.run", "--standalone",
               "--nproc_per_node=2", str(WORKER), str(tmp_path)]
    done = subprocess.run(command, env=env, capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, f"torchrun failed:\n{done.stdout}\n{done.stderr}"

    ranks = [torch.load(tmp_path / f"rank{r}.pt", weights_only=True) for r in (0, 1)]
    assert all(rank["world_size"] == 2 for rank in ranks)
    for name, initial in ranks[0]["initial"].items():
        assert not torch.equal(initial, ranks[1]["initial"][name])  # DDP had to broadcast
        assert torch.equal(ranks[0]["final"][name], ranks[1]["final"][name]), name
    assert any(not torch.equal(ranks[0]["final"][n], t) for n, t in ranks[0]["initial"].items())
    for batch_0, batch_1 in zip(ranks[0]["batches"], ranks[1]["batches"], strict=True):
        assert len(batch_0) == 4 and not set(batch_0) & set(batch_1)  # one shard per rank
    assert len(ranks[0]["batches"]) == 2
    assert ranks[0]["history"] == ranks[1]["history"]  # losses averaged over ranks
    assert ranks[0]["final_val"] == ranks[1]["final_val"]  # rank 0 evaluated, broadcast
    assert ranks[0]["final_val"]["n"] == 8
    checkpoint = torch.load(tmp_path / "ddp.pt", weights_only=True)
    assert checkpoint["world_size"] == 2 and checkpoint["progress"]["step"] == 2
    assert sorted(p.name for p in tmp_path.iterdir()) == ["ddp.pt", "rank0.pt", "rank1.pt"]
