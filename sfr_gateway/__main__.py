"""``python -m sfr_gateway`` is the same as the ``sfr-gateway`` command."""

import sys

from .cli import main

sys.exit(main())
