"""One run's training: the loop, its data and loaders, checkpoints and the run folder.

- :mod:`.engine`: a training step and an epoch, evaluation, the optimizer and schedule.
- :mod:`.trainer`: one (method, seed) run from its first epoch or its last checkpoint.
- :mod:`.run_data`: a run's datasets and DataLoaders (streamed or in memory).
- :mod:`.checkpoint`: checkpoints with a checked header (run key, epoch, SHA-256).
- :mod:`.store`: a run folder's files (``metrics.csv``, ``result.json``) and paths.
- :mod:`.distributed`: the process group and sharding under torchrun.

May import :mod:`convdrop.lab.spec` and :mod:`convdrop.lab.data`; nothing above them.
"""
