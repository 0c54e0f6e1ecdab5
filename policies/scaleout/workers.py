"""Rollout workers: the training loop's envs split over N workers, as Ray actors or serially.

Each :class:`RolloutWorker` owns a batch of the task's envs and a copy of the learner, which
acts only. A round goes:

1. the driver sends ``learner.rollout_state()`` (the policy's weights) to every worker: inside
   the calls when small, else once through Ray's object store (``ray.put``);
2. each worker plays ``round_steps`` steps of its envs and returns them stacked, with its own
   state (envs, observation, RNG) at the round's end. What crosses Ray is kept small and cheap:
   ``final_obs`` only where an episode ended (elsewhere it is the next observation) and tensors
   as NumPy arrays (torch's pickling of a tensor costs ~20x more);
3. :class:`WorkerRollout` joins the workers' batches along the env axis and hands the loop
   one batched step at a time, so the learner sees what it would see from ``num_envs`` envs
   in this process: PPO's rollout fills as the round is replayed and it updates at the round's
   end (the default round is its rollout length); SAC stores each step and keeps its
   update-to-data ratio, acting with weights up to one round old.

Every worker seeds its envs and its torch RNG from the run's seed and its index, and runs
inside its own RNG state, so the rounds do not depend on where a worker runs: ``serial``
mode (the workers one after another in this process, no Ray) gives bit-identical results.
A worker that dies mid-round is replaced by a new actor loaded with the state it had at the
round's start, and the round is played again: the learner never sees a partial round.

Learners that keep memory across steps (those that override ``Learner.episodes_ended``:
recurrent and in-context policies) act in workers when they implement the memory hooks of
:class:`~embodied.policies.base.Learner`: a worker's copy keeps its envs' memory (saved with the
worker's state), and sends with each step its ``act_record`` (what ``observe`` needs from the act:
for AACD's student the memory at the step, its input and the sampled action's log-probability),
which the driver's learner takes (``take_act_record``) before observing the step (SRL needs
none: its ``observe`` derives all it stores from the played primitive steps). AACD/AAC, ReLIC,
LSTM-Nav and SRL implement them; a learner with memory that does not is refused.
"""

from __future__ import annotations

import logging
import os
import time
from collections.abc import Callable
from typing import TYPE_CHECKING, Any, NamedTuple

import numpy as np
import torch

from embodied.policies.base import Learner
from embodied.policies.train import RunSpec, Step, TrainCfg, build_env, build_learner, learner_classes

if TYPE_CHECKING:
    from embodied.sim.env import BatchedEnv

log = logging.getLogger(__name__)

WORKER_SEED_STRIDE = 1_000_003
"""Worker i of a run with seed s uses seed s + i * stride: no two workers of runs with nearby
seeds (a seed sweep) share envs."""
DEFAULT_ROUND_STEPS = 64
ACT_RECORD = "act_record"
"""The key under which a step's ``info`` carries the worker's act record to the driver."""
MAX_ROUND_RETRIES = 3
INLINE_POLICY_BYTES = 64 * 1024
"""Policies up to this size are sent with each round's calls, not put in
Ray's object store (Ray inlines arguments under 100 kB)."""


def worker_seed(seed: int, index: int) -> int:
    return seed + WORKER_SEED_STRIDE * index


