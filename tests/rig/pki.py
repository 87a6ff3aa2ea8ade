"""Certificates and keys for the rig's kube-apiserver, made with the openssl CLI."""

from __future__ import annotations

import shutil
import subprocess
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from .process import RigError


def _openssl(openssl: str, args: Sequence[str], cwd: Path) -> None:
    proc = subprocess.run(
        [openssl, *args], cwd=cwd, capture_output=True, text=True, check=False, timeout=60
    )
    if proc.returncode != 0:
        raise RigError(f"openssl {' '.join(args)} failed: {proc.stderr.strip()}")


@dataclass(frozen=True)
class ClusterPki:
    """A CA, a serving certificate signed by it, and a service-account key pair."""

    directory: Path
    ca_cert: Path
    ca_key: Path
    serving_cert: Path
    serving_key: Path
    sa_private_key: Path
    sa_public_key: Path

    @classmethod
    def generate(
        cls,
        directory: Path,
        *,
        ip_sans: Sequence[str],
        dns_sans: Sequence[str] = (),
        openssl: str | Path | None = None,
    ) -> ClusterPki:
        """Create all files under ``directory`` (EC P-256 keys: fast to make)."""
        tool = str(openssl) if openssl is not None else shutil.which("openssl")
        if not tool:
            raise RigError("openssl not found: run scripts/rig-install")
        directory.mkdir(parents=True, exist_ok=True)
        ec = ["-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes"]
        _openssl(
            tool,
            [
                "req", "-x509", *ec, "-keyout", "ca.key", "-out", "ca.crt", "-days", "3650",
                "-subj", "/CN=dse-rig-ca",
                "-addext", "basicConstraints=critical,CA:TRUE",
                "-addext", "keyUsage=critical,keyCertSign,cRLSign,digitalSignature",
            ],
            directory,
        )  # fmt: skip
        sans = [f"IP:{ip}" for ip in ip_sans] + [f"DNS:{name}" for name in dns_sans]
        (directory / "serving.ext").write_text(
            "basicConstraints=CA:FALSE\n"
            "keyUsage=critical,digitalSignature,keyEncipherment\n"
            "extendedKeyUsage=serverAuth\n"
            f"subjectAltName={','.join(sans)}\n"
        )
        _openssl(
            tool,
            ["req", *ec, "-keyout", "serving.key", "-out", "serving.csr",
             "-subj", "/CN=kube-apiserver"],
            directory,
        )  # fmt: skip
        _openssl(
            tool,
            [
                "x509", "-req", "-in", "serving.csr", "-CA", "ca.crt", "-CAkey", "ca.key",
                "-CAcreateserial", "-out", "serving.crt", "-days", "3650",
                "-extfile", "serving.ext",
            ],
            directory,
        )  # fmt: skip
        _openssl(
            tool,
            ["genpkey", "-algorithm", "EC", "-pkeyopt", "ec_paramgen_curve:prime256v1",
             "-out", "sa.key"],
            directory,
        )  # fmt: skip
        _openssl(tool, ["pkey", "-in", "sa.key", "-pubout", "-out", "sa.pub"], directory)
        return cls(
            directory=directory,
            ca_cert=directory / "ca.crt",
            ca_key=directory / "ca.key",
            serving_cert=directory / "serving.crt",
            serving_key=directory / "serving.key",
            sa_private_key=directory / "sa.key",
            sa_public_key=directory / "sa.pub",
        )

    def issue(self, stem: str, *, cn: str, usage: str = "serverAuth",
              ip_sans: Sequence[str] = ("127.0.0.1",)) -> tuple[Path, Path]:
        """Another certificate signed by this CA: `stem`.crt and `stem`.key (a server's with
        its IP SANs, or a client's with usage clientAuth)."""
        tool = shutil.which("openssl")
        if not tool:
            raise RigError("openssl not found: run scripts/rig-install")
        sans = f"subjectAltName={','.join(f'IP:{ip}' for ip in ip_sans)}\n" if ip_sans else ""
        (self.directory / f"{stem}.ext").write_text(
            "basicConstraints=CA:FALSE\nkeyUsage=critical,digitalSignature,keyEncipherment\n"
            f"extendedKeyUsage={usage}\n{sans}")
        ec = ["-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes"]
        _openssl(tool, ["req", *ec, "-keyout", f"{stem}.key", "-out", f"{stem}.csr",
                        "-subj", f"/CN={cn}"], self.directory)
        _openssl(tool, ["x509", "-req", "-in", f"{stem}.csr", "-CA", "ca.crt", "-CAkey",
                        "ca.key", "-CAcreateserial", "-out", f"{stem}.crt", "-days", "2",
                        "-extfile", f"{stem}.ext"], self.directory)
        return self.directory / f"{stem}.crt", self.directory / f"{stem}.key"
