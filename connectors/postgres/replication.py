"""PostgreSQL's streaming replication protocol, on psycopg 3's ``pq`` layer.

psycopg 3 has no replication API, but its libpq wrapper speaks COPY BOTH: ``send_query`` a
``START_REPLICATION`` command, ``get_result`` returns COPY_BOTH, then ``get_copy_data`` yields the
server's messages and ``put_copy_data`` carries our standby status updates. The message formats
are parsed and built by pure functions (:func:`parse_message`, :func:`standby_status`), tested
without a server; :class:`ReplicationConnection` only moves bytes.
"""

from __future__ import annotations

__all__ = [
    "Keepalive",
    "ReplicationConnection",
    "SlotExists",
    "SlotInUse",
    "SlotMissing",
    "XLogData",
    "create_slot_command",
    "format_lsn",
    "parse_lsn",
    "parse_message",
    "standby_status",
    "xlog_start",
]

import select
import struct
import time
from collections.abc import Mapping
from dataclasses import dataclass

from psycopg import pq, sql
from psycopg.conninfo import make_conninfo

from cdc.errors import CdcError, Refused, SlotExists, SlotInUse, SlotMissing, SourceUnavailable
from cdc.pgerrors import pg_fix, role_of
from connectors.postgres.session import pinned

# PostgreSQL counts time in microseconds since 2000-01-01 UTC.
_PG_EPOCH_US = 946_684_800 * 1_000_000
_XLOGDATA = struct.Struct(">QQq")
_KEEPALIVE = struct.Struct(">QqB")
_STATUS = struct.Struct(">cQQQqB")
READ_BYTES = 16 * 1024 * 1024
"""Bytes of messages one read gathers at most: big rows do not pile up a thousand at a time."""
XLOGDATA = ord("w")
"""First byte of an XLogData message (the stream's data; keepalives are ``k``)."""
XLOGDATA_PAYLOAD = 1 + _XLOGDATA.size
"""Where an XLogData message's payload starts."""


@dataclass(frozen=True, slots=True)
class XLogData:
    """A piece of the decoded stream: one output-plugin message."""

    data_start: int
    """LSN the message starts at (for wal2json: the change's LSN, not unique within a COPY)."""
    wal_end: int
    """The server's current end of WAL."""
    send_time_us: int
    """Server clock when sent, microseconds since 2000-01-01."""
    payload: bytes
    """What the output plugin wrote (for wal2json format 2: one JSON object)."""


@dataclass(frozen=True, slots=True)
class Keepalive:
    """The server's periodic "I am here"; may ask for a status update at once."""

    wal_end: int
    """Everything the server decoded before this point has been sent before this message."""
    send_time_us: int
    reply_requested: bool


def parse_message(buf: bytes) -> XLogData | Keepalive:
    """Parse one CopyData message of the replication stream."""
    kind = buf[:1]
    if kind == b"w":
        start, end, sent = _XLOGDATA.unpack_from(buf, 1)
        return XLogData(start, end, sent, buf[25:])
    if kind == b"k":
        end, sent, reply = _KEEPALIVE.unpack_from(buf, 1)
        return Keepalive(end, sent, bool(reply))
    raise CdcError(f"unexpected replication message type {kind!r}")


def xlog_start(buf: bytes) -> int:
    """The start LSN of an XLogData message, without parsing the rest (the hot path's
    shortcut past :func:`parse_message`: the payload is ``buf[XLOGDATA_PAYLOAD:]``)."""
    start: int = _XLOGDATA.unpack_from(buf, 1)[0]
    return start


def standby_status(
    written: int, flushed: int, applied: int, now_us: int | None = None, reply: bool = False
) -> bytes:
    """A standby status update: ``flushed`` is what the server may forget (confirmed flush)."""
    if now_us is None:
        now_us = time.time_ns() // 1000 - _PG_EPOCH_US
    return _STATUS.pack(b"r", written, flushed, applied, now_us, int(reply))


