"""``python -m meterhub.cli``: the same command line as the ``meterhub`` script."""

import sys

from . import main

if __name__ == "__main__":
    sys.exit(main())
