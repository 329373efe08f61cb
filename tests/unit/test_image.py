"""The image's build files: what issue 20 found missing stays in (the image itself is built and
run by `make compose-test`, which needs a Docker engine)."""

from __future__ import annotations

from tests.support import ROOT


def test_the_image_builds_the_c_decoder_with_the_fast_extra_and_runs_unprivileged() -> None:
    dockerfile = (ROOT / "Dockerfile").read_text()
    assert "COPY pyproject.toml setup.py" in dockerfile  # setup.py builds _tuples.c
    assert "import connectors.postgres._tuples, confluent_kafka" in dockerfile
    assert "'.[fast]'" in dockerfile
    final = dockerfile.rsplit("\nFROM ", 1)[1]
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
    }
