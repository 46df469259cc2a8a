"""The experiment runner: specs, data, training, statistics, reports and plots.

Needs the ``lab`` extra (pydantic, rich, matplotlib, scipy, scikit-learn, Pillow);
importing it without them fails with one line that says what to install.
"""

from convdrop._extras import require

require("lab", "convdrop.lab", ("pydantic", "rich", "matplotlib", "scipy", "sklearn", "PIL"))
