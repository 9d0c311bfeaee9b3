"""Thin script: see framework/commands/tables.py."""
import sys

from framework.commands.tables import main

if __name__ == "__main__":
    sys.exit(main())
