"""`python -m diffbench.cli`: the `diffbench` command."""

import sys

from diffbench.cli import main

sys.exit(main())