class RolloutWorker:
    """A batch of ``num_envs`` envs of the run's task and an acting copy of its learner (on CPU)."""

    def __init__(self, run: RunSpec, num_envs: int, seed: int, torch_threads: int = 1) -> None:
        torch.set_num_threads(torch_threads)
        with torch.random.fork_rng(devices=[]):  # leave the caller's RNG alone (serial mode)
            torch.manual_seed(seed)
            self.env: BatchedEnv = build_env(run.task_id, num_envs, "cpu", seed, run.task_overrides, run.adapters)
            self.learner = build_learner(run.algo, self.env, "cpu", run.learner_cfg)
            self.obs, _ = self.env.reset(seed=seed)
            self.rng = torch.get_rng_state()

    def describe(self) -> dict[str, Any]:
        """The spaces and decision rate the driver's learner is built for."""
        return {"single_observation_space": self.env.single_observation_space,
                "single_action_space": self.env.single_action_space,
                "primitive_steps_per_step": self.env.primitive_steps_per_step}

    def run_round(self, policy_state: dict[str, Any], num_steps: int) -> dict[str, Any]:
        """Play ``num_steps`` steps with the policy ``policy_state``; returns ``steps`` (every
        field stacked: (num_steps, num_envs, ...)), ``state`` (this worker after the round) and
        ``compute_s`` (seconds spent stepping and acting)."""
        start = time.perf_counter()
        self.learner.load_rollout_state(policy_state)
        steps = []
        with torch.random.fork_rng(devices=[]):
            torch.set_rng_state(self.rng)
            for _ in range(num_steps):
                with torch.no_grad():
                    action = self.learner.act(self.obs)
                record = self.learner.act_record()
                next_obs, reward, terminated, truncated, info = self.env.step(action)
                if record is not None:
                    info = {**info, ACT_RECORD: record}
                steps.append(Step(self.obs, action, reward, terminated, truncated, info))
                self.learner.episodes_ended(terminated | truncated)  # memory learners clear those envs
                self.obs = next_obs
            self.rng = torch.get_rng_state()
        stacked = Step(*(_map_trees(torch.stack, [step[k] for step in steps]) for k in range(len(Step._fields))))
        stacked = drop_repeated_final_obs(stacked, self.obs)
        return {"steps": stacked, "state": self.state_dict(), "compute_s": time.perf_counter() - start}

    def state_dict(self) -> dict[str, Any]:
        return {"env": self.env.state_dict(), "obs": self.obs, "rng": self.rng, "memory": self.learner.act_memory()}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.env.load_state_dict(state["env"])
        self.obs = state["obs"]
        self.rng = state["rng"]
        self.learner.load_act_memory(state.get("memory", {}))

    def location(self) -> dict[str, Any]:
        """This worker's process id and Ray node id (None outside Ray): where its pool placed it."""
        import sys

        ray = sys.modules.get("ray")  # imported only where the worker runs as an actor
        node = ray.get_runtime_context().get_node_id() if ray is not None and ray.is_initialized() else None
        return {"pid": os.getpid(), "node": node}


