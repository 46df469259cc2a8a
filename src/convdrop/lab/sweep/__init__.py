"""Sweeps: "where and how strongly?" as a grid of generated methods over seeds.

- :mod:`.settings`: the ``[sweep]`` table (p or drop budget x block size x placement x
  schedule).
- :mod:`.presets`: the named sweeps.
- :mod:`.expand`: the settings expanded into a spec of generated methods.
- :mod:`.runner`: the runs through :mod:`convdrop.lab.runs`, then statistics and report.
- :mod:`.stats`, :mod:`.report`, :mod:`.plots`: intervals and "within noise of the best",
  ``sweep.md``, the dose-response plot and heatmap.
- :mod:`.search`: the same table searched by Optuna instead of walked as a grid, and the
  best settings confirmed on fresh seeds (``convdrop sweep --search optuna``).

The top of ``lab``: may import every other subpackage; none imports it.
"""
