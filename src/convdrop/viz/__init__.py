"""Pictures and explanations: masks, the correlation argument and the dropout explainer.

Needs the ``lab`` extra (matplotlib, Pillow, rich); imports the ops, layers and
placement below it, never ``lab``, ``bench`` or ``cli``.
"""

from convdrop._extras import require

require("lab", "convdrop.viz", ("matplotlib", "PIL"))
