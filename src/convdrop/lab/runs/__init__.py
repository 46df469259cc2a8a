"""Runs on disk and their execution: one run, the grid of runs, and the checks before it.

- :mod:`.run`: :func:`~.run.execute`, the unit of work every executor runs, and the
  checks of a finished run against its spec.
- :mod:`.lock`: one writer per folder (pid + host locks, stale ones taken over).
- :mod:`.runner`: the (method, seed) grid on an executor, resume, and the outputs of
  ``convdrop compare``.
- :mod:`.executors`: where runs execute: this process (local), a worker pool, or Ray.
- :mod:`.workers`: the worker pool whose processes die with the runner.
- :mod:`.ray_executor`: one Ray task per run, on a local Ray or a cluster.
- :mod:`.shared_out`: ``--out`` seen by every node (the token check) and progress read
  from the runs' files.
- :mod:`.preflight`: every check before the first line is printed or file written.
- :mod:`.provenance`: what a report records about how it ran.

May import :mod:`convdrop.lab.report`, :mod:`convdrop.lab.train`, :mod:`convdrop.lab.spec`
and :mod:`convdrop.lab.data`; only :mod:`convdrop.lab.sweep` imports it.
"""
