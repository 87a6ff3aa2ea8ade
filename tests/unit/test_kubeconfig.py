"""Cluster access: kubeconfig parsing, in-cluster config and where each comes from.

Every problem is one line that names the file and the field; the CLI turns it into exit code 2
with nothing else on stderr."""

from __future__ import annotations

import base64
import functools
import json
import os
import shutil
import ssl
import stat
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import yaml

from exporter.io import kubeconfig
from exporter.io.kubeconfig import KubeconfigError, discover, from_kubeconfig, in_cluster

SERVER = "https://127.0.0.1:6443"


@pytest.fixture(scope="module")
def pem(tmp_path_factory: pytest.TempPathFactory) -> tuple[bytes, bytes]:
    """A self-signed certificate and its key, made for this run by the openssl CLI."""
    openssl = shutil.which("openssl")
    assert openssl, "the openssl CLI is needed to make a test certificate"
    work = tmp_path_factory.mktemp("pem")
    subprocess.run([openssl, "req", "-x509", "-newkey", "ec", "-pkeyopt",
                    "ec_paramgen_curve:prime256v1", "-nodes", "-keyout", "key.pem", "-out",
                    "cert.pem", "-days", "2", "-subj", "/CN=dse-unit-test"],
                   cwd=work, check=True, capture_output=True)
    return (work / "cert.pem").read_bytes(), (work / "key.pem").read_bytes()


def config(*, cluster: dict[str, Any] | None = None, user: dict[str, Any] | None = None,
           context: dict[str, Any] | None = None, current: str | None = "ctx",
           **extra: Any) -> dict[str, Any]:
    doc: dict[str, Any] = {
        "apiVersion": "v1", "kind": "Config",
        "clusters": [{"name": "c", "cluster": cluster if cluster is not None
                      else {"server": SERVER + "/"}}],
        "users": [{"name": "u", "user": user if user is not None else {"token": "abc"}}],
        "contexts": [{"name": "ctx", "context": context if context is not None
                      else {"cluster": "c", "user": "u"}}],
    }
    if current is not None:
        doc["current-context"] = current
    doc.update(extra)
    return doc


def write(path: Path, doc: Any) -> str:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(doc if isinstance(doc, str) else yaml.safe_dump(doc))
    return str(path)


def error(path: str, context: str | None = None) -> str:
    with pytest.raises(KubeconfigError) as info:
        from_kubeconfig(path, context)
    message = str(info.value)
    assert "\n" not in message, message
    assert message.startswith(path), message
    return message


def b64(data: bytes) -> str:
    return base64.b64encode(data).decode()


# -- what a good kubeconfig gives ----------------------------------------------------------

def test_token(tmp_path: Path) -> None:
    path = write(tmp_path / "kc", config())
    access = from_kubeconfig(path)
    assert access.server == SERVER  # no trailing slash
    assert access.authorization() == "Bearer abc"
    assert access.token_file is None and access.ca_file is None
    assert access.cert_file is None and access.key_file is None
    assert not access.insecure and access.source == path


def test_json_kubeconfig_is_yaml_too(tmp_path: Path) -> None:
    path = tmp_path / "kc.json"
    path.write_text(json.dumps(config()))
    assert from_kubeconfig(str(path)).authorization() == "Bearer abc"


