"""Healthcheck: the broker answers a Metadata request (API key 3, v4) on its inter-broker
listener and lists itself. Stdlib only; exit 0 when ready."""

import socket
import struct
import sys

PROPS = "/var/lib/kafka/server.properties"


def listener_address() -> tuple[str, int]:
    with open(PROPS) as f:
        props = dict(line.rstrip("\n").split("=", 1) for line in f if "=" in line)
    name = props.get("inter.broker.listener.name", "PLAINTEXT")
    for listener in props["listeners"].split(","):
        if listener.startswith(name + "://"):
            host, _, port = listener[len(name) + 3 :].rpartition(":")
            # A listener on every interface is reached on loopback.
            wildcard = host in ("", "0.0.0.0", "[::]")  # noqa: S104
            return ("127.0.0.1" if wildcard else host), int(port)
    raise SystemExit(f"no listener named {name} in {props['listeners']}")


def read_exact(sock: socket.socket, n: int) -> bytes:
    buf = b""
    while len(buf) < n:
        chunk = sock.recv(n - len(buf))
        if not chunk:
            raise EOFError("connection closed")
        buf += chunk
    return buf


def main() -> None:
    client_id = b"ready"
    # request header v1, then Metadata v4: every topic (-1), no auto-creation
    request = struct.pack(">hhih", 3, 4, 7, len(client_id)) + client_id + struct.pack(">ib", -1, 0)
    with socket.create_connection(listener_address(), timeout=3) as sock:
        sock.sendall(struct.pack(">i", len(request)) + request)
        (size,) = struct.unpack(">i", read_exact(sock, 4))
        response = read_exact(sock, size)
    # correlation id, throttle time, broker count
    correlation, _, brokers = struct.unpack_from(">iii", response)
    if correlation != 7 or brokers < 1:
        raise SystemExit("no broker registered yet")


if __name__ == "__main__":
    try:
        main()
    except (OSError, EOFError, struct.error) as e:
        sys.exit(f"not ready: {e}")
