"""Thin script: see framework/bench/command.py.

    python cmd/bench_cmd.py --quick                       # every section, small counts (a few minutes)
    python cmd/bench_cmd.py --only produce,api            # some sections
    python cmd/bench_cmd.py --only sweep --partitions 1,3 --batch-size 16384,65536 --acks 1,all
"""
import sys
from pathlib import Path

# `python cmd/bench_cmd.py` puts cmd/ first on sys.path; the project root holds the shipped `apps` package.
sys.path.insert(1, str(Path(__file__).resolve().parent.parent))

from bench.command import main

if __name__ == "__main__":
    sys.exit(main())
