"""``python -m loadtest.chaos SCENARIO ...``: see :mod:`loadtest.chaos.cli`."""

import sys

from loadtest.chaos.cli import main

sys.exit(main())
