"""Thin script: see framework/commands/consume.py (also `pipeline consume`)."""
import sys

from framework.commands.consume import main

if __name__ == "__main__":
    sys.exit(main())
