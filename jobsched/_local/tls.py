"""TLS for a scheduler that listens where it is told (``Scheduler(listen=...)``), and the credential file.

The default scheduler listens on 127.0.0.1 and speaks plain TCP plus the HMAC handshake (``_local.wire``).
Any explicit ``listen=``, even a loopback address, wraps every connection in TLS first:

* the scheduler makes a **per-run self-signed certificate** (an ECDSA P-256 key that never leaves its
  process memory, except for the moment ``ssl`` loads it from a 0600 file in a 0700 temporary directory);
* a worker **pins** that certificate: it is the only certificate the worker's TLS context trusts, and the
  worker also compares its SHA-256 fingerprint, so no other server, CA-signed or not, can pose as the
  scheduler. Host names are not checked: the pin is stronger than a name;
* inside TLS the HMAC handshake runs as on loopback, so a client needs both the secret and a TLS stack,
  and nothing is unpickled before both checks passed.

The credential file (``Scheduler.write_credentials(path)``) carries what a hand-started worker needs:
one JSON object ``{"address": "HOST:PORT", "secret": hex, "certificate": PEM or null}``, created with mode
0600 whatever the umask (and never on a command line: ``--credentials FILE`` names the file, or ``-`` to
read it as the first line of standard input).

The ``cryptography`` package makes the certificate; it is needed only with ``listen=``
(``pip install 'jobsched[cluster]'``).
"""

from __future__ import annotations

import contextlib
import datetime
import hashlib
import json
import os
import ssl
import tempfile
from typing import Any, NamedTuple

CERT_DAYS = 365  # a run may last long; the certificate dies with the run's process anyway


class Credentials(NamedTuple):
    """What a worker needs to join a scheduler: where, the secret, and the certificate to pin (None: no TLS)."""

    address: str
    secret: bytes
    certificate: str | None

    def to_json(self) -> str:
        return json.dumps({"address": self.address, "secret": self.secret.hex(), "certificate": self.certificate})

    @classmethod
    def from_json(cls, text: str, source: str) -> Credentials:
        """Parse a credential file's text; ``source`` names it in the error.

        Raises:
            ValueError: not a jobsched credential file.
        """
        try:
            data = json.loads(text)
            secret = bytes.fromhex(data["secret"])
            address = str(data["address"])
            certificate = data.get("certificate")
            if certificate is not None and not isinstance(certificate, str):
                raise TypeError("certificate is not a PEM string")
        except (ValueError, KeyError, TypeError, AttributeError) as exc:
            raise ValueError(f"{source} is not a jobsched credential file ({type(exc).__name__}: {exc}); "
                             "write one with Scheduler.write_credentials(path)") from None
        return cls(address, secret, certificate)


def write_private(path: str | os.PathLike[str], text: str) -> None:
    """Write ``text`` to ``path`` with mode 0600, whatever the umask, replacing the file atomically.

    The data goes to a new file created 0600 (``O_EXCL``, then ``fchmod`` in case the umask took bits away
    that 0600 needs) in the same directory, then renamed over ``path``: a reader never sees a partial file,
    and an existing file with looser permissions is replaced, not rewritten in place.
    """
    path = os.fspath(path)
    folder = os.path.dirname(os.path.abspath(path))
    fd, tmp = tempfile.mkstemp(prefix=".jobsched-credentials-", dir=folder)  # created 0600, O_EXCL
    try:
        os.fchmod(fd, 0o600)
        with os.fdopen(fd, "w") as f:
            f.write(text)
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise


def fingerprint(der: bytes) -> str:
    return hashlib.sha256(der).hexdigest()


class ServerIdentity:
    """This run's certificate and the TLS context that serves it (made once per scheduler)."""

    def __init__(self, host: str) -> None:
        try:
            from cryptography import x509
            from cryptography.hazmat.primitives import hashes, serialization
            from cryptography.hazmat.primitives.asymmetric import ec
            from cryptography.x509.oid import NameOID
        except ImportError as exc:
            raise ImportError(f"Scheduler(listen=...) speaks TLS and needs the cryptography package ({exc}): "
                              "pip install 'jobsched[cluster]'") from exc
        import ipaddress

        key = ec.generate_private_key(ec.SECP256R1())
        name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "jobsched scheduler")])
        now = datetime.datetime.now(datetime.timezone.utc)
        alt: list[Any] = [x509.DNSName("jobsched")]
        try:
            alt.append(x509.IPAddress(ipaddress.ip_address(host)))
        except ValueError:
            alt.append(x509.DNSName(host))
        cert = (x509.CertificateBuilder().subject_name(name).issuer_name(name).public_key(key.public_key())
                .serial_number(x509.random_serial_number())
                .not_valid_before(now - datetime.timedelta(hours=1))
                .not_valid_after(now + datetime.timedelta(days=CERT_DAYS))
                .add_extension(x509.SubjectAlternativeName(alt), critical=False)
                .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
                .sign(key, hashes.SHA256()))
        self.certificate = cert.public_bytes(serialization.Encoding.PEM).decode()
        self.fingerprint = fingerprint(cert.public_bytes(serialization.Encoding.DER))
        key_pem = key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                    serialization.NoEncryption())
        context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        context.minimum_version = ssl.TLSVersion.TLSv1_3
        with tempfile.TemporaryDirectory(prefix="jobsched-tls-") as folder:  # 0700; gone once loaded
            cert_path, key_path = os.path.join(folder, "cert.pem"), os.path.join(folder, "key.pem")
            write_private(cert_path, self.certificate)
            write_private(key_path, key_pem.decode())
            context.load_cert_chain(cert_path, key_path)
        self.context = context


def client_context(certificate: str) -> ssl.SSLContext:
    """A worker's TLS context that trusts exactly ``certificate`` (the scheduler's, from the credentials)."""
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    context.minimum_version = ssl.TLSVersion.TLSv1_3
    context.check_hostname = False  # pinned: the one certificate is the identity, whatever name it is reached by
    context.verify_mode = ssl.CERT_REQUIRED
    context.load_verify_locations(cadata=certificate)
    return context


def check_pin(sock: ssl.SSLSocket, certificate: str) -> None:
    """Raise ``ConnectionError`` unless the peer presented exactly ``certificate``."""
    der = sock.getpeercert(binary_form=True)
    if der is None or fingerprint(der) != fingerprint(ssl.PEM_cert_to_DER_cert(certificate)):
        raise ConnectionError("the scheduler presented another certificate than the credentials pin")
