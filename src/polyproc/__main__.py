"""``python -m polyproc``: the same as the ``polyproc`` command."""

import sys

from ._cli import main

sys.exit(main())
