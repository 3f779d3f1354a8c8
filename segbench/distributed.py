"""One evaluation over several processes started by ``torchrun``: who is who, and what they exchange.

torchrun sets RANK, WORLD_SIZE, LOCAL_RANK and LOCAL_WORLD_SIZE (the ranks on
its node) in each process (rank). Every rank evaluates a contiguous shard of
each dataset on its own device; rank 0 gathers the ranks' metric states and
merges them in rank order. Shards are contiguous and unpadded, so the merged
state holds each image once, with the records in dataset order: the same state
as one process builds from the same model outputs, hence the same figures, to
the bit. (A model's floats, such as the confidences calibration scores, can
differ in their last bits with the batch an image is in and with torch's
thread count, which torchrun sets to 1 per rank.) Only rank 0 writes the run
folder.

The ranks exchange small Python objects only (metric states, errors, the run
folder's path), through torch.distributed's object collectives, over NCCL
when the ranks run on GPUs and gloo on CPUs. A single process is a world of
size one, where every exchange is the identity: one code path for both.
"""

from __future__ import annotations

import copy
import os
from datetime import timedelta
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any, TypeVar

import torch
import torch.distributed as dist

from segbench.errors import UserError

T = TypeVar("T")

# How long a rank waits for the others at a cell's end; rank 0 profiles alone (efficiency) while
# the others wait, which the collectives' default timeouts (10 min with NCCL) can cut short.
TIMEOUT = timedelta(hours=1)


@dataclass(frozen=True)
class World:
    rank: int = 0
    size: int = 1
    local_rank: int = 0
    local_size: int = 1
    """The ranks on this rank's node, this one included."""

    @property
    def main(self) -> bool:
        return self.rank == 0

    def shard(self, count: int) -> range:
        """This rank's contiguous part of ``count`` items; part sizes differ by one at most."""
        return range(self.rank * count // self.size, (self.rank + 1) * count // self.size)

    def share(self, cores: int) -> int:
        """This rank's part of its node's ``cores``: the ranks of a node split them evenly; at least 1."""
        return max(1, cores // self.local_size)

    def broadcast(self, obj: T) -> T:
        """Rank 0's ``obj``, on every rank."""
        if self.size == 1:
            return obj
        box = [obj]
        dist.broadcast_object_list(box, src=0)
        return box[0]

    def gather(self, obj: T) -> list[T] | None:
        """Every rank's ``obj``, in rank order, on rank 0; None on the other ranks."""
        if self.size == 1:
            return [obj]
        gathered: list[Any] | None = [None] * self.size if self.main else None
        dist.gather_object(obj, gathered, dst=0)
        return gathered

    def device(self, device: torch.device) -> torch.device:
        """The device of this rank: with several ranks on GPUs, ``cuda:LOCAL_RANK``."""
        if self.size == 1 or device.type != "cuda":
            return device
        if device.index is not None:
            raise UserError(f"under torchrun each rank uses cuda:LOCAL_RANK; give the device as 'cuda' "
                            f"or 'auto', not {str(device)!r}", field="device")
        if self.local_rank >= torch.cuda.device_count():
            raise UserError(f"rank {self.rank} has LOCAL_RANK {self.local_rank} but this node has "
                            f"{torch.cuda.device_count()} GPUs; start at most that many processes per node",
                            field="device")
        return torch.device("cuda", self.local_rank)


def world_from_env() -> World:
    """The world torchrun describes in the environment; one process when it does not."""
    return World(rank=int(os.environ.get("RANK", 0)), size=int(os.environ.get("WORLD_SIZE", 1)),
                 local_rank=int(os.environ.get("LOCAL_RANK", 0)),
                 local_size=int(os.environ.get("LOCAL_WORLD_SIZE", 1)))


@contextmanager
def joined(world: World, device: torch.device) -> Iterator[None]:
    """The default process group for the run's duration, unless the caller already made one."""
    if world.size == 1 or dist.is_initialized():
        yield
        return
    if device.type == "cuda":
        torch.cuda.set_device(device)
    dist.init_process_group(backend="nccl" if device.type == "cuda" else "gloo", timeout=TIMEOUT)
    try:
        yield
    finally:
        dist.destroy_process_group()


def portable(state: T) -> T:
    """A shallow copy of a metric state with its tensors on the CPU, to travel between ranks."""
    moved = copy.copy(state)
    for name, value in vars(moved).items():
        if isinstance(value, torch.Tensor):
            setattr(moved, name, value.cpu())
        elif isinstance(value, torch.device):
            setattr(moved, name, torch.device("cpu"))
    return moved
