"""A DNS load balancer of the tests' own: one UDP and TCP address in front of several servers,
each query (UDP) or connection (TCP) sent to one of them at random, as kube-proxy's DNAT
rules with random selection do for a Service IP. The rig has no kube-proxy, and a userspace
balancer needs no privileges."""

from __future__ import annotations

import random
import socket
import threading
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor

from tests.rig import free_port, next_loopback_address


class DnsBalancer:
    def __init__(self, backends: Sequence[tuple[str, int]], seed: int = 0) -> None:
        self.backends = list(backends)
        self.rng = random.Random(seed)
        self.address = next_loopback_address()
        self.port = free_port(self.address, udp=True)
        self.picks: list[int] = []
        """The backend index of every UDP query, in order."""
        self._udp = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        self._udp.bind((self.address, self.port))
        self._tcp = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self._tcp.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self._tcp.bind((self.address, self.port))
        self._tcp.listen(16)
        self._pool = ThreadPoolExecutor(8)
        self._stop = threading.Event()
        self._lock = threading.Lock()
        self._threads = [threading.Thread(target=self._serve_udp, daemon=True),
                         threading.Thread(target=self._serve_tcp, daemon=True)]

    @property
    def hostport(self) -> str:
        return f"{self.address}:{self.port}"

    def start(self) -> DnsBalancer:
        for thread in self._threads:
            thread.start()
        return self

    def _pick(self) -> tuple[str, int]:
        with self._lock:
            index = self.rng.randrange(len(self.backends))
            self.picks.append(index)
        return self.backends[index]

    def _serve_udp(self) -> None:
        self._udp.settimeout(0.2)
        while not self._stop.is_set():
            try:
                query, client = self._udp.recvfrom(65535)
            except TimeoutError:
                continue
            except OSError:
                return
            self._pool.submit(self._relay_udp, query, client, self._pick())

    def _relay_udp(self, query: bytes, client: tuple[str, int],
                   backend: tuple[str, int]) -> None:
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as upstream:
            upstream.settimeout(1.0)
            try:
                upstream.sendto(query, backend)
                reply, _ = upstream.recvfrom(65535)
                self._udp.sendto(reply, client)
            except OSError:
                pass  # the client times out, as behind a DNAT to a dead replica

    def _serve_tcp(self) -> None:
        self._tcp.settimeout(0.2)
        while not self._stop.is_set():
            try:
                conn, _ = self._tcp.accept()
            except TimeoutError:
                continue
            except OSError:
                return
            self._pool.submit(self._relay_tcp, conn, self._pick())

    def _relay_tcp(self, conn: socket.socket, backend: tuple[str, int]) -> None:
        """Length-prefixed messages, query then answer, until the client closes."""
        try:
            with conn, socket.create_connection(backend, timeout=2.0) as upstream:
                conn.settimeout(2.0)
                while (query := _message(conn)) is not None:
                    upstream.sendall(query)
                    answer = _message(upstream)
                    if answer is None:
                        return
                    conn.sendall(answer)
        except OSError:
            pass

    def stop(self) -> None:
        self._stop.set()
        for thread in self._threads:
            thread.join()
        self._udp.close()
        self._tcp.close()
        self._pool.shutdown(wait=False)


def _message(sock: socket.socket) -> bytes | None:
    """One DNS-over-TCP message with its length prefix; None at the end of the stream."""
    data = b""
    while len(data) < 2 or len(data) < 2 + int.from_bytes(data[:2], "big"):
        chunk = sock.recv(65535)
        if not chunk:
            return None
        data += chunk
    return data
