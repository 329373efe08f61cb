"""Scraping ``cdc run``'s ``/metrics``, ``/healthz`` and ``/readyz`` in tests."""

from __future__ import annotations

import json
import math
import socket
import urllib.error
import urllib.request

from prometheus_client.parser import text_string_to_metric_families


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class Endpoint:
    def __init__(self, port: int) -> None:
        self.base = f"http://127.0.0.1:{port}"

    def get(self, path: str) -> tuple[int, bytes]:
        try:
            with urllib.request.urlopen(self.base + path, timeout=10) as r:  # noqa: S310
                return int(r.status), bytes(r.read())
        except urllib.error.HTTPError as e:
            return int(e.code), bytes(e.read())

    def ready(self) -> bool:
        """``/readyz`` says 200 (False also while nothing listens yet)."""
        try:
            return self.get("/readyz")[0] == 200
        except OSError:
            return False

    def health(self, path: str) -> tuple[int, dict[str, object]]:
        status, body = self.get(path)
        return status, json.loads(body)

    def samples(self) -> dict[tuple[str, frozenset[tuple[str, str]]], float]:
        status, body = self.get("/metrics")
        assert status == 200
        return {
            (s.name, frozenset(s.labels.items())): s.value
            for family in text_string_to_metric_families(body.decode())
            for s in family.samples
        }

    def value(self, name: str, **labels: str) -> float:
        """The sum of ``name``'s samples whose labels include ``labels`` (NaN when none)."""
        found = [
            v
            for (n, ls), v in self.samples().items()
            if n == name and set(labels.items()) <= set(ls)
        ]
        return sum(found) if found else math.nan
