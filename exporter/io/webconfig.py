"""`--web.config.file`: TLS, basic auth and response headers in the format of the Prometheus
exporter-toolkit (node_exporter, blackbox_exporter), on Python's `ssl` and `bcrypt`.

The file is checked whole at startup: an unknown key, a bad value or an unreadable file raises
WebConfigError with one line naming the key. Afterwards the file and the certificates it names
are looked at again on every TLS handshake (a stat of each, no read unless one changed), so a
certificate that cert-manager renews on disk is served from the next connection on; a change
that does not load keeps the last good one and says why, once. Basic-auth passwords are
checked with bcrypt in a thread (a check takes tens of milliseconds, far too long for the
event loop), and a good one is remembered for the process's life by a hash of the header, as
the toolkit does.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import logging
import os
import ssl
import threading
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import bcrypt
import yaml

log = logging.getLogger(__name__)

TLS_VERSIONS = {"TLS10": ssl.TLSVersion.TLSv1, "TLS11": ssl.TLSVersion.TLSv1_1,
                "TLS12": ssl.TLSVersion.TLSv1_2, "TLS13": ssl.TLSVersion.TLSv1_3}
CLIENT_AUTH = {"NoClientCert": ssl.CERT_NONE, "VerifyClientCertIfGiven": ssl.CERT_OPTIONAL,
               "RequireAndVerifyClientCert": ssl.CERT_REQUIRED}
UNVERIFIED = ("RequestClientCert", "RequireAnyClientCert")
HEADERS = ("Strict-Transport-Security", "X-Content-Type-Options", "X-Frame-Options",
           "X-XSS-Protection", "Content-Security-Policy")
"""The headers the toolkit lets a web config set."""
UNSUPPORTED = {
    "cipher_suites": "Python's ssl takes OpenSSL cipher strings, not Go's suite names",
    "curve_preferences": "Python's ssl sets one curve at most",
    "prefer_server_cipher_suites": "OpenSSL's server preference is on already",
    "client_allowed_sans": "not implemented here",
    "cert": "give cert_file",
    "key": "give key_file",
}
"""Toolkit keys this server refuses rather than ignores: a silently dropped TLS setting is
a weaker server than its operator believes."""


DECOY = b"$2b$10$" + b"." * 53


class WebConfigError(ValueError):
    """The web config cannot be used; the message is the one line to print."""


@dataclass(frozen=True)
class TlsFiles:
    cert_file: str
    key_file: str
    client_ca_file: str | None
    client_auth: ssl.VerifyMode
    min_version: ssl.TLSVersion
    max_version: ssl.TLSVersion | None


@dataclass(frozen=True)
class WebConfig:
    path: str
    tls: TlsFiles | None
    users: Mapping[str, bytes]
    """User name to bcrypt hash."""
    headers: Mapping[str, str]
    context: ssl.SSLContext | None = field(default=None, compare=False)
    """Built from `tls` when the file was loaded: a bad pair is a load error."""


def _mapping(value: Any, where: str, path: str) -> Mapping[str, Any]:
    if value is None:
        return {}
    if not isinstance(value, Mapping):
        raise WebConfigError(f"{path}: `{where}` must be a mapping")
    return value


def _known(body: Mapping[str, Any], keys: tuple[str, ...], where: str, path: str) -> None:
    for key in body:
        if key in UNSUPPORTED:
            raise WebConfigError(f"{path}: `{where}{key}` is not supported: "
                                 f"{UNSUPPORTED[key]}; remove it")
        if key not in keys:
            raise WebConfigError(f"{path}: unknown key `{where}{key}`; known: "
                                 f"{', '.join(keys)}")


def _file(body: Mapping[str, Any], key: str, base: Path, path: str) -> str | None:
    value = body.get(key)
    if value in (None, ""):
        return None
    file = base / str(value)
    if not file.is_file():
        raise WebConfigError(f"{path}: `tls_server_config.{key}` file {file} does not exist")
    return str(file)


def _tls(body: Mapping[str, Any], base: Path, path: str) -> TlsFiles | None:
    if not body:
        return None
    _known(body, ("cert_file", "key_file", "client_auth_type", "client_ca_file",
                  "min_version", "max_version"), "tls_server_config.", path)
    cert, key = _file(body, "cert_file", base, path), _file(body, "key_file", base, path)
    if cert is None or key is None:
        raise WebConfigError(f"{path}: `tls_server_config` needs both cert_file and key_file")
    auth = str(body.get("client_auth_type") or "NoClientCert")
    if auth in UNVERIFIED:
        raise WebConfigError(f"{path}: `tls_server_config.client_auth_type` {auth} is not "
                             "supported: Python's ssl verifies every client certificate it "
                             "asks for; use VerifyClientCertIfGiven or "
                             "RequireAndVerifyClientCert")
    if auth not in CLIENT_AUTH:
        raise WebConfigError(f"{path}: `tls_server_config.client_auth_type` {auth!r} is not "
                             f"one of {', '.join((*CLIENT_AUTH, *UNVERIFIED))}")
    ca = _file(body, "client_ca_file", base, path)
    if CLIENT_AUTH[auth] != ssl.CERT_NONE and ca is None:
        raise WebConfigError(f"{path}: `tls_server_config.client_auth_type` {auth} needs "
                             "client_ca_file")
    versions = {}
    for name, default in (("min_version", "TLS12"), ("max_version", None)):
        value = body.get(name, default)
        if value is not None and value not in TLS_VERSIONS:
            raise WebConfigError(f"{path}: `tls_server_config.{name}` {value!r} is not one of "
                                 f"{', '.join(TLS_VERSIONS)}")
        versions[name] = None if value is None else TLS_VERSIONS[value]
    low, high = versions["min_version"], versions["max_version"]
    assert low is not None
    if high is not None and high < low:
        raise WebConfigError(f"{path}: `tls_server_config.max_version` is below min_version")
    return TlsFiles(cert, key, ca, CLIENT_AUTH[auth], low, high)


def _users(body: Mapping[str, Any], path: str) -> dict[str, bytes]:
    users = {}
    for user, hashed in body.items():
        text = str(hashed)
        if not text.startswith(("$2a$", "$2b$", "$2y$")) or len(text) != 60:
            raise WebConfigError(f"{path}: `basic_auth_users.{user}` is not a bcrypt hash "
                                 "($2y$..., 60 characters); make one with htpasswd -nBC 10 "
                                 "USER")
        users[str(user)] = text.encode()
    return users


def _headers(body: Mapping[str, Any], path: str) -> dict[str, str]:
    known = {h.lower(): h for h in HEADERS}
    out = {}
    for name, value in body.items():
        if str(name).lower() not in known:
            raise WebConfigError(f"{path}: `http_server_config.headers.{name}` cannot be "
                                 f"set; allowed: {', '.join(HEADERS)}")
        out[known[str(name).lower()]] = str(value)
    return out


def load(path: str) -> WebConfig:
    """Read and check the whole file, and load the TLS files it names into its context."""
    try:
        doc = yaml.safe_load(Path(path).read_text(encoding="utf-8"))
    except OSError as exc:
        raise WebConfigError(f"{path}: cannot read the web config ({exc.strerror})") from None
    except (yaml.YAMLError, UnicodeDecodeError):
        raise WebConfigError(f"{path}: not valid YAML") from None
    doc = _mapping(doc, "the file", path)
    _known(doc, ("tls_server_config", "http_server_config", "basic_auth_users"), "", path)
    http = _mapping(doc.get("http_server_config"), "http_server_config", path)
    _known(http, ("headers", "http2"), "http_server_config.", path)
    base = Path(path).resolve().parent
    tls = _tls(_mapping(doc.get("tls_server_config"), "tls_server_config", path), base, path)
    return WebConfig(
        path, tls, _users(_mapping(doc.get("basic_auth_users"), "basic_auth_users", path), path),
        _headers(_mapping(http.get("headers"), "http_server_config.headers", path), path),
        context(tls, path) if tls is not None else None)


def context(tls: TlsFiles, path: str) -> ssl.SSLContext:
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    ctx.minimum_version = tls.min_version
    if tls.max_version is not None:
        ctx.maximum_version = tls.max_version
    try:
        ctx.load_cert_chain(tls.cert_file, tls.key_file)
        if tls.client_ca_file:
            ctx.load_verify_locations(tls.client_ca_file)
    except (ssl.SSLError, OSError) as exc:
        raise WebConfigError(f"{path}: `tls_server_config`: cannot load the certificate, key "
                             f"or client CA ({exc})") from None
    ctx.verify_mode = tls.client_auth
    return ctx


@dataclass
class Served:
    """The web config in force: re-checked on each TLS handshake, replaced when its files
    change and load, kept (and the reason logged once) when they do not."""

    config: WebConfig
    _stamps: tuple[tuple[float, int], ...] = ()
    _said: str = ""
    _good: set[bytes] = field(default_factory=set)
    _lock: threading.Lock = field(default_factory=threading.Lock)

    def __post_init__(self) -> None:
        self._stamps = self._stat()
        if self.config.context is not None:
            self.config.context.sni_callback = self._handshake

    def _files(self) -> list[str]:
        tls = self.config.tls
        files = [self.config.path]
        if tls is not None:
            files += [f for f in (tls.cert_file, tls.key_file, tls.client_ca_file) if f]
        return files

    def _stat(self) -> tuple[tuple[float, int], ...]:
        out = []
        for name in self._files():
            try:
                st = os.stat(name)
                out.append((st.st_mtime, st.st_ino))
            except OSError:
                out.append((0.0, 0))
        return tuple(out)

    @property
    def ssl_context(self) -> ssl.SSLContext | None:
        return self.config.context

    def _handshake(self, sock: ssl.SSLObject | ssl.SSLSocket, name: str | None,
                   current: ssl.SSLContext) -> None:
        fresh = self.refresh()
        if fresh is not None and fresh is not current:
            sock.context = fresh

    def refresh(self) -> ssl.SSLContext | None:
        """Reload if a file changed; the context for new connections."""
        stamps = self._stat()
        if stamps == self._stamps:
            return self.config.context
        with self._lock:
            try:
                config = load(self.config.path)
                if (config.tls is None) != (self.config.tls is None):
                    raise WebConfigError(f"{self.config.path}: turning TLS on or off needs a "
                                         "restart")
            except WebConfigError as exc:
                if str(exc) != self._said:
                    log.error("web config not reloaded, the last good one stays: %s", exc)
                    self._said = str(exc)
                self._stamps = stamps
                return self.config.context
            if config.context is not None:
                config.context.sni_callback = self._handshake
            if config.users != self.config.users:
                self._good.clear()
            self.config, self._stamps, self._said = config, stamps, ""
            log.info("web config reloaded from %s", config.path)
            return config.context

    def check(self, header: str | None) -> bool | None:
        """True or False for an Authorization header when it is known; None when bcrypt
        has to decide (call `verify` off the loop)."""
        if not self.config.users:
            return True
        if not header or not header.startswith("Basic "):
            return False
        return True if _digest(header) in self._good else None

    def verify(self, header: str) -> bool:
        """The bcrypt check; blocking."""
        try:
            user, _, password = base64.b64decode(header[6:], validate=True).decode().partition(
                ":")
        except (binascii.Error, UnicodeDecodeError):
            return False
        hashed = self.config.users.get(user)
        # An unknown user costs a check too: the answer's time must not tell users apart.
        good = bcrypt.checkpw(password.encode(), hashed or DECOY)
        if hashed is None or not good:
            return False
        self._good.add(_digest(header))
        return True


def _digest(header: str) -> bytes:
    return hashlib.sha256(header.encode()).digest()

