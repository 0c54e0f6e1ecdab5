"""Scale-out: the one training loop on more cores and machines, on existing engines.

- :mod:`.cluster`: connecting to Ray (or starting a private local instance) with the network
  settings every Ray process of the suite runs with: loopback only, no usage pings, a capped
  object store.
- :mod:`.workers`: rollout workers, each a batched env of the task plus a copy of the
  learner's policy; ``train(..., TrainCfg(workers=N))`` collects its experience from them,
  as Ray actors or, bit-identically, one after another in this process.
- :mod:`.sweep`: ``embodied sweep``, tasks x algorithms x seeds x overrides as Ray Tune
  trials, resumable after the driver dies.
- :mod:`.distributed`: data-parallel learners under ``torchrun`` (``embodied train --distributed``).
- :mod:`.rllib`: suite task ids as RLlib environments.

Ray is an optional extra (``pip install 'embodied-suite[ray]'``); nothing here imports it
until it is needed. See ``docs/scaleout.md``.
"""
