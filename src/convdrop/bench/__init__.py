"""``convdrop bench``: DropBlock against the ``x * scalar`` floor, the peers and a model step.

Imports the ops, layers and models below it, never ``lab``, ``viz`` or ``cli``.
"""
