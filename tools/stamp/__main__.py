"""`python -m stamp`: the same as the `stamp` command."""

import sys

from stamp.cli import main

sys.exit(main())
