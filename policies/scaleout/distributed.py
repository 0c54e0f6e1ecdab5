"""Data-parallel learners under ``torchrun``: ``embodied train ... --distributed``.

    torchrun --nproc_per_node=2 --rdzv-backend=c10d --rdzv-endpoint=127.0.0.1:29400 \\
        -m embodied.cli train Control/Pendulum-v0 --algo sac --distributed

Every rank is one process with its own batch of envs (seed + rank) and a full learner. At the
start all ranks take rank 0's weights; after that every gradient is averaged over the ranks
the moment backward produces it (a hook on each parameter), before the learner's optimiser
steps, so the replicas stay identical without any change to the learners (DDP's contract:
same model, same number of backward passes per update on every rank). Gloo on CPU, NCCL on
GPU (``cuda:LOCAL_RANK``). State outside the gradients, such as replay buffers and PPO's
observation statistics, stays per rank.

torchrun's rendezvous store listens on all interfaces even with ``--standalone``: on a shared
machine run it inside a private network namespace (``docs/scaleout.md``).
"""

from __future__ import annotations

import os
from typing import Any

import torch
import torch.distributed as dist
from torch import nn

from embodied.policies.base import Learner


def join_process_group(device: str) -> int:
    """Join torchrun's process group (gloo for CPU, NCCL for CUDA); returns this process's rank."""
    if "RANK" not in os.environ or "WORLD_SIZE" not in os.environ:
        raise ValueError("--distributed runs under torchrun (it sets RANK and WORLD_SIZE), e.g. "
                         "torchrun --nproc_per_node=2 -m embodied.cli train TASK --algo sac --distributed")
    cuda = torch.device(device).type == "cuda"
    if cuda:
        torch.cuda.set_device(int(os.environ.get("LOCAL_RANK", 0)))
    if not dist.is_initialized():
        dist.init_process_group("nccl" if cuda else "gloo")
    return dist.get_rank()


def learner_tensors(learner: Learner) -> tuple[list[torch.Tensor], list[torch.Tensor]]:
    """The learner's trainable tensors, and every tensor of its networks (weights, targets,
    buffers): what rank 0 broadcasts at the start."""
    trainable: dict[int, torch.Tensor] = {}
    network: dict[int, torch.Tensor] = {}
    for value in vars(learner).values():
        if isinstance(value, nn.Module):
            for tensor in [*value.parameters(), *value.buffers()]:
                network[id(tensor)] = tensor
                if tensor.requires_grad:
                    trainable[id(tensor)] = tensor
        elif isinstance(value, torch.Tensor) and value.requires_grad:  # SAC's log(alpha)
            trainable[id(value)] = network[id(value)] = value
    return list(trainable.values()), list(network.values())


def average_gradients(learner: Learner) -> None:
    """Start every rank from rank 0's networks and average each gradient over the ranks."""
    trainable, network = learner_tensors(learner)
    with torch.no_grad():
        for tensor in network:
            dist.broadcast(tensor.data, src=0)
    world = dist.get_world_size()

    def all_reduce_mean(param: Any) -> None:
        dist.all_reduce(param.grad)
        param.grad.div_(world)

    for param in trainable:
        param.register_post_accumulate_grad_hook(all_reduce_mean)
