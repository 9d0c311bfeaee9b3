"""Thin script: see apps/commands/game_load.py (also `pipeline game-load`)."""
import sys

from apps.commands.game_load import main

if __name__ == "__main__":
    sys.exit(main())
