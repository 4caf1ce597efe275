"""``python -m semcom.cli`` (and ``torchrun ... -m semcom.cli``): the ``semcom`` command line."""

import sys

from . import main

if __name__ == "__main__":
    sys.exit(main())
