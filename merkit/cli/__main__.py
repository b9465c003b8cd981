"""``python -m merkit.cli``: the same as the ``merkit`` command."""

import sys

from merkit.cli import main

sys.exit(main())
