"""`python -m sweeps ...` is `diloco-sweep ...` (for `ray job submit -- python -m sweeps run SPEC`)."""

import sys

from sweeps.cli import main

sys.exit(main())
