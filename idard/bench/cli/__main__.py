"""``python -m idard.bench.cli``: the ``idard-bench`` command."""

import sys

from idard.bench.cli import main

sys.exit(main())
