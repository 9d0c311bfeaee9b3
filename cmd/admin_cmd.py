"""Thin script: see framework/commands/admin.py (also `pipeline admin`)."""
import sys

from framework.commands.admin import main

if __name__ == "__main__":
    sys.exit(main())
