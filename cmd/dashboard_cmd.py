"""Thin script: the live dashboard, see apps/dashboard.py."""
import sys

from apps.dashboard import main

if __name__ == "__main__":
    sys.exit(main())