class WorkerRollout:
    """The loop's rollout source with ``cfg.workers`` workers sharing ``cfg.num_envs`` envs."""

    def __init__(self, run: RunSpec, cfg: TrainCfg) -> None:
        check_supported(run.algo)
        if cfg.num_envs % cfg.workers:
            raise ValueError(f"num_envs={cfg.num_envs} cannot be split evenly over workers={cfg.workers}; "
                             "give --num-envs as a multiple of --workers")
        self.num_envs = cfg.num_envs
        self.round_steps = cfg.round_steps
        per_worker = cfg.num_envs // cfg.workers
        if cfg.worker_mode == "serial":
            self.pool: SerialPool | RayPool = SerialPool(run, per_worker, cfg.workers, cfg.seed, cfg.torch_threads)
        elif cfg.worker_mode == "ray":
            self.pool = RayPool(run, per_worker, cfg.workers, cfg.seed, cfg.torch_threads, cfg.ray_address)
        else:
            raise ValueError(f"worker_mode must be 'ray' or 'serial', got {cfg.worker_mode!r}")
        try:
            spaces = self.pool.describe()
        except BaseException:
            self.pool.close()  # a private Ray instance ends here, not with the process
            raise
        self.single_observation_space = spaces["single_observation_space"]
        self.single_action_space = spaces["single_action_space"]
        self.primitive_steps_per_step = spaces["primitive_steps_per_step"]
        self.round: Step | None = None
        """The current round, every field (round_steps, num_envs, ...), replayed step by step."""
        self.next_index = 0
        self.timing = {"rounds": 0, "round_s": 0.0, "compute_s": 0.0}
        """Wall time of the rounds and the slowest worker's compute in each, summed (overhead)."""

    def next_step(self, learner: Learner) -> Step:
        if self.round is None or self.next_index == len(self.round.reward):
            self._collect_round(learner)
        assert self.round is not None
        t = self.next_index
        self.next_index += 1
        step = Step(*(_map_tree(lambda x: x[t], field) for field in self.round))
        record = step.info.pop(ACT_RECORD, None)
        if record is not None:
            learner.take_act_record(step.obs, step.action, record)
        return step

    def _collect_round(self, learner: Learner) -> None:
        num_steps = self.round_steps or getattr(learner, "num_steps", None) or DEFAULT_ROUND_STEPS
        policy_state = _map_tree(lambda x: x.detach().cpu() if isinstance(x, torch.Tensor) else x, learner.rollout_state())
        start = time.perf_counter()
        results = self.pool.run_round(policy_state, num_steps)
        self.timing["round_s"] += time.perf_counter() - start
        self.timing["compute_s"] += max(r["compute_s"] for r in results)
        self.timing["rounds"] += 1
        rounds = [restore_final_obs(r["steps"], r["state"]["obs"]) for r in results]
        # Join the workers' envs: worker i's envs are rows [i * per_worker, (i + 1) * per_worker).
        self.round = Step(*(_map_trees(lambda xs: torch.cat(xs, dim=1), [steps[k] for steps in rounds])
                            for k in range(len(Step._fields))))
        self.next_index = 0

    def state_dict(self) -> dict[str, Any]:
        """The workers' states after the last round and what of that round the loop has not seen."""
        return {"workers": {"states": self.pool.states, "round": self.round and self.round._asdict(),
                            "next_index": self.next_index}}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        saved = state.get("workers")
        if saved is None:
            raise ValueError("this checkpoint was written without rollout workers; resume it without --workers")
        if len(saved["states"]) != len(self.pool.states):
            raise ValueError(f"this checkpoint has {len(saved['states'])} rollout workers, the run {len(self.pool.states)}")
        self.pool.load_states(saved["states"])
        self.round = Step(**saved["round"]) if saved["round"] is not None else None
        self.next_index = int(saved["next_index"])

    def close(self) -> None:
        self.pool.close()


def check_supported(algo: str) -> None:
    """Refuse learners with memory across steps that lack the hooks to act in a worker."""
    learner_cls, _ = learner_classes(algo)
    has_memory = learner_cls.episodes_ended is not Learner.episodes_ended
    if has_memory and learner_cls.act_memory is Learner.act_memory:
        raise ValueError(f"{algo} keeps memory across steps (a recurrent or in-context policy) and does not "
                         "implement the hooks that let rollout workers carry it; train it without --workers")


# ---------------------------------------------------------------------------- pools
class SerialPool:
    """The workers in this process, one after another: no Ray, the same rounds."""

    def __init__(self, run: RunSpec, per_worker: int, num_workers: int, seed: int, torch_threads: int) -> None:
        self.workers = [RolloutWorker(run, per_worker, worker_seed(seed, i), torch_threads) for i in range(num_workers)]
        self.states: list[dict[str, Any]] = [w.state_dict() for w in self.workers]

    def describe(self) -> dict[str, Any]:
        return self.workers[0].describe()

    def run_round(self, policy_state: dict[str, Any], num_steps: int) -> list[dict[str, Any]]:
        results = [w.run_round(policy_state, num_steps) for w in self.workers]
        self.states = [r["state"] for r in results]
        return results

    def load_states(self, states: list[dict[str, Any]]) -> None:
        for worker, state in zip(self.workers, states, strict=True):
            worker.load_state_dict(state)
        self.states = list(states)

    def close(self) -> None:
        for worker in self.workers:
            worker.env.close()


class RayRolloutWorker(RolloutWorker):
    """A rollout worker as a Ray actor: its rounds and the policy cross Ray as NumPy arrays."""

    def run_round(self, policy_state: dict[str, Any], num_steps: int) -> dict[str, Any]:
        return to_wire(super().run_round(from_wire(policy_state), num_steps))


