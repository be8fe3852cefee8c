"""The process group of data-parallel training (torchrun, ``momos train --nproc``).

:func:`join_group` finds or starts the group of this process; :func:`from_lead` runs a step
on rank 0 alone (reading, measuring, writing) and hands its value, or its error, to every
rank. Used by :mod:`momos.train`.
"""

from __future__ import annotations

import atexit
import os
import pickle
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import torch
from torch import distributed as dist

__all__ = ["Ranks", "from_lead", "join_group", "resolve_device"]


def resolve_device(name: str) -> torch.device:
    """``auto`` -> CUDA when available, else CPU; ``cuda`` without CUDA is an error."""
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if name == "cuda" and not torch.cuda.is_available():
        raise ValueError("device='cuda' but torch.cuda.is_available() is False; "
                         "use 'cpu' or 'auto'")
    return torch.device(name)


# What torchrun sets and ``init_process_group``'s env:// rendezvous reads.
_TORCHRUN_VARS = ("RANK", "WORLD_SIZE", "MASTER_ADDR", "MASTER_PORT")


@dataclass(frozen=True)
class Ranks:
    """This process's place in a data-parallel run of ``world >= 2`` processes."""

    rank: int
    world: int
    device: torch.device

    @property
    def lead(self) -> bool:
        """Rank 0: the one that evaluates, measures and writes."""
        return self.rank == 0


def join_group(device: str) -> Ranks | None:
    """The data-parallel group of this process, or None to train in one process.

    An initialized default group of two or more ranks is used as it is. Otherwise, when the
    variables of torchrun are set with ``WORLD_SIZE >= 2``, a group is started from them:
    gloo on CPU, nccl on CUDA, where rank ``r`` uses ``cuda:LOCAL_RANK``. That group stays
    up for later calls in this process and is destroyed at exit: a second rendezvous on
    torchrun's store would find the first one's stale addresses.
    """
    available = dist.is_available()
    if available and dist.is_initialized():
        world = dist.get_world_size()
    elif all(var in os.environ for var in _TORCHRUN_VARS):
        world = int(os.environ["WORLD_SIZE"])
    else:
        return None
    if world < 2:
        return None
    if not available:
        raise ValueError(f"WORLD_SIZE={world} asks for {world} processes, but this torch is "
                         "built without torch.distributed; run one process")
    where = resolve_device(device)
    if where.type == "cuda":
        local = int(os.environ.get("LOCAL_RANK", torch.cuda.current_device()))
        count = torch.cuda.device_count()
        if local >= count:
            raise ValueError(
                f"the process with LOCAL_RANK={local} needs cuda:{local}, but {count} CUDA "
                f"device(s) are visible: run at most {count} process(es) per machine on "
                "CUDA, or train on device='cpu'")
        where = torch.device("cuda", local)
        torch.cuda.set_device(where)  # nccl's object collectives use the current device
    if not dist.is_initialized():
        dist.init_process_group("nccl" if where.type == "cuda" else "gloo")
        atexit.register(_leave_group)
    return Ranks(dist.get_rank(), dist.get_world_size(), where)


def _leave_group() -> None:
    if dist.is_initialized():
        # Every rank tears down together: a rank that closes its connections while a
        # peer is still exiting can make the peer's gloo threads abort it (SIGABRT, seen
        # once in CI with `momos train --nproc 2` after the run had finished).
        try:
            dist.barrier()
        finally:
            dist.destroy_process_group()


def from_lead(ranks: Ranks | None, fn: Callable[[], Any]) -> Any:
    """``fn()`` run on rank 0 alone; its value, or the exception it raised, on every rank.

    Rank 0 alone reads and writes the run directory. Its errors are broadcast too, so that
    every rank raises instead of the others waiting forever at the next collective.
    """
    if ranks is None:
        return fn()
    box: list[Any] = [None, None]
    error = None
    if ranks.lead:
        try:
            box[0] = fn()
        except Exception as err:  # re-raised on every rank below
            error = box[1] = err
            try:
                pickle.dumps(err)
            except Exception:  # an exception that cannot travel goes as its text
                box[1] = RuntimeError(f"rank 0 failed: {type(err).__name__}: {err}")
    dist.broadcast_object_list(box, src=0)
    if box[1] is not None:
        raise error if error is not None else box[1]
    return box[0]
