"""What each PostgreSQL version is sent and told, without a server (the version numbers are
faked here; tests/integration/test_pg_versions.py runs the same on real servers 13 to 18)."""

from __future__ import annotations

import pytest

from cdc.errors import CdcError
from connectors.postgres.replication import create_slot_command
from connectors.postgres.versions import failover_problem, too_old, version_text


def test_version_text() -> None:
    assert version_text(130022) == "13.22"
    assert version_text(180003) == "18.3"


@pytest.mark.parametrize("num", [90624, 100023, 120022, 130022, 139999])
def test_servers_older_than_14_are_refused_with_a_clear_message(num: int) -> None:
    assert too_old(num) == (
        f"PostgreSQL {version_text(num)} is older than 14, the oldest version cdc supports;"
        " upgrade the server to PostgreSQL 14 or later"
    )


@pytest.mark.parametrize("num", [140000, 140021, 150015, 160012, 170008, 180003])
def test_14_and_later_are_accepted(num: int) -> None:
    assert too_old(num) is None


def test_failover_slots_need_17() -> None:
    assert failover_problem(170000) is None
    assert failover_problem(180003) is None
    assert failover_problem(160012) == (
        "failover_slot = true needs PostgreSQL 17 or later (failover slots), but this server"
        " is PostgreSQL 16.12; set failover_slot = false or upgrade the server"
    )


def test_14_gets_the_keyword_form_of_create_replication_slot() -> None:
    # PostgreSQL 14's walsender grammar has no option list: "(SNAPSHOT 'export')" is a syntax
    # error there.
    assert create_slot_command("s", "pgoutput", 140021, export=True) == (
        'CREATE_REPLICATION_SLOT "s" LOGICAL "pgoutput" EXPORT_SNAPSHOT'
    )
    assert create_slot_command("s", "pgoutput", 140021, export=False) == (
        'CREATE_REPLICATION_SLOT "s" LOGICAL "pgoutput" NOEXPORT_SNAPSHOT'
    )


@pytest.mark.parametrize("num", [150015, 160012, 170008, 180003])
def test_15_and_later_get_the_option_list(num: int) -> None:
    assert create_slot_command("s", "wal2json", num, export=True) == (
        'CREATE_REPLICATION_SLOT "s" LOGICAL "wal2json" (SNAPSHOT \'export\')'
    )
    assert create_slot_command("s", "pgoutput", num, export=False) == (
        'CREATE_REPLICATION_SLOT "s" LOGICAL "pgoutput" (SNAPSHOT \'nothing\')'
    )


@pytest.mark.parametrize("num", [170008, 180003])
def test_failover_option_on_17_and_later(num: int) -> None:
    assert create_slot_command("s", "pgoutput", num, export=True, failover=True) == (
        'CREATE_REPLICATION_SLOT "s" LOGICAL "pgoutput" (SNAPSHOT \'export\', FAILOVER true)'
    )


@pytest.mark.parametrize("num", [140021, 150015, 160012])
def test_no_failover_option_before_17(num: int) -> None:
    with pytest.raises(CdcError, match="a failover slot needs PostgreSQL 17 or later"):
        create_slot_command("s", "pgoutput", num, export=True, failover=True)
