"""Thin script: see framework/commands/query.py (also `pipeline query`)."""
import sys

from framework.commands.query import main

if __name__ == "__main__":
    sys.exit(main())
