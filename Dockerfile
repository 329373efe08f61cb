# cdc's image: built on Debian bookworm's own Python 3.11 (the base can be made locally with
# scripts/docker-base where no registry is reachable). The build stage compiles the C decoder
# (connectors/postgres/_tuples.c, from setup.py) and installs the `fast` extra; the final stage
# has no compiler and runs as a user of its own.
ARG BASE=debian:bookworm-slim

FROM ${BASE} AS build
RUN apt-get update \
    && apt-get install -y --no-install-recommends python3 python3-venv python3-dev gcc libc6-dev ca-certificates \
    && rm -rf /var/lib/apt/lists/*
# A proxy's CA, when the network needs one to reach PyPI (image/extra-ca/README.md).
COPY image/extra-ca/ /usr/local/share/ca-certificates/extra/
RUN update-ca-certificates
ENV PIP_CERT=/etc/ssl/certs/ca-certificates.crt PIP_DISABLE_PIP_VERSION_CHECK=1 PIP_NO_CACHE_DIR=1
RUN python3 -m venv /opt/cdc
WORKDIR /src
COPY pyproject.toml setup.py README.md ./
COPY cdc cdc
COPY connectors connectors
COPY sinks sinks
RUN /opt/cdc/bin/pip install '.[fast]' \
    && cd / && /opt/cdc/bin/python -c "import connectors.postgres._tuples, confluent_kafka"

FROM ${BASE}
RUN apt-get update \
    && apt-get install -y --no-install-recommends python3 ca-certificates \
    && rm -rf /var/lib/apt/lists/* \
    && useradd --system --uid 10001 --create-home --home-dir /var/lib/cdc cdc \
    && install -d -o cdc -g cdc /var/lib/cdc/data
COPY --from=build /opt/cdc /opt/cdc
# CDC_METRICS_PORT: where the healthcheck finds `[metrics] listen` (or --metrics-listen).
ENV PATH=/opt/cdc/bin:$PATH PYTHONUNBUFFERED=1 CDC_METRICS_PORT=9187
USER cdc
# A volume mounted on data/ starts owned by cdc (a SQLite sink's file, say).
WORKDIR /var/lib/cdc
# Healthy when /readyz says 200: every connector streams and every sink consumes (no curl here:
# urlopen raises on a 503 or a refused connection).
HEALTHCHECK --interval=5s --timeout=3s --start-period=60s --retries=3 \
    CMD ["python3", "-c", "import os, urllib.request; urllib.request.urlopen('http://127.0.0.1:' + os.environ.get('CDC_METRICS_PORT', '9187') + '/readyz', timeout=2)"]
ENTRYPOINT ["cdc"]
CMD ["--help"]
