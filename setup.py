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
        "matplotlib>=3.8",  # PNG charts of the production report
    ],
    extras_require={"test": ["pytest>=8", "pytest-mock>=3.12", "pytest-timeout>=2.3", "duckdb>=1.1"]},
    entry_points={
        "pipeline.producers": [],
        # The game-events demo registers its consumer the way a user's package would.
        "pipeline.consumers": ["game = apps.game_consumers"],
    },
)
