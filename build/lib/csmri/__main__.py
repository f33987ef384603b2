"""``python -m csmri ...`` runs the ``csmri`` command (see :mod:`csmri.app.cli`)."""

import sys

from csmri.app.cli import main

if __name__ == "__main__":
    sys.exit(main())
