"""``python -m convdrop.bench``: the same as ``convdrop bench``.

The one upward import in :mod:`convdrop.bench`: an entry point runs the command line,
which sits above every layer. Nothing imports this module.
"""

import sys

from convdrop.cli import main

sys.exit(main(["bench", *sys.argv[1:]]))
