"""``python -m framework.cli``: the ``ninelives`` command."""

import sys

from framework.cli.main import main

sys.exit(main())
