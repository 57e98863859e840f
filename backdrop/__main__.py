"""`python -m backdrop ...`: the same as the `backdrop` command."""

import sys

from backdrop.cli import main

sys.exit(main())
