"""Under CI=true no test may skip: conftest turns a skip into a failure."""

from __future__ import annotations

import pytest

from tests.support import ROOT

pytest_plugins = ["pytester"]


@pytest.mark.parametrize(("ci", "outcome"), [("true", {"failed": 1}), ("", {"skipped": 1})])
def test_a_skip_fails_under_ci(
    pytester: pytest.Pytester, monkeypatch: pytest.MonkeyPatch, ci: str, outcome: dict[str, int]
) -> None:
    pytester.makeconftest((ROOT / "tests" / "conftest.py").read_text())
    pytester.makepyfile("import pytest\n\ndef test_x():\n    pytest.skip('no service')\n")
    monkeypatch.setenv("CI", ci)
    pytester.runpytest_inprocess("-p", "no:cacheprovider").assert_outcomes(**outcome)
