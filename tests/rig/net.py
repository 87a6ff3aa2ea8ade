"""Loopback addresses, free ports and a minimal stdlib DNS probe."""

from __future__ import annotations

import contextlib
import itertools
import os
import random
import socket
import ssl
import struct
import threading
import urllib.error
import urllib.request
from collections.abc import Mapping

# Addresses 127.0.0.2 .. 127.0.0.254 are handed out round-robin, starting at a
# per-process offset so that two test sessions on one machine rarely share one.
_FIRST, _LAST = 2, 254
_lock = threading.Lock()
_counter = itertools.count((os.getpid() * 7) % (_LAST - _FIRST + 1))


def next_loopback_address() -> str:
    """Return a 127.0.0.x address for a new component (x in 2..254)."""
    with _lock:
        n = next(_counter)
    return f"127.0.0.{_FIRST + n % (_LAST - _FIRST + 1)}"


def free_ports(host: str, count: int = 1, *, udp: bool = False) -> list[int]:
    """Return ``count`` distinct ports that are free on ``host`` right now.

    Each port is found by binding port 0 (the kernel picks it); the sockets are
    held until all ports are chosen so the same port is not returned twice.
    With ``udp=True`` each port is also free for UDP (DNS servers need both).
    """
    held: list[socket.socket] = []
    ports: list[int] = []
    try:
        attempts = 0
        while len(ports) < count:
            attempts += 1
            if attempts > 50 * count:
                raise OSError(f"could not find {count} free port(s) on {host}")
            tcp = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
            held.append(tcp)
            tcp.bind((host, 0))
            port = int(tcp.getsockname()[1])
            if udp:
                u = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
                held.append(u)
                try:
                    u.bind((host, port))
                except OSError:
                    continue
            ports.append(port)
    finally:
        for s in held:
            s.close()
    return ports


def free_port(host: str, *, udp: bool = False) -> int:
    """Return one port free on ``host`` (TCP, and UDP too when ``udp``)."""
    return free_ports(host, 1, udp=udp)[0]


def tcp_listening(host: str, port: int, timeout: float = 0.5) -> bool:
    """True when something accepts TCP connections on host:port."""
    with contextlib.suppress(OSError), socket.create_connection((host, port), timeout=timeout):
        return True
    return False


QTYPES = {"A": 1, "NS": 2, "CNAME": 5, "SOA": 6, "PTR": 12, "AAAA": 28, "SRV": 33}


def dns_probe(host: str, port: int, name: str, qtype: str = "SOA", timeout: float = 1.0) -> int:
    """Send one UDP DNS query and return the response's RCODE.

    Raises OSError/TimeoutError when no matching response arrives. This is a
    readiness probe only (it does not parse answers); tests use dnspython.
    """
    qid = random.randrange(1 << 16)
    header = struct.pack("!HHHHHH", qid, 0x0100, 1, 0, 0, 0)  # RD=1, one question
    labels = [lbl for lbl in name.rstrip(".").split(".") if lbl]
    qname = b"".join(bytes([len(lbl)]) + lbl.encode("ascii") for lbl in labels) + b"\x00"
    query = header + qname + struct.pack("!HH", QTYPES[qtype], 1)
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        s.settimeout(timeout)
        s.connect((host, port))
        s.send(query)
        while True:
            data = s.recv(4096)
            if len(data) >= 12 and struct.unpack("!H", data[:2])[0] == qid:
                return int(data[3] & 0x0F)


def http_request(
    url: str,
    *,
    method: str = "GET",
    body: bytes | None = None,
    headers: Mapping[str, str] | None = None,
    context: ssl.SSLContext | None = None,
    timeout: float = 5.0,
) -> tuple[int, bytes]:
    """Make one HTTP(S) request, never through a proxy; return (status, body).

    HTTP error statuses are returned, not raised; connection errors raise OSError.
    """
    handlers: list[urllib.request.BaseHandler] = [urllib.request.ProxyHandler({})]
    if context is not None:
        handlers.append(urllib.request.HTTPSHandler(context=context))
    opener = urllib.request.build_opener(*handlers)
    req = urllib.request.Request(url, data=body, method=method, headers=dict(headers or {}))
    try:
        with opener.open(req, timeout=timeout) as resp:
            return int(resp.status), bytes(resp.read())
    except urllib.error.HTTPError as err:
        with err:
            return int(err.code), bytes(err.read())


def insecure_tls_context() -> ssl.SSLContext:
    """A TLS client context that skips verification (for self-signed health endpoints)."""
    ctx = ssl.create_default_context()
    ctx.check_hostname = False
    ctx.verify_mode = ssl.CERT_NONE
    return ctx
