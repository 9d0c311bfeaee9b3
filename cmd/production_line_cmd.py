"""Thin script: the production-line demo (Kafka, PostgreSQL, API, producer, consumer, dashboard).

See apps/production_line_demo.py.
"""
import sys

from apps.production_line_demo import main

if __name__ == "__main__":
    sys.exit(main())
