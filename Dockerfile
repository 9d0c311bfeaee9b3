# The project's own services (streaming API, producers, consumers) in one image.
# Built by docker-compose.yml; every setting comes from PIPELINE_* variables at run time.
FROM python:3.11-slim

# Spark's driver (in the consumer) needs a Java 17 runtime; procps gives pyspark's scripts `ps`.
RUN mkdir -p /usr/share/man/man1 \
    && apt-get update \
    && DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends openjdk-17-jre-headless procps \
    && rm -rf /var/lib/apt/lists/*

# uid/gid 185, like the official Spark images: files the consumer (driver) and the Spark
# executors write to the shared output volume belong to one user.
RUN groupadd --system --gid 185 pipeline \
    && useradd --system --uid 185 --gid pipeline --create-home --home-dir /home/pipeline pipeline

ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1

WORKDIR /app

# Dependencies first (setup.py alone finds no packages, so this installs only the requirements):
# this layer is reused until setup.py changes.
COPY setup.py ./
RUN pip install .

COPY . .
RUN pip install --no-deps . \
    && mkdir -p /data/output /cache \
    && chown -R pipeline:pipeline /app /data /cache

USER pipeline
EXPOSE 5000

# docker-compose.yml sets the command of each service; alone, the image lists its settings.
CMD ["python", "cmd/admin_cmd.py", "settings"]
