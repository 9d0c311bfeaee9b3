"""Thin script: see apps/commands/api.py (also `pipeline api`)."""
import sys

from apps.commands.api import main

if __name__ == "__main__":
    sys.exit(main())
