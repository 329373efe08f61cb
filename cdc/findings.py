"""Findings: what ``cdc check`` (and later ``cdc status``) reports, one line each."""

from __future__ import annotations

__all__ = ["Finding", "Level"]

from dataclasses import dataclass
from typing import Literal

Level = Literal["ok", "warn", "fail"]


@dataclass(frozen=True, slots=True)
class Finding:
    """One fact about the environment, good or bad."""

    level: Level
    """``fail`` makes ``cdc check`` exit 1; ``warn`` is worth reading but not fatal."""
    subject: str
    """What it is about: ``kafka``, ``connector shop``, ``sink replica``."""
    message: str
    """One line; says what to do when it is not ``ok``. Never holds a secret."""

    @classmethod
    def ok(cls, subject: str, message: str) -> Finding:
        return cls("ok", subject, message)

    @classmethod
    def warn(cls, subject: str, message: str) -> Finding:
        return cls("warn", subject, message)

    @classmethod
    def fail(cls, subject: str, message: str) -> Finding:
        return cls("fail", subject, message)

    def render(self) -> str:
        return f"{self.level.upper():<4}  {self.subject}: {self.message}"
