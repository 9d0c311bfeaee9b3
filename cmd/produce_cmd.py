"""Thin script: see framework/commands/produce.py (also `pipeline produce`).

    python cmd/produce_cmd.py metrics            # one producer, until the end of its stream
    python cmd/produce_cmd.py --all --follow     # every producer, keep waiting for new records
    python cmd/produce_cmd.py --list
"""
import sys

from framework.commands.produce import main

if __name__ == "__main__":
    sys.exit(main())