class RayPool:
    """The workers as Ray actors (one CPU each, spread over the cluster's nodes)."""

    def __init__(
        self, run: RunSpec, per_worker: int, num_workers: int, seed: int, torch_threads: int, address: str
    ) -> None:
        from embodied.policies.scaleout.cluster import ray_session

        self._session = ray_session(address)
        self.ray = self._session.__enter__()
        self._actor_cls = self.ray.remote(num_cpus=1, scheduling_strategy="SPREAD")(RayRolloutWorker)
        self._args = (run, per_worker, seed, torch_threads)
        self.actors = [self._start(i) for i in range(num_workers)]
        self.states: list[dict[str, Any]] = self.ray.get([actor.state_dict.remote() for actor in self.actors])
        """Each worker's state after the last round, to replace a worker that dies from."""

    def _start(self, index: int, state: dict[str, Any] | None = None) -> Any:
        run, per_worker, seed, torch_threads = self._args
        actor = self._actor_cls.remote(run, per_worker, worker_seed(seed, index), torch_threads)
        if state is not None:
            actor.load_state_dict.remote(state)  # an actor's calls run in order: loaded before its next round
        return actor

    def describe(self) -> dict[str, Any]:
        return self.ray.get(self.actors[0].describe.remote())

    def run_round(self, policy_state: dict[str, Any], num_steps: int) -> list[dict[str, Any]]:
        ray = self.ray
        # A small policy travels inside each call; a large one goes once to the object store,
        # read by every worker (a put costs a few ms more than Ray's inlined arguments).
        policy = to_wire(policy_state)
        small = _tensor_bytes(policy_state) <= INLINE_POLICY_BYTES
        policy_ref = policy if small else ray.put(policy)
        pending = [actor.run_round.remote(policy_ref, num_steps) for actor in self.actors]
        results = []
        for index, future in enumerate(pending):
            for attempt in range(MAX_ROUND_RETRIES + 1):
                try:
                    results.append(from_wire(ray.get(future)))
                    break
                except ray.exceptions.RayActorError as err:
                    if attempt == MAX_ROUND_RETRIES:
                        raise RuntimeError(f"rollout worker {index} died {attempt + 1} times in one round; giving up "
                                           f"(last error: {type(err).__name__})") from err
                    log.warning("rollout worker %d died mid-round (%s); replacing it and replaying its round",
                                index, type(err).__name__)
                    self.actors[index] = self._start(index, self.states[index])
                    future = self.actors[index].run_round.remote(policy_ref, num_steps)
        self.states = [r["state"] for r in results]
        return results

    def load_states(self, states: list[dict[str, Any]]) -> None:
        self.ray.get([actor.load_state_dict.remote(state) for actor, state in zip(self.actors, states, strict=True)])
        self.states = list(states)

    def close(self) -> None:
        for actor in self.actors:
            self.ray.kill(actor)
        self.actors = []
        self._session.__exit__(None, None, None)


# ---------------------------------------------------------------------------- the wire
class WireArray(NamedTuple):
    """A tensor crossing Ray as a NumPy array: pickling 20-odd torch tensors costs ~5 ms a
    round on each side, their arrays ~0.3 ms (measured on Hopper's 2048-step round)."""

    array: np.ndarray


def to_wire(tree: Any) -> Any:
    """``tree`` (nested dicts, lists, tuples) with its CPU tensors as :class:`WireArray`s."""
    return _walk_leaves(torch.Tensor, _tensor_to_wire, tree)


def from_wire(tree: Any) -> Any:
    """Undo :func:`to_wire`."""
    return _walk_leaves(WireArray, _wire_to_tensor, tree)


def _tensor_to_wire(tensor: torch.Tensor) -> torch.Tensor | WireArray:
    try:
        return WireArray(tensor.detach().numpy())
    except TypeError:  # a dtype NumPy lacks (bfloat16): torch pickles it
        return tensor


def _wire_to_tensor(leaf: WireArray) -> torch.Tensor:
    # Ray hands out large arrays read-only, in its shared memory: the learner gets its own copy.
    return torch.from_numpy(leaf.array if leaf.array.flags.writeable else leaf.array.copy())


