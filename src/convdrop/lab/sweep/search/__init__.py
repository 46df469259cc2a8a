"""Search instead of a grid: Optuna proposes settings, convdrop's runner trains and confirms.

A sweep's ``[sweep]`` table, read as ranges, is Optuna's search space
(:mod:`~convdrop.lab.sweep.search.space`); each trial trains one setting through the
ordinary run (:func:`convdrop.lab.runs.run.execute`, so run folders, run keys and resume
are a sweep's) and reports its validation accuracy every epoch for pruning
(:mod:`~convdrop.lab.sweep.search.objective`). The study lives in Optuna's storage, a
journal file inside ``--out`` or a database (:mod:`~convdrop.lab.sweep.search.study`),
where several processes add trials and an interrupted trial is queued again
(:mod:`~convdrop.lab.sweep.search.retry`). The best trial of a noisy objective is an
optimistic estimate, so the top settings and the control are re-run on fresh seeds by the
grid runner and only those runs give the verdict
(:mod:`~convdrop.lab.sweep.search.confirm`); :mod:`~convdrop.lab.sweep.search.report`
and :mod:`~convdrop.lab.sweep.search.plots` write it down, and
:mod:`~convdrop.lab.sweep.search.runner` puts the steps in order.

Needs the ``optuna`` extra (``pip install 'convdrop[optuna]'``), except
:mod:`~convdrop.lab.sweep.search.settings`, which the command line reads to build its
flags (``convdrop sweep --search optuna`` without Optuna is one line saying what to
install). Imports the rest of :mod:`convdrop.lab.sweep` and the layers below it, never
the other way.
"""
