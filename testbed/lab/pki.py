"""A certificate authority made per lab run, and the certificates of the lab's TLS services (the TURN
server's TLS on 443, the WSS signalling service).

The lab has no DNS, so each server certificate names its server's IP address (subjectAltName
iPAddress), which is what TLS clients check when they connect to ``turns:ADDRESS:443``. Endpoints trust
the lab's CA only (its file is handed to them); nothing is installed in the host's trust store. Keys are
ECDSA P-256: small and quick to make (a few milliseconds).
"""

from __future__ import annotations

import datetime
import ipaddress
from dataclasses import dataclass
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

VALID_FOR = datetime.timedelta(days=2)  # a lab lives minutes; kept labs a while longer


@dataclass(frozen=True)
class ServerCert:
    cert: Path
    key: Path
    spki_sha256: str  # base64 SHA-256 of the public key: what Chromium's SPKI allow-list takes


def _pem_key(key: ec.EllipticCurvePrivateKey) -> bytes:
    return key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    )


def _write(path: Path, data: bytes) -> Path:
    path.write_bytes(data)
    path.chmod(0o644)  # services in containers run as other users; these keys protect nothing outside the lab
    return path


class LabCA:
    """One CA per run in ``directory``: ``ca.pem`` is what clients trust."""

    def __init__(self, directory: Path, run_id: str):
        self.directory = directory
        self.key = ec.generate_private_key(ec.SECP256R1())
        name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, f"voip-testbed lab CA {run_id}")])
        now = datetime.datetime.now(datetime.UTC)
        self.name = name
        self.certificate = (
            x509.CertificateBuilder()
            .subject_name(name)
            .issuer_name(name)
            .public_key(self.key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(now - datetime.timedelta(minutes=5))
            .not_valid_after(now + VALID_FOR)
            .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
            .add_extension(x509.KeyUsage(False, False, False, False, False, True, True, False, False), critical=True)
            .sign(self.key, hashes.SHA256())
        )
        self.ca_file = _write(directory / "ca.pem", self.certificate.public_bytes(serialization.Encoding.PEM))

    def server(self, label: str, address: ipaddress.IPv4Address) -> ServerCert:
        """A certificate for a server reached as ``address``, signed by this CA."""
        key = ec.generate_private_key(ec.SECP256R1())
        now = datetime.datetime.now(datetime.UTC)
        certificate = (
            x509.CertificateBuilder()
            .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, str(address))]))
            .issuer_name(self.name)
            .public_key(key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(now - datetime.timedelta(minutes=5))
            .not_valid_after(now + VALID_FOR)
            .add_extension(x509.SubjectAlternativeName([x509.IPAddress(address)]), critical=False)
            .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
            .add_extension(x509.ExtendedKeyUsage([x509.oid.ExtendedKeyUsageOID.SERVER_AUTH]), critical=False)
            .sign(self.key, hashes.SHA256())
        )
        chain = certificate.public_bytes(serialization.Encoding.PEM) + self.certificate.public_bytes(
            serialization.Encoding.PEM
        )
        spki = key.public_key().public_bytes(
            serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
        )
        digest = hashes.Hash(hashes.SHA256())
        digest.update(spki)
        import base64

        return ServerCert(
            cert=_write(self.directory / f"{label}.pem", chain),
            key=_write(self.directory / f"{label}.key", _pem_key(key)),
            spki_sha256=base64.b64encode(digest.finalize()).decode(),
        )
