#!/usr/bin/env python3
"""New-connection rate through a forward (standard library only; runs in a namespace).

    rate.py server PORT              accept and close every connection; prints READY
    rate.py check ADDR PORT CLOSED   one connection to PORT must work, one to CLOSED must not
    rate.py client ADDR PORT SECONDS WARMUP

The client opens TCP connections one after the other, each closed at once with
SO_LINGER 0 (a reset, so no TIME_WAIT on either side and the same source ports come
back; the server closes with a FIN, so the client's connect() never races a
reset); every connection is a new conntrack entry and its first packet goes through
the nat prerouting chain. It prints one JSON line: connections completed in SECONDS
(after WARMUP seconds not counted), failures by kind, and the rate.
"""

from __future__ import annotations

import json
import socket
import struct
import sys
import time

RESET_ON_CLOSE = struct.pack("ii", 1, 0)


def server(port: int) -> None:
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind(("0.0.0.0", port))
    sock.listen(4096)
    print("READY", flush=True)
    while True:
        conn, _ = sock.accept()
        conn.close()


def connect_once(addr: str, port: int, timeout: float = 1.0) -> str | None:
    """None when the connection was made, else the kind of failure."""
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, RESET_ON_CLOSE)
    sock.settimeout(timeout)
    try:
        sock.connect((addr, port))
        return None
    except TimeoutError:
        return "timeout"
    except ConnectionRefusedError:
        return "refused"
    except OSError as err:
        return type(err).__name__
    finally:
        sock.close()


def check(addr: str, port: int, closed: int) -> int:
    open_result = connect_once(addr, port)
    closed_result = connect_once(addr, closed)
    print(json.dumps({"open": open_result, "closed": closed_result}))
    return 0 if open_result is None and closed_result is not None else 1


def client(addr: str, port: int, seconds: float, warmup: float) -> None:
    errors: dict[str, int] = {}
    total = 0
    start = time.perf_counter()
    measure_from = start + warmup
    end = measure_from + seconds
    counted = 0
    measuring = False
    now = start
    while now < end:
        failure = connect_once(addr, port)
        total += 1
        now = time.perf_counter()
        if not measuring and now >= measure_from:
            measuring, measure_from, counted = True, now, 0
            errors.clear()
            continue
        if failure is None:
            counted += 1
        else:
            errors[failure] = errors.get(failure, 0) + 1
    elapsed = now - measure_from
    print(
        json.dumps(
            {
                "connections": counted,
                "seconds": round(elapsed, 4),
                "rate": round(counted / elapsed, 1) if elapsed > 0 else 0.0,
                "errors": errors,
                "attempts_total": total,
            }
        )
    )


def main(argv: list[str]) -> int:
    match argv:
        case ["server", port]:
            server(int(port))
        case ["check", addr, port, closed]:
            return check(addr, int(port), int(closed))
        case ["client", addr, port, seconds, warmup]:
            client(addr, int(port), float(seconds), float(warmup))
        case _:
            print(__doc__, file=sys.stderr)
            return 2
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
