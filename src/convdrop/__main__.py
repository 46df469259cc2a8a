"""``python -m convdrop`` runs the command line (also under torchrun)."""

import sys

from convdrop.cli import main

sys.exit(main())
