# Built in the full image, which has a C compiler for connectors/postgres/_tuples.c; run in the
# slim one.
FROM python:3.11 AS build
WORKDIR /src
COPY pyproject.toml README.md ./
COPY cdc cdc
COPY connectors connectors
COPY sinks sinks
RUN pip wheel --no-cache-dir --wheel-dir /wheels .

FROM python:3.11-slim
COPY --from=build /wheels /wheels
RUN pip install --no-cache-dir /wheels/*.whl && rm -rf /wheels
ENTRYPOINT []
