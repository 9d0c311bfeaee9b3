"""Thin script: the main job, see apps/pipeline.py (also `pipeline run`)."""
import sys

from apps.pipeline import main

if __name__ == "__main__":
    sys.exit(main())
