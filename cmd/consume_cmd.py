"""Thin script: see framework/commands/consume.py."""
import sys
from pathlib import Path

# `python cmd/consume_cmd.py` puts cmd/ first on sys.path; the project root holds the
# shipped `apps` package (and modules users pass with --module).
sys.path.insert(1, str(Path(__file__).resolve().parent.parent))

from framework.commands.consume import main

if __name__ == "__main__":
    sys.exit(main())
