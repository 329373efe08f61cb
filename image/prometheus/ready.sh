#!/bin/bash
# Healthcheck: Prometheus's /-/ready says 200 (no curl or wget in the image: bash's /dev/tcp).
set -eu
exec 3<>"/dev/tcp/127.0.0.1/${PROMETHEUS_LISTEN##*:}"
printf 'GET /-/ready HTTP/1.0\r\nHost: localhost\r\n\r\n' >&3
head -n 1 <&3 | grep -q ' 200 '
