"""The image's build files: what issue 20 found missing stays in (the image itself is built and
run by `make compose-test`, which needs a Docker engine)."""

from __future__ import annotations

import http.server
import json
import os
import re
import subprocess
import sys
import threading
from typing import Any

import pytest
import yaml

from tests.support import ROOT


def test_the_image_builds_the_c_decoder_with_the_fast_extra_and_runs_unprivileged() -> None:
    dockerfile = (ROOT / "Dockerfile").read_text()
    assert "COPY pyproject.toml setup.py" in dockerfile  # setup.py builds _tuples.c
    assert "import connectors.postgres._tuples, confluent_kafka" in dockerfile
    assert "'.[fast]'" in dockerfile
    final = _final_stage(dockerfile)
    assert "\nUSER cdc\n" in final and "gcc" not in final


def test_the_build_context_holds_only_the_sources() -> None:
    lines = [
        line.strip()
        for line in (ROOT / ".dockerignore").read_text().splitlines()
        if line.strip() and not line.startswith("#")
    ]
    assert lines[0] == "*"  # everything out, then the sources back in
    allowed = {line[1:].rstrip("/") for line in lines if line.startswith("!")}
    assert allowed == {
        "pyproject.toml",
        "setup.py",
        "README.md",
        "cdc",
        "connectors",
        "sinks",
        "image",
        "scripts/devstack-kafka/pom.xml",  # the Kafka image's jars
    }


def _final_stage(dockerfile: str) -> str:
    return ("\n" + dockerfile).rsplit("\nFROM ", 1)[1]


def _healthcheck_command(dockerfile: str) -> list[str]:
    """The exec form of the final stage's HEALTHCHECK, its continuation lines joined."""
    final = _final_stage(dockerfile).replace("\\\n", " ")
    [line] = [line for line in final.splitlines() if line.startswith("HEALTHCHECK ")]
    command: list[str] = json.loads(line.split(" CMD ", 1)[1])
    return command


class _Readyz(http.server.BaseHTTPRequestHandler):
    status = 200

    def do_GET(self) -> None:
        self.send_response(self.status if self.path == "/readyz" else 404)
        self.end_headers()
        self.wfile.write(b'{"ready": true}')

    def log_message(self, *args: object) -> None:
        pass


@pytest.mark.parametrize(("status", "healthy"), [(200, True), (503, False), (None, False)])
def test_the_image_is_healthy_only_when_readyz_says_200(status: int | None, healthy: bool) -> None:
    """Issue 20, item 4: the HEALTHCHECK asks /readyz on CDC_METRICS_PORT (python, no curl in the
    image); a 503 or no server at all is unhealthy. Run here as the image would run it."""
    command = _healthcheck_command((ROOT / "Dockerfile").read_text())
    assert command[0] == "python3"
    assert "ENV " in _final_stage((ROOT / "Dockerfile").read_text())
    assert "CDC_METRICS_PORT=9187" in (ROOT / "Dockerfile").read_text()
    handler = type("Handler", (_Readyz,), {"status": status or 200})
    server = http.server.HTTPServer(("127.0.0.1", 0), handler)
    port = server.server_address[1]
    if status is None:
        server.server_close()  # the port is free: nothing answers
    else:
        threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        result = subprocess.run(
            [sys.executable, *command[1:]],
            env={**os.environ, "CDC_METRICS_PORT": str(port)},
            capture_output=True,
            timeout=30,
            check=False,
        )
    finally:
        if status is not None:
            server.shutdown()
            server.server_close()
    assert (result.returncode == 0) is healthy, result.stderr


COMPOSE_IMAGES = {
    "Dockerfile": "cdc:dev",
    "image/postgres/Dockerfile": "cdc-postgres:dev",
    "image/kafka/Dockerfile": "cdc-kafka:dev",
    "image/prometheus/Dockerfile": "cdc-prometheus:dev",
}


def _compose(name: str) -> dict[str, Any]:
    loaded: dict[str, Any] = yaml.safe_load((ROOT / name).read_text())
    return loaded


def test_every_image_of_the_stack_is_built_here_on_one_debian_base() -> None:
    """Issue 20, item 5: nothing is pulled but the base; every image has a healthcheck."""
    services = _compose("docker-compose.yml")["services"]
    assert set(services) == {"postgres", "kafka", "writer", "cdc", "prometheus"}
    for name, service in services.items():
        dockerfile = service["build"]["dockerfile"]
        assert service["build"]["context"] == "."
        assert service["image"] == COMPOSE_IMAGES[dockerfile], name
        text = (ROOT / dockerfile).read_text()
        assert "ARG BASE=debian:bookworm-slim\n" in text
        assert [line for line in text.splitlines() if line.startswith("FROM ")] in (
            ["FROM ${BASE}"],
            ["FROM ${BASE} AS build", "FROM ${BASE}"],
            ["FROM ${BASE} AS jars", "FROM ${BASE}"],
        ), dockerfile
        assert "healthcheck" in service or "\nHEALTHCHECK " in _final_stage(text), name
        assert "USER " in _final_stage(text), f"{dockerfile} runs as root"
    assert services["writer"]["healthcheck"]["test"]  # not the cdc image's /readyz


def test_cdc_waits_for_healthy_dependencies_and_mounts_the_example_config() -> None:
    cdc = _compose("docker-compose.yml")["services"]["cdc"]
    assert cdc["command"][:3] == ["run", "-c", "/etc/cdc/cdc.toml"]
    assert "./examples/compose.toml:/etc/cdc/cdc.toml:ro" in cdc["volumes"]
    for dependency in ("postgres", "kafka", "writer"):
        assert cdc["depends_on"][dependency] == {"condition": "service_healthy"}
    config = (ROOT / "examples" / "compose.toml").read_text()
    assert '[metrics]\nlisten = "${CDC_METRICS_LISTEN:-0.0.0.0:9187}"' in config


def test_the_test_stack_runs_on_the_hosts_loopback_on_ports_of_its_own() -> None:
    """Issue 20, item 6: no published ports (they would clash with host networking), no port of
    the devstack's (15432, 19092) or a usual one."""
    test = _compose("docker-compose.test.yml")["services"]
    base = _compose("docker-compose.yml")["services"]
    assert set(test) == set(base)
    for name, service in test.items():
        assert service["network_mode"] == "host", name
        assert service["build"]["network"] == "host", name
        assert "ports" not in service and "ports" not in base[name], name
    text = (ROOT / "docker-compose.test.yml").read_text()
    for port in ("5432", "9092", "9187", "9090", "15432", "19092"):
        assert f":{port}" not in text.replace(f":2{port}", ""), port
    # The defaults publish ports through the override compose reads by itself.
    assert set(_compose("docker-compose.override.yml")["services"]) <= set(base)


def test_the_kafka_image_runs_the_devstacks_kafka_version() -> None:
    devstack = (ROOT / "scripts" / "devstack").read_text()
    [version] = re.findall(r'^KAFKA_VERSION="([0-9.]+)"$', devstack, re.MULTILINE)
    assert f"ARG KAFKA_VERSION={version}\n" in (ROOT / "image/kafka/Dockerfile").read_text()
