#!/bin/sh
# Prometheus 2.42 reads no environment in its configuration: the target is written in here.
set -eu
sed "s|@CDC_METRICS_TARGET@|${CDC_METRICS_TARGET}|" /etc/prometheus/prometheus.yml.in >/prometheus/prometheus.yml
exec prometheus --config.file=/prometheus/prometheus.yml --storage.tsdb.path=/prometheus/data \
    --web.listen-address="${PROMETHEUS_LISTEN}" "$@"
