"""``python -m framework.cli``: the ``polyguide`` command without the console script."""

from framework.cli.main import main

raise SystemExit(main())
