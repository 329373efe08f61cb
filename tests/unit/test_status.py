"""What `cdc status` makes of a slot's state (issue 18, item 7): no services needed."""

from __future__ import annotations

import pytest

from cdc.config import parse_config
from connectors.postgres.status import slot_finding

MIB = 1048576
CONFIG = parse_config(
    '[kafka]\nbootstrap_servers = "k:1"\n'
    '[[connectors]]\nname = "shop"\ndsn = "host=h dbname=d"\nslot = "s"\n'
    "status_lag_warn_mb = 64\nstatus_lag_fail_mb = 1024\n"
).connectors[0]


@pytest.mark.parametrize(
    ("pid", "lag_mib", "wal_status", "level", "reason"),
    [
        (4242, 0, "reserved", "ok", ""),
        (4242, 64, "reserved", "ok", ""),
        (4242, 65, "reserved", "warn", "behind by more than status_lag_warn_mb = 64"),
        (4242, 2000, "reserved", "warn", "behind by more than status_lag_warn_mb = 64"),
        (None, 0, "reserved", "warn", "no process reads it (is the connector running?)"),
        (None, 131, "reserved", "warn", "no process reads it"),
        (None, 1025, "extended", "fail", "over status_lag_fail_mb = 1024"),
        (4242, 1, "unreserved", "warn", "about to lose WAL it needs"),
        (None, 1, "lost", "fail", "the WAL it needs is gone"),
    ],
)
def test_slot_state(
    pid: int | None, lag_mib: int, wal_status: str, level: str, reason: str
) -> None:
    finding = slot_finding(CONFIG, pid, "0/1DF1300", lag_mib * MIB, wal_status)
    assert finding.level == level, finding
    state = f"streaming (pid {pid})" if pid else "not streaming"
    assert finding.message.startswith(
        f"slot s {state}, confirmed flush LSN 0/1DF1300, lag {lag_mib * MIB} bytes"
        f" ({lag_mib:.1f} MiB), WAL {wal_status}"
    )
    assert reason in finding.message