def _walk_leaves(leaf_type: type, fn: Callable[[Any], Any], tree: Any) -> Any:
    """``fn`` of every ``leaf_type`` in nested dicts, lists and tuples (their types kept)."""
    if isinstance(tree, leaf_type):
        return fn(tree)
    if isinstance(tree, dict):
        out = type(tree)((k, _walk_leaves(leaf_type, fn, v)) for k, v in tree.items())
        if hasattr(tree, "__dict__"):
            out.__dict__.update(vars(tree))  # an nn.Module state dict's _metadata
        return out
    if isinstance(tree, tuple) and hasattr(tree, "_fields"):
        return type(tree)(*(_walk_leaves(leaf_type, fn, v) for v in tree))
    if isinstance(tree, list | tuple):
        return type(tree)(_walk_leaves(leaf_type, fn, v) for v in tree)
    return tree


# ---------------------------------------------------------------------------- final_obs
FINAL_OBS_AT_DONE = "final_obs_at_done"
"""Replaces ``info["final_obs"]`` in a round sent by a worker: only the rows where an episode ended."""


def drop_repeated_final_obs(steps: Step, end_obs: Any) -> Step:
    """``steps`` with ``info["final_obs"]`` cut to the rows where an episode ended.

    Everywhere else the env's ``final_obs`` is the next step's observation, so sending it
    would double the round's size (and Ray's cost of moving it). An env whose ``final_obs``
    differs from the next observation somewhere else keeps it whole.
    """
    final = steps.info.get("final_obs")
    if final is None:
        return steps
    done = steps.terminated | steps.truncated
    next_obs = _next_observations(steps.obs, end_obs)
    if not all(torch.equal(f[~done], n[~done]) for f, n in zip(_leaves(final), _leaves(next_obs), strict=True)):
        return steps
    info = {k: v for k, v in steps.info.items() if k != "final_obs"}
    return steps._replace(info=info | {FINAL_OBS_AT_DONE: _map_tree(lambda x: x[done], final)})


def restore_final_obs(steps: Step, end_obs: Any) -> Step:
    """Undo :func:`drop_repeated_final_obs` (``end_obs``: the worker's observation after the round)."""
    if FINAL_OBS_AT_DONE not in steps.info:
        return steps
    info = dict(steps.info)
    at_done = info.pop(FINAL_OBS_AT_DONE)
    done = steps.terminated | steps.truncated
    final = _next_observations(steps.obs, end_obs)
    for full, rows in zip(_leaves(final), _leaves(at_done), strict=True):
        full[done] = rows
    return steps._replace(info=info | {"final_obs": final})


def _next_observations(obs: Any, end_obs: Any) -> Any:
    """Each step's next observation: the round's observations shifted by one, then ``end_obs``."""
    return _map_trees(lambda xs: torch.cat([xs[0][1:], xs[1].unsqueeze(0)]), [obs, end_obs])


def _tensor_bytes(tree: Any) -> int:
    return sum(x.numel() * x.element_size() for x in _leaves(tree) if isinstance(x, torch.Tensor))


def _leaves(tree: Any) -> list[torch.Tensor]:
    if isinstance(tree, dict):  # sorted: two trees of the same space pair up leaf by leaf
        return [leaf for key in sorted(tree) for leaf in _leaves(tree[key])]
    return [tree]


# ---------------------------------------------------------------------------- trees
def _map_tree(fn: Callable[[Any], Any], tree: Any) -> Any:
    """``fn`` applied to every leaf of nested dicts."""
    if isinstance(tree, dict):
        return {k: _map_tree(fn, v) for k, v in tree.items()}
    return fn(tree)


def _map_trees(fn: Callable[[list[torch.Tensor]], torch.Tensor], trees: list[Any], path: str = "step") -> Any:
    """``fn`` of the matching tensors of trees with the same structure (nested dicts of tensors)."""
    first = trees[0]
    if isinstance(first, dict):
        return {k: _map_trees(fn, [t[k] for t in trees], f"{path}.{k}") for k in first}
    if not isinstance(first, torch.Tensor):
        raise TypeError(f"rollout workers send tensors only; {path} is a {type(first).__name__}")
    return fn(trees)
