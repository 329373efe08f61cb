"""The console script's first lines: catch SIGTERM/SIGINT before the heavy imports.

Importing the CLI (kafka-python, psycopg, pydantic) takes about a second; a SIGTERM in that window
would kill the process with the default action instead of a clean exit 0. The signal is
noted here and honoured as soon as the command is ready to stop.
"""

from __future__ import annotations

import signal
from types import FrameType

EARLY_SIGNALS: list[int] = []


def _note(signum: int, frame: FrameType | None) -> None:
    EARLY_SIGNALS.append(signum)


def main() -> None:
    signal.signal(signal.SIGTERM, _note)
    signal.signal(signal.SIGINT, _note)
    from cdc.cli import main as cli_main  # noqa: PLC0415  (after the handlers, on purpose)

    cli_main()
