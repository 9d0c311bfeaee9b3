"""Thin script: see framework/commands/trino.py."""
import sys

from framework.commands.trino import main

if __name__ == "__main__":
    sys.exit(main())
