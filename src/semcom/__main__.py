"""``python -m semcom``: the ``semcom`` command line."""

from .cli import main

raise SystemExit(main())
