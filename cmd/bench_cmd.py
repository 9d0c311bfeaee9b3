"""Thin script: see bench/command.py (also `pipeline bench`).

    python cmd/bench_cmd.py --quick                       # every section, small counts (a few minutes)
    python cmd/bench_cmd.py --only produce,api            # some sections
    python cmd/bench_cmd.py --only sweep --partitions 1,3 --batch-size 16384,65536 --acks 1,all
"""
import sys

from framework.commands.pipeline import main

if __name__ == "__main__":
    sys.exit(main(["bench", *sys.argv[1:]]))
