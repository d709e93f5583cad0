"""``python -m aurora_dcc.cli``: the ``aurora-dcc`` command."""

from __future__ import annotations

import sys

from . import main

if __name__ == "__main__":
    sys.exit(main())
