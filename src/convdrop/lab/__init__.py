"""The experiment runner, in subpackages along the path a comparison's data takes.

- :mod:`convdrop.lab.data`: datasets, transforms and the batched augmentation.
- :mod:`convdrop.lab.spec`: the spec, its TOML files, presets and methods.
- :mod:`convdrop.lab.train`: one run's training, its loaders, checkpoints and run folder.
- :mod:`convdrop.lab.report`: statistics over seeds, tables, plots and the report.
- :mod:`convdrop.lab.runs`: runs on disk and their execution, preflight, provenance.
- :mod:`convdrop.lab.sweep`: sweeps, on top of the rest.

Imports flow one way, linted in ``make test``: sweep > runs > report | train > spec > data.

Needs the ``lab`` extra (pydantic, rich, matplotlib, scipy, scikit-learn, Pillow);
importing it without them fails with one line that says what to install.
"""

from convdrop._extras import require

require("lab", "convdrop.lab", ("pydantic", "rich", "matplotlib", "scipy", "sklearn", "PIL"))
