"""--web.config.file: the exporter-toolkit format, checked whole, one line per problem."""

from __future__ import annotations

import ssl
from pathlib import Path
from typing import Any

import bcrypt
import pytest
import yaml

from exporter.io.webconfig import WebConfigError, load
from tests.rig.pki import ClusterPki


@pytest.fixture(scope="module")
def pki(tmp_path_factory: pytest.TempPathFactory) -> ClusterPki:
    return ClusterPki.generate(tmp_path_factory.mktemp("pki"), ip_sans=["127.0.0.1"])


HASH = bcrypt.hashpw(b"secret", bcrypt.gensalt(4)).decode()


def write(tmp_path: Path, doc: Any) -> str:
    path = tmp_path / "web.yml"
    path.write_text(doc if isinstance(doc, str) else yaml.safe_dump(doc))
    return str(path)


def error(tmp_path: Path, doc: Any) -> str:
    path = write(tmp_path, doc)
    with pytest.raises(WebConfigError) as info:
        load(path)
    message = str(info.value)
    assert "\n" not in message and message.startswith(path), message
    return message


def test_a_full_config(tmp_path: Path, pki: ClusterPki) -> None:
    config = load(write(tmp_path, {
        "tls_server_config": {"cert_file": str(pki.serving_cert),
                              "key_file": str(pki.serving_key),
                              "client_auth_type": "RequireAndVerifyClientCert",
                              "client_ca_file": str(pki.ca_cert), "min_version": "TLS13"},
        "basic_auth_users": {"prometheus": HASH},
        "http_server_config": {"headers": {"strict-transport-security": "max-age=31536000"},
                               "http2": False}}))
    assert config.tls is not None and config.tls.client_auth == ssl.CERT_REQUIRED
    assert config.tls.min_version == ssl.TLSVersion.TLSv1_3 and config.tls.max_version is None
    assert config.users == {"prometheus": HASH.encode()}
    assert config.headers == {"Strict-Transport-Security": "max-age=31536000"}


def test_relative_files_are_the_configs_and_empty_is_plain_http(tmp_path: Path,
                                                               pki: ClusterPki) -> None:
    (tmp_path / "tls").mkdir()
    for src, name in ((pki.serving_cert, "tls.crt"), (pki.serving_key, "tls.key")):
        (tmp_path / "tls" / name).write_bytes(src.read_bytes())
    config = load(write(tmp_path, {"tls_server_config": {"cert_file": "tls/tls.crt",
                                                          "key_file": "tls/tls.key"}}))
    assert config.tls is not None and config.tls.cert_file == str(tmp_path / "tls/tls.crt")
    assert config.tls.min_version == ssl.TLSVersion.TLSv1_2  # the toolkit's default
    plain = load(write(tmp_path, ""))
    assert plain.tls is None and not plain.users and not plain.headers


@pytest.mark.parametrize(("doc", "expected"), [
    ({"tls_config": {}}, "unknown key `tls_config`; known: tls_server_config"),
    ({"tls_server_config": {"cert_file": "x"}}, "`tls_server_config.cert_file` file"),
    ({"tls_server_config": {"cipher_suites": ["TLS_AES_128_GCM_SHA256"]}},
     "`tls_server_config.cipher_suites` is not supported"),
    ({"basic_auth_users": {"me": "plain-text"}}, "`basic_auth_users.me` is not a bcrypt hash"),
    ({"basic_auth_users": ["me"]}, "`basic_auth_users` must be a mapping"),
    ({"http_server_config": {"headers": {"Server": "x"}}},
     "`http_server_config.headers.Server` cannot be set"),
    ({"http_server_config": {"gzip": True}}, "unknown key `http_server_config.gzip`"),
    ("tls_server_config: [\n", "not valid YAML"),
    ("- a\n", "`the file` must be a mapping"),
])
def test_errors_name_the_key(tmp_path: Path, doc: Any, expected: str) -> None:
    assert expected in error(tmp_path, doc)


@pytest.mark.parametrize(("tls", "expected"), [
    ({"client_auth_type": "RequireAnyClientCert"}, "RequireAnyClientCert is not supported"),
    ({"client_auth_type": "Always"}, "'Always' is not one of NoClientCert"),
    ({"client_auth_type": "RequireAndVerifyClientCert"}, "needs client_ca_file"),
    ({"min_version": "TLS14"}, "`tls_server_config.min_version` 'TLS14' is not one of"),
    ({"min_version": "TLS13", "max_version": "TLS12"}, "max_version` is below min_version"),
])
def test_tls_errors(tmp_path: Path, pki: ClusterPki, tls: dict[str, Any], expected: str) -> None:
    body = {"cert_file": str(pki.serving_cert), "key_file": str(pki.serving_key), **tls}
    assert expected in error(tmp_path, {"tls_server_config": body})


def test_a_key_that_is_not_the_certificates_is_one_line(tmp_path: Path,
                                                       pki: ClusterPki) -> None:
    message = error(tmp_path, {"tls_server_config": {"cert_file": str(pki.serving_cert),
                                                     "key_file": str(pki.sa_private_key)}})
    assert "cannot load the certificate, key or client CA" in message


def test_missing_file(tmp_path: Path) -> None:
    with pytest.raises(WebConfigError, match="cannot read the web config"):
        load(str(tmp_path / "absent.yml"))
