"""Thin script: see apps/commands/game_api.py (also `pipeline game-api`)."""
import sys

from apps.commands.game_api import main

if __name__ == "__main__":
    sys.exit(main())
