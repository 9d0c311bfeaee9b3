"""SQL over the pipeline's tables: the embedded DuckDB engine (default), Spark, and the interactive shell.

- :mod:`framework.query.duck`: DuckDB over the Iceberg tables (pyiceberg scan -> Arrow) and the Parquet tables.
- :mod:`framework.query.shell`: statements split on ``;``, ``-f file.sql`` and the interactive prompt.
"""
