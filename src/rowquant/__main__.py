"""``python -m rowquant``: the ``rowquant`` command (see :mod:`rowquant.cli`)."""

import sys

from .cli import main

if __name__ == "__main__":
    sys.exit(main())
