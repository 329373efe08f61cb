"""Harnesses and shared data for the tests; test modules import from here, never from each other."""

from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent.parent
"""The repository's root."""

FIXTURES = ROOT / "tests" / "fixtures"
"""Captured decoder input (tests/fixtures/capture_wal2json.py made them)."""
