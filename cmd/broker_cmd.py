"""Thin script: see framework/commands/broker.py."""
import sys

from framework.commands.broker import main

if __name__ == "__main__":
    sys.exit(main())
