"""What the runs say: statistics over seeds, tables, plots and ``report.md``.

- :mod:`.stats`: per-method summaries, Welch tests, t-intervals and Holm's correction.
- :mod:`.writer`: tables (markdown, text, rich), ``summary.csv`` and ``report.md``.
- :mod:`.plots`: learning curves and accuracy figures.

Pure functions of results already on disk: imports no other ``lab`` subpackage.
"""