def test_token_file_is_relative_to_the_kubeconfig_and_read_on_every_request(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    (tmp_path / "conf" / "secrets").mkdir(parents=True)
    token = tmp_path / "conf" / "secrets" / "token"
    token.write_text("first\n")
    path = write(tmp_path / "conf" / "kc",
                 config(user={"tokenFile": "secrets/token", "token": "ignored"}))
    monkeypatch.chdir(tmp_path)  # relative to the kubeconfig, not to the working directory
    access = from_kubeconfig(path)
    assert access.token_file == str(token.resolve())
    assert access.authorization() == "Bearer first"
    token.write_text("second")  # rotated by the kubelet
    assert access.authorization() == "Bearer second"
    token.unlink()
    with pytest.raises(KubeconfigError, match="cannot read token file .*token"):
        access.authorization()


def test_absolute_token_file(tmp_path: Path) -> None:
    token = tmp_path / "abs-token"
    token.write_text("t")
    path = write(tmp_path / "sub" / "kc", config(user={"tokenFile": str(token)}))
    assert from_kubeconfig(path).authorization() == "Bearer t"


def test_missing_token_file(tmp_path: Path) -> None:
    path = write(tmp_path / "kc", config(user={"tokenFile": "nope"}))
    message = error(path)
    assert "`tokenFile`" in message and str(tmp_path / "nope") in message


def test_certificate_authority_data(tmp_path: Path, pem: tuple[bytes, bytes]) -> None:
    cert, key = pem
    path = write(tmp_path / "kc", config(
        cluster={"server": SERVER, "certificate-authority-data": b64(cert)},
        user={"client-certificate-data": b64(cert), "client-key-data": b64(key)}))
    access = from_kubeconfig(path)
    for name, content in ((access.ca_file, cert), (access.cert_file, cert),
                          (access.key_file, key)):
        assert name is not None
        assert Path(name).read_bytes() == content
        assert stat.S_IMODE(Path(name).stat().st_mode) == 0o600
    context = access.ssl_context()
    assert isinstance(context, ssl.SSLContext)
    assert context.verify_mode == ssl.CERT_REQUIRED and context.check_hostname
    assert [c["subject"] for c in context.get_ca_certs()] == [((("commonName",
                                                                 "dse-unit-test"),),)]


def test_certificate_files_are_relative_to_the_kubeconfig(
        tmp_path: Path, pem: tuple[bytes, bytes]) -> None:
    (tmp_path / "pki").mkdir()
    (tmp_path / "pki" / "ca.crt").write_bytes(pem[0])
    path = write(tmp_path / "kc", config(
        cluster={"server": SERVER, "certificate-authority": "pki/ca.crt"}))
    access = from_kubeconfig(path)
    assert access.ca_file == str((tmp_path / "pki" / "ca.crt").resolve())
    assert isinstance(access.ssl_context(), ssl.SSLContext)


def test_insecure_skip_tls_verify(tmp_path: Path) -> None:
    path = write(tmp_path / "kc", config(cluster={"server": SERVER,
                                                  "insecure-skip-tls-verify": True}))
    assert from_kubeconfig(path).ssl_context() is False


def test_explicit_context_and_user_less_context(tmp_path: Path) -> None:
    doc = config()
    doc["clusters"].append({"name": "other", "cluster": {"server": "https://10.0.0.1"}})
    doc["contexts"].append({"name": "anon", "context": {"cluster": "other"}})
    path = write(tmp_path / "kc", doc)
    access = from_kubeconfig(path, "anon")
    assert access.server == "https://10.0.0.1" and access.authorization() is None
    assert not access.has_credential and access.context == "anon"


# -- one line naming the field -------------------------------------------------------------

@pytest.mark.parametrize(("doc", "fields"), [
    (config(current="missing"), ["no context named 'missing'", "`current-context`",
                                 "`contexts`"]),
    (config(current=None), ["no `current-context`"]),
    (config(context={"cluster": "gone", "user": "u"}), ["no cluster named 'gone'",
                                                        "`clusters`"]),
    (config(context={"cluster": "c", "user": "gone"}), ["no user named 'gone'", "`users`"]),
    (config(cluster={"insecure-skip-tls-verify": True}), ["cluster 'c' has no `server` URL"]),
    (config(cluster={"server": "10.0.0.1:6443"}), ["has no `server` URL"]),
    (config(user={"exec": {"apiVersion": "client.authentication.k8s.io/v1",
                           "command": "/nonexistent/aws", "args": ["eks", "get-token"]}}),
     ["context 'ctx': user 'u': exec plugin '/nonexistent/aws'", "No such file"]),
    (config(cluster={"server": SERVER, "proxy-url": "socks5://127.0.0.1:1080"}),
     ["`proxy-url` 'socks5://127.0.0.1:1080' is not an http:// or https:// proxy"]),
    (config(cluster={"server": SERVER, "certificate-authority-data": "%%% not base64"}),
     ["`certificate-authority-data` is not valid base64"]),
    (config(user={"client-key-data": "a b c"}), ["`client-key-data` is not valid base64"]),
    (config(cluster={"server": SERVER, "certificate-authority": "missing.crt"}),
     ["`certificate-authority` file", "missing.crt does not exist"]),
    (config(contexts={"ctx": {}}), ["`contexts` must be a list"]),
    (config(clusters=None), ["`clusters` must be a list"]),
    (config(contexts=[{"name": "ctx", "context": "c"}]), ["context 'ctx' has no `context`"]),
    ("apiVersion: v1\nclusters: [\n", ["not valid YAML"]),
    ("\tkind: Config\n", ["not valid YAML"]),
    ("- a\n- b\n", ["not a kubeconfig (expected a mapping)"]),
    ("", ["not a kubeconfig"]),
])
def test_errors_name_the_field(tmp_path: Path, doc: Any, fields: list[str]) -> None:
    message = error(write(tmp_path / "kc", doc))
    for field in fields:
        assert field in message, message


def test_binary_file_is_not_yaml(tmp_path: Path) -> None:
    path = tmp_path / "kc"
    path.write_bytes(b"\xd2\x00\xff\xfe" + os.urandom(64))
    assert "not valid YAML" in error(str(path))


def test_missing_and_unreadable_files(tmp_path: Path) -> None:
    message = error(str(tmp_path / "absent"))
    assert "cannot read the kubeconfig (No such file or directory)" in message
    assert "--kubeconfig" in message
    assert "(Is a directory)" in error(str(tmp_path))


def test_unusable_certificate_is_one_line(tmp_path: Path) -> None:
    path = write(tmp_path / "kc", config(
        cluster={"server": SERVER, "certificate-authority-data": b64(b"not a certificate")}))
    access = from_kubeconfig(path)  # valid base64: the problem shows when TLS is set up
    with pytest.raises(KubeconfigError) as info:
        access.ssl_context()
    assert "\n" not in str(info.value)
    assert "certificate-authority" in str(info.value) and str(info.value).startswith(path)


# -- in-cluster ------------------------------------------------------------------------------

IN_CLUSTER = {"KUBERNETES_SERVICE_HOST": "10.96.0.1", "KUBERNETES_SERVICE_PORT": "443"}


def service_account(root: Path, *, ca: bytes | None = b"ca") -> Path:
    root.mkdir(parents=True, exist_ok=True)
    (root / "token").write_text("projected-token\n")
    if ca is not None:
        (root / "ca.crt").write_bytes(ca)
    return root


def test_in_cluster(tmp_path: Path) -> None:
    root = service_account(tmp_path / "sa")
    access = in_cluster(IN_CLUSTER, root)
    assert access is not None
    assert access.server == "https://10.96.0.1:443"
    assert access.ca_file == str(root / "ca.crt")
    assert access.token_file == str(root / "token")
    assert access.authorization() == "Bearer projected-token"
    assert access.source == "in-cluster" and not access.insecure


def test_in_cluster_ipv6_and_no_ca(tmp_path: Path) -> None:
    root = service_account(tmp_path / "sa", ca=None)
    access = in_cluster({"KUBERNETES_SERVICE_HOST": "fd00:96::1",
                         "KUBERNETES_SERVICE_PORT": "443"}, root)
    assert access is not None
    assert access.server == "https://[fd00:96::1]:443" and access.ca_file is None


def test_not_in_cluster(tmp_path: Path) -> None:
    assert in_cluster({}, tmp_path) is None
    assert in_cluster({"KUBERNETES_SERVICE_HOST": "10.96.0.1"}, tmp_path) is None


def test_in_cluster_without_token(tmp_path: Path) -> None:
    with pytest.raises(KubeconfigError) as info:
        in_cluster(IN_CLUSTER, tmp_path)
    message = str(info.value)
    assert "\n" not in message
    assert message.startswith("in-cluster:") and "token is missing" in message
    assert "automountServiceAccountToken" in message


# -- which source wins -------------------------------------------------------------------

@pytest.fixture
def fake_service_account(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                         pem: tuple[bytes, bytes]) -> Path:
    root = service_account(tmp_path / "serviceaccount", ca=pem[0])
    monkeypatch.setattr(kubeconfig, "in_cluster", functools.partial(in_cluster, root=root))
    return root


def test_flag_wins_over_in_cluster_and_env(tmp_path: Path, fake_service_account: Path) -> None:
    flag = write(tmp_path / "flag", config(user={"token": "from-flag"}))
    env = write(tmp_path / "env", config(user={"token": "from-env"}))
    access = discover(flag, {**IN_CLUSTER, "KUBECONFIG": env})
    assert access.authorization() == "Bearer from-flag" and access.source == flag


def test_in_cluster_wins_over_kubeconfig_env(tmp_path: Path,
                                             fake_service_account: Path) -> None:
    env = write(tmp_path / "env", config(user={"token": "from-env"}))
    access = discover("", {**IN_CLUSTER, "KUBECONFIG": env})
    assert access.source == "in-cluster" and access.authorization() == "Bearer projected-token"


def test_kubeconfig_env_first_entry(tmp_path: Path, fake_service_account: Path) -> None:
    first = write(tmp_path / "first", config(user={"token": "first"}))
    second = write(tmp_path / "second", config(user={"token": "second"}))
    access = discover("", {"KUBECONFIG": os.pathsep.join([first, second])})
    assert access.authorization() == "Bearer first"


def test_home_kubeconfig_last(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                              fake_service_account: Path) -> None:
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    write(tmp_path / "home" / ".kube" / "config", config(user={"token": "home"}))
    assert discover("", {"KUBECONFIG": ""}).authorization() == "Bearer home"
    assert discover("", {}).authorization() == "Bearer home"


def test_nothing_found(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                       fake_service_account: Path) -> None:
    monkeypatch.setenv("HOME", str(tmp_path / "empty-home"))
    with pytest.raises(KubeconfigError) as info:
        discover("", {})
    message = str(info.value)
    assert "\n" not in message
    assert "KUBERNETES_SERVICE_HOST unset" in message and "--kubeconfig FILE" in message
    assert str(tmp_path / "empty-home" / ".kube" / "config") in message
    with pytest.raises(KubeconfigError, match="no kubeconfig at /nowhere/kc"):
        discover("", {"KUBECONFIG": "/nowhere/kc"})


def test_a_bad_flag_file_is_not_silently_skipped(tmp_path: Path,
                                                 fake_service_account: Path) -> None:
    with pytest.raises(KubeconfigError, match="cannot read the kubeconfig"):
        discover(str(tmp_path / "absent"), IN_CLUSTER)


def test_discover_loads_the_certificates_at_once(tmp_path: Path,
                                                 fake_service_account: Path) -> None:
    path = write(tmp_path / "kc", config(
        cluster={"server": SERVER, "certificate-authority-data": b64(b"no certificate")}))
    with pytest.raises(KubeconfigError, match="unusable certificate-authority"):
        discover(path, {})
    (fake_service_account / "ca.crt").write_text("garbage")
    with pytest.raises(KubeconfigError, match="^in-cluster: unusable certificate-authority"):
        discover("", IN_CLUSTER)


# -- the command line --------------------------------------------------------------------

def cli_cases(tmp_path: Path) -> list[tuple[str, str]]:
    binary = tmp_path / "binary"
    binary.write_bytes(b"\xd2\x00\xff" * 40)
    return [
        (str(tmp_path / "absent"), "cannot read the kubeconfig"),
        (write(tmp_path / "bad.yaml", "clusters: [\n"), "not valid YAML"),
        (str(binary), "not valid YAML"),
        (write(tmp_path / "exec", config(user={"exec": {"command": "x"}})), "exec"),
        (write(tmp_path / "ctx", config(current="nope")), "no context named 'nope'"),
        (write(tmp_path / "tokenfile", config(user={"tokenFile": "gone"})), "`tokenFile`"),
        # Valid base64 but no certificate: found when the TLS files are loaded.
        (write(tmp_path / "ca", config(cluster={"server": SERVER,
                                                "certificate-authority-data": b64(b"x")})),
         "unusable certificate-authority"),
    ]


def test_cli_bad_kubeconfig_one_line_exit_2(tmp_path: Path) -> None:
    env = {k: v for k, v in os.environ.items()
           if not k.startswith(("KUBERNETES_", "DNS_STALENESS_", "KUBECONFIG"))}
    root = Path(__file__).resolve().parents[2]
    for path, expected in cli_cases(tmp_path):
        proc = subprocess.run(
            [sys.executable, "-m", "exporter", "run", "--kubeconfig", path,
             "--listen", "127.0.0.1:0", "--watch-start-jitter", "0",
             # No layer that could send a packet off this machine, even by mistake.
             "--layers", "coredns"],
            capture_output=True, text=True, timeout=30, env=env, cwd=root)
        lines = proc.stderr.splitlines()
        assert proc.returncode == 2, (path, proc.returncode, proc.stderr)
        assert len(lines) == 1, (path, proc.stderr)
        assert "Traceback" not in proc.stderr
        assert lines[0].startswith("dns-staleness-exporter: error: kubeconfig: "), lines[0]
        assert expected in lines[0], lines[0]
        assert proc.stdout == ""


# -- kubeconfigs as people have them ------------------------------------------------------

def test_a_kubeconfig_list_merges_as_kubectl_does(tmp_path: Path) -> None:
    """The first file that names an entry wins; entries of later files fill in the rest."""
    first = write(tmp_path / "a", config(user={"token": "from-a"}))
    doc = config(current="other", user={"token": "from-b"})
    doc["clusters"] = [{"name": "c2", "cluster": {"server": "https://10.0.0.2"}}]
    doc["contexts"] = [{"name": "other", "context": {"cluster": "c2", "user": "u"}}]
    second = write(tmp_path / "b", doc)
    merged = discover("", {"KUBECONFIG": os.pathsep.join([first, str(tmp_path / "gone"),
                                                           second])})
    assert merged.server == SERVER and merged.authorization() == "Bearer from-a"
    other = discover("", {"KUBECONFIG": os.pathsep.join([first, second])}, context="other")
    assert other.server == "https://10.0.0.2" and other.authorization() == "Bearer from-a"
    assert other.context == "other" and other.source == os.pathsep.join([first, second])
    message = error(os.pathsep.join([first, second]), "nope")
    assert "no context named 'nope'" in message


def test_exec_plugin_gives_the_token(tmp_path: Path) -> None:
    plugin = tmp_path / "plugin.py"
    plugin.write_text("import json\nprint(json.dumps({'apiVersion': "
                      "'client.authentication.k8s.io/v1', 'kind': 'ExecCredential', "
                      "'status': {'token': 'from-plugin'}}))\n")
    path = write(tmp_path / "kc", config(user={"exec": {
        "apiVersion": "client.authentication.k8s.io/v1", "command": sys.executable,
        "args": [str(plugin)]}}))
    access = from_kubeconfig(path)
    assert access.refreshes and access.has_credential
    assert access.authorization() == "Bearer from-plugin"
    plugin.write_text("import sys\nsys.exit('no credential for you')\n")
    message = error(path)
    assert "exec plugin" in message and "no credential for you" in message


def test_basic_auth_and_proxy(tmp_path: Path) -> None:
    path = write(tmp_path / "kc", config(
        cluster={"server": SERVER, "proxy-url": "http://proxy.internal:3128",
                 "tls-server-name": "kubernetes"},
        user={"username": "admin", "password": "secret"}))
    access = from_kubeconfig(path)
    assert access.authorization() == "Basic " + b64(b"admin:secret")
    assert access.proxy == "http://proxy.internal:3128"
    assert access.tls_server_name == "kubernetes"
