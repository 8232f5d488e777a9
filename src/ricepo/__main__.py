"""`python -m ricepo ...` (what `accelerate launch -m ricepo train ...` runs)."""

import sys

from .cli import main

sys.exit(main())
