"""`python -m testbed.cli`: the same as `prism-testbed`."""

import sys

from . import main

sys.exit(main())
