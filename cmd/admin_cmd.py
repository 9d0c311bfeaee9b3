"""Thin script: see framework/commands/admin.py."""
import sys

from framework.commands.admin import main

if __name__ == "__main__":
    sys.exit(main())
