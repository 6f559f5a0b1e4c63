"""``python -m kdsuite`` runs the command line."""
import sys

from kdsuite.cli import main

sys.exit(main())