def parse_lsn(text: str) -> int:
    """``"16/B374D848"`` -> integer."""
    high, _, low = text.partition("/")
    return (int(high, 16) << 32) | int(low, 16)


def format_lsn(lsn: int) -> str:
    """integer -> ``"16/B374D848"``."""
    return f"{lsn >> 32:X}/{lsn & 0xFFFFFFFF:X}"


class ReplicationConnection:
    """A walsender connection (``replication=database``) that streams one logical slot."""

    def __init__(self, conninfo: str, password: str | None = None, timeout_s: int = 10) -> None:
        dsn = make_conninfo(
            pinned(conninfo), replication="database", connect_timeout=str(timeout_s)
        )
        self._pgconn = pq.PGconn.connect(dsn.encode())
        self._password = password
        self.waited = False
        """Whether the last :meth:`read` found nothing there and waited for the server."""
        if self._pgconn.status != pq.ConnStatus.OK:
            error = self._error()
            self._pgconn.finish()
            # Its own pg_hba lines and the REPLICATION attribute may refuse it alone.
            fix = pg_fix(error, None, role_of(conninfo), "the connector's dsn")
            if fix is not None:
                raise Refused(f"replication connection refused: {error}", fix)
            raise SourceUnavailable(f"replication connection failed: {error}")

    def _error(self) -> str:
        text = self._pgconn.error_message.decode(errors="replace").strip()
        text = text.splitlines()[0] if text else "unknown error"
        return text.replace(self._password, "***") if self._password else text

    def command(self, query: bytes) -> list[tuple[str | None, ...]]:
        """Run a replication command (simple query protocol) and return its rows as text."""
        res = self._pgconn.exec_(query)
        if res.status not in (pq.ExecStatus.TUPLES_OK, pq.ExecStatus.COMMAND_OK):
            message = res.error_message.decode(errors="replace").strip() or self._error()
            raise _command_error(message, res.error_field(pq.DiagnosticField.SQLSTATE))
        return [
            tuple(
                None if (v := res.get_value(r, c)) is None else bytes(v).decode()
                for c in range(res.nfields)
            )
            for r in range(res.ntuples)
        ]

    @property
    def server_version(self) -> int:
        """The server's version number, e.g. ``170008`` for 17.8."""
        return int(self._pgconn.server_version)

    def create_slot(
        self, slot: str, plugin: str, export: bool = False, failover: bool = False
    ) -> tuple[int, str | None]:
        """Create a logical slot; return its consistent point (the LSN streaming starts after)
        and, with ``export``, the name of a snapshot that sees exactly what committed before it.
        The snapshot can be imported (``SET TRANSACTION SNAPSHOT``) while this connection stays
        open and runs no other command. ``failover`` (PostgreSQL 17 and later) makes a slot that
        standbys with ``sync_replication_slots`` keep in step, so it survives a failover."""
        query = create_slot_command(slot, plugin, self.server_version, export, failover)
        rows = self.command(query.encode())
        return parse_lsn(rows[0][1] or "0/0"), rows[0][2]

    def alter_slot_failover(self, slot: str) -> None:
        """Make an existing slot a failover slot (PostgreSQL 17 and later)."""
        query = sql.SQL("ALTER_REPLICATION_SLOT {} (FAILOVER true)").format(sql.Identifier(slot))
        self.command(query.as_string(None).encode())

    def start(self, slot: str, start_lsn: int, options: Mapping[str, str]) -> None:
        """Begin streaming ``slot`` from ``start_lsn`` (0: from the slot's confirmed position)."""
        opts = ", ".join(f"\"{k}\" '{v}'" for k, v in options.items())
        query = sql.SQL("START_REPLICATION SLOT {} LOGICAL {}").format(
            sql.Identifier(slot), sql.SQL(format_lsn(start_lsn))
        )
        text = query.as_string(None) + (f" ({opts})" if opts else "")
        self._pgconn.send_query(text.encode())
        self._pgconn.flush()
        res = self._pgconn.get_result()
        if res is None or res.status != pq.ExecStatus.COPY_BOTH:
            message = (res.error_message if res else b"").decode(errors="replace").strip()
            sqlstate = res.error_field(pq.DiagnosticField.SQLSTATE) if res else None
            raise _command_error(message or self._error(), sqlstate)

    def read(self, timeout_s: float, limit: int = 1000, max_bytes: int = READ_BYTES) -> list[bytes]:
        """The messages that arrive within ``timeout_s``: all that are buffered, up to ``limit``
        messages or ``max_bytes`` (rows of any size: at least one), waiting only when none is.
        Raw, for :func:`parse_message` (or :func:`xlog_start`). Afterwards :attr:`waited` says
        whether none was there and the read waited for them."""
        pgconn = self._pgconn
        out: list[bytes] = []
        self.waited = False
        size = 0
        while len(out) < limit and size < max_bytes:
            n, data = pgconn.get_copy_data(1)
            if n > 0:
                out.append(bytes(data))
                size += n
                continue
            if n == 0:
                if out:
                    return out
                sock = [pgconn.socket]
                ready, _, _ = select.select(sock, [], [], 0)
                if not ready and timeout_s:
                    self.waited = True
                    ready, _, _ = select.select(sock, [], [], timeout_s)
                if not ready:
                    return out
                pgconn.consume_input()
                n, data = pgconn.get_copy_data(1)
                if n > 0:
                    out.append(bytes(data))
                    size += n
                    continue
                if n == 0:
                    return out
            # -1: the server ended the COPY; -2: an error. Either way the stream is over.
            res = pgconn.get_result()
            message = (res.error_message if res else b"").decode(errors="replace").strip()
            raise SourceUnavailable(f"replication stream ended: {message or self._error()}")
        return out

    def send_status(self, written: int, flushed: int, applied: int) -> None:
        """Tell the server what we received and what it may forget (``flushed``)."""
        if self._pgconn.put_copy_data(standby_status(written, flushed, applied)) != 1:
            raise SourceUnavailable(f"cannot send standby status: {self._error()}")
        self._pgconn.flush()

    def close(self) -> None:
        self._pgconn.finish()


