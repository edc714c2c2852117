"""`python -m sweeps ...` is `diloco-sweep ...` (for `ray job submit -- python -m sweeps run SPEC`)."""

import sys

from .cli import main

sys.exit(main())
