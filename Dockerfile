FROM python:3.11-slim
WORKDIR /app
COPY pyproject.toml README.md ./
COPY cdc cdc
COPY connectors connectors
COPY sinks sinks
RUN pip install --no-cache-dir .
ENTRYPOINT []