def create_slot_command(
    slot: str, plugin: str, server_version: int, export: bool, failover: bool = False
) -> str:
    """``CREATE_REPLICATION_SLOT`` as the server's version reads it: PostgreSQL 14 knows only
    the keyword form (``EXPORT_SNAPSHOT``), 15 and later the option list (which 17 extends with
    ``FAILOVER``)."""
    if server_version < 150000:
        if failover:
            raise CdcError("a failover slot needs PostgreSQL 17 or later")
        keyword = "EXPORT_SNAPSHOT" if export else "NOEXPORT_SNAPSHOT"
        query = sql.SQL("CREATE_REPLICATION_SLOT {} LOGICAL {} {}").format(
            sql.Identifier(slot), sql.Identifier(plugin), sql.SQL(keyword)
        )
        return query.as_string(None)
    options: list[sql.Composable] = [
        sql.SQL("SNAPSHOT {}").format(sql.Literal("export" if export else "nothing"))
    ]
    if failover:
        if server_version < 170000:
            raise CdcError("a failover slot needs PostgreSQL 17 or later")
        options.append(sql.SQL("FAILOVER true"))
    query = sql.SQL("CREATE_REPLICATION_SLOT {} LOGICAL {} ({})").format(
        sql.Identifier(slot), sql.Identifier(plugin), sql.SQL(", ").join(options)
    )
    return query.as_string(None)


def _command_error(message: str, sqlstate: bytes | None) -> CdcError:
    code = sqlstate.decode() if sqlstate else ""
    if code == "55006":  # object_in_use
        return SlotInUse(message)
    if code == "42704":  # undefined_object
        return SlotMissing(message)
    if code == "42710":  # duplicate_object
        return SlotExists(message)
    if code.startswith(("08", "57", "53")):  # connection, operator intervention, resources
        return SourceUnavailable(message)
    return CdcError(message)
