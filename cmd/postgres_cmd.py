"""Thin script: see framework/commands/postgres.py."""
import sys

from framework.commands.postgres import main

if __name__ == "__main__":
    sys.exit(main())
