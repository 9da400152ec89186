"""``python -m tada_zoo.cli ...`` (what ``torchrun -m tada_zoo.cli`` runs)."""
import sys

from . import main

sys.exit(main())
