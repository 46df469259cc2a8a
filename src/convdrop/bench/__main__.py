"""``python -m convdrop.bench``: the same as ``convdrop bench``."""

from convdrop.bench.ops import main

raise SystemExit(main())
