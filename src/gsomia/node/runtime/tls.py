"""Node TLS: the certificate both APIs serve, and the contexts that serve and trust it.

Each node has a self-signed certificate. On the peer API (mutual TLS between national
nodes) each peer pins the other's certificate as its only trust anchor, so no public CA
can vouch for a node; on the user API, people's clients pin it the same way. The TLS key
is separate from the node's signing and KEM keys (a TLS key sits in a web server's memory).
Both servers speak TLS 1.3 only, as the peer client does (``peer.client_context``): a
server that also offered 1.2 would let a downgraded client in with weaker handshakes.
"""

from __future__ import annotations

import ipaddress
import ssl
from datetime import datetime, timedelta
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID


def make_certificate(
    party: str, now: datetime, hosts: tuple[str, ...] = ("127.0.0.1", "localhost")
) -> tuple[bytes, bytes]:
    """(certificate PEM, private key PEM) for ``party``'s node, valid for two years from ``now``."""
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name(
        [
            x509.NameAttribute(NameOID.COMMON_NAME, f"gsomia node {party}"),
            x509.NameAttribute(NameOID.ORGANIZATION_NAME, party),
        ]
    )
    alt: list[x509.GeneralName] = []
    for host in hosts:
        try:
            alt.append(x509.IPAddress(ipaddress.ip_address(host)))
        except ValueError:
            alt.append(x509.DNSName(host))
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - timedelta(minutes=5))
        .not_valid_after(now + timedelta(days=730))
        .add_extension(x509.SubjectAlternativeName(alt), critical=False)
        .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
        .add_extension(
            x509.ExtendedKeyUsage([x509.oid.ExtendedKeyUsageOID.SERVER_AUTH, x509.oid.ExtendedKeyUsageOID.CLIENT_AUTH]),
            critical=False,
        )
        .sign(key, hashes.SHA256())
    )
    key_pem = key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    )
    return cert.public_bytes(serialization.Encoding.PEM), key_pem


def server_context(cert: Path, key: Path, client_cas: Path | None = None) -> ssl.SSLContext:
    """A server's TLS 1.3-only context serving ``cert``; with ``client_cas``, mutual TLS that
    accepts only client certificates found in that bundle (the peer API)."""
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    ctx.minimum_version = ssl.TLSVersion.TLSv1_3
    ctx.load_cert_chain(str(cert), str(key))
    if client_cas is not None:
        ctx.verify_mode = ssl.CERT_REQUIRED
        ctx.load_verify_locations(str(client_cas))
    return ctx


def trust(cert: Path) -> ssl.SSLContext:
    """A client's context that trusts the node certificate ``cert`` alone (host name checked,
    TLS 1.3): what a user's client gives httpx as ``verify=`` to reach a node's user API."""
    ctx = ssl.create_default_context(ssl.Purpose.SERVER_AUTH, cafile=str(cert))
    ctx.minimum_version = ssl.TLSVersion.TLSv1_3
    return ctx


def names(cert_pem: bytes) -> tuple[str, ...]:
    """The host names and IP addresses a certificate is valid for (its subjectAltName)."""
    cert = x509.load_pem_x509_certificate(cert_pem)
    try:
        alt = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    except x509.ExtensionNotFound:
        return ()
    return tuple(alt.get_values_for_type(x509.DNSName)) + tuple(str(a) for a in alt.get_values_for_type(x509.IPAddress))


def is_loopback(host: str) -> bool:
    """Is ``host`` (an address a server binds) this machine's loopback interface only?

    ``localhost`` counts, as the name every resolver maps to loopback; any other name does not,
    since what it resolves to is not this file's to know."""
    host = host.removeprefix("[").removesuffix("]")
    if host.lower() == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False
