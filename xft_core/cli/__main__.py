"""`python -m xft_core.cli`: the `xft` command."""

import sys

from xft_core.cli.main import main

sys.exit(main())
