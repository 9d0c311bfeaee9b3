"""Thin script: see framework/commands/broker.py (also `pipeline broker`)."""
import sys

from framework.commands.broker import main

if __name__ == "__main__":
    sys.exit(main())
