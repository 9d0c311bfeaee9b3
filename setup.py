"""Install with `pip install -e .[test]` (the Makefile does it in a virtual environment)."""
from setuptools import find_packages, setup

setup(
    name="pipeline-framework",
    version="0.1.0",
    description="Streaming pipelines from HTTP JSON streams through Apache Kafka and Spark to Parquet",
    long_description=open("README.md", encoding="utf-8").read() if __import__("os").path.exists("README.md") else "",
    long_description_content_type="text/markdown",
    python_requires=">=3.11",
    packages=find_packages(include=["framework", "framework.*", "apps", "apps.*"]),
    install_requires=[
        "kafka-python>=3.0.12,<4",
        # librdkafka: the opt-in producer client (PIPELINE_PRODUCER_CLIENT=confluent); tested with 2.16.
        "confluent-kafka>=2.6,<3",
        # 4.0.0: the newest 4.x whose spark-sql-kafka-0-10 connector resolves completely
        # (spark-token-provider-kafka-0-10 is not published for later 4.x on the Maven mirror we use).
        "pyspark==4.0.0",
        "requests>=2.31",
        "flask>=3.0",
        "pyarrow>=15",
        "loguru>=0.7",
        "orjson>=3.10",
        # Compression codecs kafka-python needs to write and read back (resume) every
        # PIPELINE_PRODUCER_COMPRESSION value; gzip is in the standard library.
        "lz4>=4",
        "python-snappy>=0.7",  # pure Python over cramjam, no system libsnappy needed
        "zstandard>=0.22",
        "matplotlib>=3.8",  # PNG charts of the production report
        # PostgreSQL driver (local server management, JDBC sink ledger, dashboard); binary wheels, no libpq build.
        "psycopg[binary]>=3.2",
        # the dashboard's answers gzip-compressed (its charts are inline SVG drawn by the page: no chart bundle)
        "flask-compress>=1.15",
        # Simulation sources (framework/sources/simulation.py): cadCAD's configuration and engine; 0.5.3 is the
        # newest release and works on Python 3.11 with pandas 3.
        "cadCAD==0.5.3",
        # Iceberg tables without a JVM (query engine, tables command): pyiceberg's SQL catalog reads the same
        # JDBC catalog tables in PostgreSQL as Spark; DuckDB answers SQL over them in-process.
        "pyiceberg[sql-postgres]>=0.10,<0.13",
        "duckdb>=1.1",
        # `pipeline query --engine trino`: Trino's own DB-API client (its REST protocol, paging, errors)
        "trino>=0.330",
    ],
    package_data={"framework": ["py.typed"]},  # PEP 561: the framework's type hints are part of its API
    extras_require={"test": ["pytest>=8", "pytest-mock>=3.12", "pytest-timeout>=2.3",
                             # `make lint` (pyproject.toml holds their configuration)
                             "ruff>=0.6", "mypy>=1.11",
                             # a local S3-compatible server for the s3a:// warehouse test
                             "moto[server]>=5",
                             # drives Debian's /usr/bin/chromium in the dashboard test (never its own browser download)
                             "playwright>=1.45"]},
    entry_points={
        # One command with subcommands (framework/commands/__init__.py: SUBCOMMANDS).
        "console_scripts": ["pipeline = framework.commands.pipeline:main"],
        "pipeline.producers": [],
        # The game-events demo registers its consumer the way a user's package would.
        "pipeline.consumers": ["game = apps.game_consumers"],
    },
)
