"""The connector's replication slot: checked, made when missing (with its exported snapshot),
made again when a snapshot needs a known position."""

from __future__ import annotations

__all__ = ["CreatedSlot", "Slot"]

import logging
import time
from dataclasses import dataclass
from typing import Any

import psycopg

from cdc.config import ConnectorConfig
from cdc.errors import CdcError, SourceUnavailable
from connectors.postgres.owntables import mark_initial
from connectors.postgres.replication import (
    ReplicationConnection,
    SlotExists,
    format_lsn,
    parse_lsn,
)
from connectors.postgres.versions import FAILOVER_SLOTS_SINCE

log = logging.getLogger(__name__)

SLOT_RELEASE_S = 30.0
"""How long a slot to be dropped for a new snapshot may stay held: the server process of a
connector that was killed lets it go once it sees its client gone."""


@dataclass
class CreatedSlot:
    """The slot, and while it lasts, the connection that created it and its exported snapshot."""

    repl: ReplicationConnection | None
    lsn: int
    """Where streaming starts: the consistent point of a new slot, else its confirmed flush."""
    snapshot: str | None
    created: bool

    def close(self) -> None:
        if self.repl is not None:
            self.repl.close()
            self.repl = None
            self.snapshot = None


class Slot:
    """The slot ``config`` names, for the connector ``subject``."""

    def __init__(self, config: ConnectorConfig, subject: str) -> None:
        self.config = config
        self.subject = subject

    def ensure(self, sql: psycopg.Connection[Any], export: bool) -> CreatedSlot:
        """Make sure the slot exists. When this creates it, the result holds the replication
        connection that created it open, with its exported snapshot, until closed."""
        c = self.config
        # pg_replication_slots has the failover column from PostgreSQL 17 on.
        failover = "failover" if sql.info.server_version >= FAILOVER_SLOTS_SINCE else "false"
        row = sql.execute(
            psycopg.sql.SQL(
                "SELECT plugin, slot_type, database, confirmed_flush_lsn::text, {}"
                " FROM pg_replication_slots WHERE slot_name = %s"
            ).format(psycopg.sql.SQL(failover)),
            (c.slot,),
        ).fetchone()
        if row is not None:
            plugin, slot_type, database, confirmed, is_failover = row
            if slot_type != "logical" or plugin != c.plugin or database != sql.info.dbname:
                raise CdcError(
                    f"{self.subject}: slot {c.slot} exists but is a {slot_type} slot of plugin"
                    f" {plugin} on database {database}; it needs a logical {c.plugin} slot on"
                    f" {sql.info.dbname}. Choose another slot name, or drop that slot."
                )
            if c.failover_slot and not is_failover:
                self._make_failover(c.slot)
            return CreatedSlot(None, parse_lsn(confirmed or "0/0"), None, created=False)
        if c.snapshot in ("initial", "initial_only"):
            # Remembered before the slot exists: a crash between the two must not leave a slot
            # whose snapshot nobody knows is owed.
            mark_initial(sql, c.name, "pending")
        repl = ReplicationConnection(c.dsn.conninfo, c.dsn.password)
        try:
            lsn, snapshot = repl.create_slot(
                c.slot, c.plugin, export=export, failover=c.failover_slot
            )
        except SlotExists:
            # Another process made it between our look and our create: use it as it is.
            repl.close()
            return self.ensure(sql, export=False)
        except BaseException:
            repl.close()
            raise
        log.info(
            "%s: created %sslot %s at %s",
            self.subject,
            "failover " if c.failover_slot else "",
            c.slot,
            format_lsn(lsn),
        )
        return CreatedSlot(repl, lsn, snapshot, created=True)

    def made_again(self, sql: psycopg.Connection[Any]) -> CreatedSlot:
        """Drop the slot and create it again, for its exported snapshot.

        A snapshot is exact only at the position the stream starts from, and only a slot's
        creation exports a snapshot at a known position. The old slot is held by no change that
        matters: streaming never started (an interrupted initial snapshot), or a snapshot of
        everything is wanted anyway (``always``); what it held is in the new snapshot, and the
        snapshot's truncate markers retract what an earlier attempt published."""
        slot = self.config.slot
        deadline = time.monotonic() + SLOT_RELEASE_S
        while True:
            row = sql.execute(
                "SELECT active_pid FROM pg_replication_slots WHERE slot_name = %s", (slot,)
            ).fetchone()
            if row is None:
                break
            if row[0] is None:
                try:
                    sql.execute("SELECT pg_drop_replication_slot(%s)", (slot,))
                    break
                except psycopg.errors.ObjectInUse:
                    pass  # taken again meanwhile: look again
            elif time.monotonic() > deadline:
                raise SourceUnavailable(
                    f"{self.subject}: slot {slot} is in use by server process {row[0]}, so the"
                    " snapshot cannot start again; is another cdc running this connector?"
                )
            time.sleep(0.1)
        log.info("%s: dropped slot %s for a snapshot at a known position", self.subject, slot)
        created = self.ensure(sql, export=True)
        if created.snapshot is None:  # another process made the slot between drop and create
            created.close()
            raise SourceUnavailable(f"{self.subject}: slot {slot} was made again by another client")
        return created

    def _make_failover(self, slot: str) -> None:
        """failover_slot = true on a slot made without it: turn it on, as configured."""
        repl = ReplicationConnection(self.config.dsn.conninfo, self.config.dsn.password)
        try:
            repl.alter_slot_failover(slot)
        finally:
            repl.close()
        log.info("%s: slot %s is now a failover slot", self.subject, slot)
