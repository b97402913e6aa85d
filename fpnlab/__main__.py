"""`python -m fpnlab ...` (and `torchrun -m fpnlab train ...`) run the command line."""

import sys

from fpnlab.cli import main

sys.exit(main())
