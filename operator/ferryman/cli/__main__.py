"""``python -m ferryman.cli``: the same as ``kubectl ferryman``."""

import sys

from ferryman.cli import main

sys.exit(main())
