"""The kubelet's serving certificate for its API on port 10250, made at start: signed by the lab's
CA where the CA's key is on this machine (every node of a one-box lab, the machine `netlab init`
made), else self-signed, as upstream's kubelet makes its own when no certificate is given (a
machine `netlab join` made holds only the CA's certificate)."""

from __future__ import annotations

import datetime
import ipaddress
import os
from pathlib import Path


def serving_cert(cert_file: Path, key_file: Path, node: str, ip: str, ca_cert: Path, ca_key: Path) -> bool:
    """Write a key and a certificate for `node` at `ip`; True if the lab's CA signed it."""
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

    now = datetime.datetime.now(datetime.timezone.utc) - datetime.timedelta(minutes=5)
    key = ec.generate_private_key(ec.SECP256R1())
    try:
        signer = serialization.load_pem_private_key(ca_key.read_bytes(), None)
        issuer = x509.load_pem_x509_certificate(ca_cert.read_bytes()).subject
        subject = x509.Name([x509.NameAttribute(NameOID.ORGANIZATION_NAME, "system:nodes"),
                             x509.NameAttribute(NameOID.COMMON_NAME, f"system:node:{node}")])
    except (OSError, ValueError):
        signer = key
        subject = issuer = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, f"{node}@{int(now.timestamp())}")])
    cert = (x509.CertificateBuilder().subject_name(subject).issuer_name(issuer).public_key(key.public_key())
            .serial_number(x509.random_serial_number()).not_valid_before(now)
            .not_valid_after(now + datetime.timedelta(days=365))
            .add_extension(x509.SubjectAlternativeName([x509.DNSName(node), x509.IPAddress(ipaddress.ip_address(ip))]),
                           critical=False)
            .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH]), critical=False)
            .sign(signer, hashes.SHA256()))
    pem = serialization.Encoding.PEM
    cert_file.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(key_file, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with open(fd, "wb") as f:
        f.write(key.private_bytes(pem, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()))
    cert_file.write_bytes(cert.public_bytes(pem))
    return signer is not key
