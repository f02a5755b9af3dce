"""TLS for the LAN admin listener: the configured certificate, else a self-signed one made on
first run (kept in the state directory, reused afterwards), else nothing (the listener then
refuses to start unless `admin.allow_http` is set).

The certificate is made with the `openssl` command line tool (the `cryptography` package is not
a dependency). Staff check the SHA-256 fingerprint their browser shows against the one in the
journal and on the admin status page, once; after that the browser remembers the exception.
"""

from __future__ import annotations

import hashlib
import ipaddress
import logging
import os
import shutil
import ssl
import subprocess
from dataclasses import dataclass
from pathlib import Path

import trio

__all__ = ["AdminTls", "TlsError", "fingerprint", "self_signed"]

log = logging.getLogger("appliance.admin")

CERT_NAME = "admin-tls.crt"
KEY_NAME = "admin-tls.key"
_DAYS = 3650


class TlsError(Exception):
    pass


@dataclass(frozen=True)
class AdminTls:
    cert: str
    key: str
    fingerprint: str  # SHA-256 of the DER certificate, AA:BB:... as browsers show it
    self_signed: bool


def fingerprint(cert_path: Path) -> str:
    """The SHA-256 fingerprint of the first certificate in a PEM file."""
    pem = cert_path.read_text(encoding="ascii", errors="replace")
    begin = pem.find("-----BEGIN CERTIFICATE-----")
    end = pem.find("-----END CERTIFICATE-----", begin)
    if begin < 0 or end < 0:
        raise TlsError(f"{cert_path}: no PEM certificate in it")
    der = ssl.PEM_cert_to_DER_cert(pem[begin : end + len("-----END CERTIFICATE-----")] + "\n")
    digest = hashlib.sha256(der).hexdigest().upper()
    return ":".join(digest[i : i + 2] for i in range(0, len(digest), 2))


def _loads(cert: Path, key: Path) -> bool:
    try:
        ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER).load_cert_chain(str(cert), str(key))
    except (ssl.SSLError, OSError):
        return False
    return True


def _subject_alt_name(host: str) -> str:
    names = ["DNS:localhost", "IP:127.0.0.1"]
    try:
        ipaddress.ip_address(host)
        names.insert(0, f"IP:{host}")
    except ValueError:
        if host and host not in ("0.0.0.0", "::"):
            names.insert(0, f"DNS:{host}")
    return ",".join(dict.fromkeys(names))


def _make(cert: Path, key: Path, host: str) -> None:
    """Blocking: an EC P-256 key and a self-signed certificate for `host`, key mode 0600."""
    openssl = shutil.which("openssl")
    if openssl is None:
        raise TlsError("the openssl command is not installed (apt-get install openssl)")
    tmp_cert, tmp_key = cert.with_suffix(".crt.tmp"), key.with_suffix(".key.tmp")
    cmd = [
        openssl,
        "req",
        "-x509",
        "-newkey",
        "ec",
        "-pkeyopt",
        "ec_paramgen_curve:prime256v1",
        "-nodes",
        "-keyout",
        str(tmp_key),
        "-out",
        str(tmp_cert),
        "-days",
        str(_DAYS),
        "-subj",
        f"/CN={host or 'kiosk-appliance'}/O=kiosk appliance admin (self-signed)",
        "-addext",
        f"subjectAltName={_subject_alt_name(host)}",
    ]
    old = os.umask(0o077)
    try:
        run = subprocess.run(cmd, capture_output=True, text=True, timeout=60, check=False)
    finally:
        os.umask(old)
    if run.returncode != 0:
        for p in (tmp_cert, tmp_key):
            p.unlink(missing_ok=True)
        raise TlsError(f"openssl failed: {run.stderr.strip()[-300:]}")
    os.chmod(tmp_key, 0o600)
    os.replace(tmp_key, key)
    os.replace(tmp_cert, cert)


def _self_signed_blocking(state_dir: Path, host: str) -> AdminTls:
    cert, key = state_dir / CERT_NAME, state_dir / KEY_NAME
    made = False
    if not (cert.is_file() and key.is_file() and _loads(cert, key)):
        _make(cert, key, host)
        made = True
    fp = fingerprint(cert)
    log.warning(
        "admin TLS: %s self-signed certificate %s, SHA-256 fingerprint %s (check that your "
        "browser shows this fingerprint before you log in)",
        "made a new" if made else "using the",
        cert,
        fp,
        extra={"fingerprint": fp, "cert": str(cert)},
    )
    return AdminTls(str(cert), str(key), fp, True)


async def self_signed(state_dir: Path, host: str) -> AdminTls:
    """The self-signed pair in `state_dir`, made on first use. Raises TlsError."""
    try:
        return await trio.to_thread.run_sync(_self_signed_blocking, state_dir, host)
    except (OSError, subprocess.SubprocessError, ValueError) as exc:
        raise TlsError(f"cannot make a self-signed certificate in {state_dir}: {exc}") from exc
