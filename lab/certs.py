"""The lab's certificate authority and the certificates its TLS endpoints present, good and bad."""

from __future__ import annotations

import datetime
import ipaddress
from pathlib import Path

DEFAULT_SANS = ("localhost", "127.0.0.1")


class LabCA:
    """A CA under `directory`; `issue` writes PEM certificate and key files signed by it (or by themselves)."""

    def __init__(self, directory: Path, name: str = "netaudit lab CA"):
        from cryptography import x509
        from cryptography.hazmat.primitives.asymmetric import ec

        self.dir = directory
        self.dir.mkdir(parents=True, exist_ok=True)
        self.key = ec.generate_private_key(ec.SECP256R1())
        self.name = x509.Name([x509.NameAttribute(x509.oid.NameOID.COMMON_NAME, name)])
        cert = self._build(self.name, self.key, self.name, self.key, days=(-1, 30), ca=True)
        self.cert_path = self._write("ca", cert, None)[0]

    @staticmethod
    def _build(subject, key, issuer, issuer_key, days: tuple[int, int], ca: bool = False, sans=()):
        from cryptography import x509
        from cryptography.hazmat.primitives import hashes

        now = datetime.datetime.now(datetime.timezone.utc)
        builder = (x509.CertificateBuilder().subject_name(subject).issuer_name(issuer).public_key(key.public_key())
                   .serial_number(x509.random_serial_number())
                   .not_valid_before(now + datetime.timedelta(days=days[0]))
                   .not_valid_after(now + datetime.timedelta(days=days[1]))
                   .add_extension(x509.BasicConstraints(ca=ca, path_length=None), critical=True))
        builder = (builder.add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()), critical=False)
                   .add_extension(x509.AuthorityKeyIdentifier.from_issuer_public_key(issuer_key.public_key()),
                                  critical=False))
        if ca:
            builder = builder.add_extension(x509.KeyUsage(
                digital_signature=True, key_cert_sign=True, crl_sign=True, content_commitment=False,
                key_encipherment=False, data_encipherment=False, key_agreement=False, encipher_only=False,
                decipher_only=False), critical=True)
        else:
            builder = builder.add_extension(x509.ExtendedKeyUsage(
                [x509.oid.ExtendedKeyUsageOID.SERVER_AUTH, x509.oid.ExtendedKeyUsageOID.CLIENT_AUTH]), critical=False)
        if sans:
            names = []
            for san in sans:
                try:
                    names.append(x509.IPAddress(ipaddress.ip_address(san)))
                except ValueError:
                    names.append(x509.DNSName(san))
            builder = builder.add_extension(x509.SubjectAlternativeName(names), critical=False)
        return builder.sign(issuer_key, hashes.SHA256())

    def _write(self, stem: str, cert, key) -> tuple[Path, Path | None]:
        from cryptography.hazmat.primitives import serialization

        cert_path = self.dir / f"{stem}.crt"
        cert_path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
        if key is None:
            return cert_path, None
        key_path = self.dir / f"{stem}.key"
        key_path.write_bytes(key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                               serialization.NoEncryption()))
        return cert_path, key_path

    def issue(self, stem: str, common_name: str, sans=DEFAULT_SANS, expired: bool = False,
              self_signed: bool = False) -> tuple[Path, Path]:
        from cryptography import x509
        from cryptography.hazmat.primitives.asymmetric import ec

        key = ec.generate_private_key(ec.SECP256R1())
        subject = x509.Name([x509.NameAttribute(x509.oid.NameOID.COMMON_NAME, common_name)])
        issuer, issuer_key = (subject, key) if self_signed else (self.name, self.key)
        cert = self._build(subject, key, issuer, issuer_key, days=(-30, -1) if expired else (-1, 30), sans=sans)
        cert_path, key_path = self._write(stem, cert, key)
        return cert_path, key_path  # type: ignore[return-value]
