"""A local certificate authority for serving chat over TLS: `chat certs` (see certs/README.md).

It writes into one folder:

- `ca.crt` / `ca.key`: the authority. Clients trust `ca.crt`; `ca.key` signs the two certificates below and is
  kept so that they can be issued again (new names, renewal) without every client trusting a new authority.
- `server.crt` / `server.key`: the server's certificate, for localhost, 127.0.0.1 and ::1 plus any extra names.
- `client.crt` / `client.key`: a client certificate, for servers that require one (hypercorn's `verify_mode`).

Keys are ECDSA P-256 (what browsers, curl, aioquic and Python's ssl all accept) and are written mode 0600.
"""

from __future__ import annotations

import datetime as dt
import ipaddress
import os
import re
import tempfile
from dataclasses import dataclass
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

DEFAULT_NAMES = ("localhost", "127.0.0.1", "::1")
CA_DAYS = 10 * 365
# Browsers refuse leaf certificates valid for more than 398 days from public authorities; stay within it anyway.
LEAF_DAYS = 397
# Issue certificates valid from a little in the past, so that a client whose clock lags accepts them.
CLOCK_SKEW = dt.timedelta(minutes=5)

HOST_LABEL = re.compile(r"(?!-)[a-z0-9-]{1,63}(?<!-)\Z")

Key = ec.EllipticCurvePrivateKey


@dataclass(frozen=True)
class Issued:
    """What `write_certificates` wrote."""

    directory: Path
    ca_created: bool
    names: tuple[str, ...]

    @property
    def ca_cert(self) -> Path:
        return self.directory / "ca.crt"

    @property
    def server_cert(self) -> Path:
        return self.directory / "server.crt"

    @property
    def server_key(self) -> Path:
        return self.directory / "server.key"

    @property
    def client_cert(self) -> Path:
        return self.directory / "client.crt"

    @property
    def client_key(self) -> Path:
        return self.directory / "client.key"


def _new_key() -> Key:
    return ec.generate_private_key(ec.SECP256R1())


def _name(common_name: str) -> x509.Name:
    return x509.Name(
        [x509.NameAttribute(NameOID.ORGANIZATION_NAME, "chat"), x509.NameAttribute(NameOID.COMMON_NAME, common_name)]
    )


def _general_name(name: str) -> x509.GeneralName:
    """An IP address, or a DNS name (a leading "*." for a wildcard; Unicode names are IDNA-encoded)."""
    try:
        return x509.IPAddress(ipaddress.ip_address(name))
    except ValueError:
        pass
    try:
        ascii_name = name.encode("idna").decode("ascii")
    except UnicodeError:
        ascii_name = ""
    labels = ascii_name.removeprefix("*.").split(".")
    if not ascii_name or len(ascii_name) > 253 or not all(HOST_LABEL.match(label) for label in labels):
        raise ValueError(f"{name!r} is neither a host name nor an IP address")
    return x509.DNSName(ascii_name)


def _subject_alternative_names(names: tuple[str, ...]) -> x509.SubjectAlternativeName:
    return x509.SubjectAlternativeName([_general_name(name) for name in names])


def _builder(subject: x509.Name, issuer: x509.Name, public_key, days: int) -> x509.CertificateBuilder:
    now = dt.datetime.now(dt.UTC)
    return (
        x509.CertificateBuilder()
        .subject_name(subject)
        .issuer_name(issuer)
        .public_key(public_key)
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - CLOCK_SKEW)
        .not_valid_after(now + dt.timedelta(days=days))
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(public_key), critical=False)
    )


def _key_usage(signs_certificates: bool) -> x509.KeyUsage:
    """Signatures only (ECDSA keys sign handshakes); an authority's also sign certificates and revocation lists."""
    return x509.KeyUsage(
        digital_signature=True,
        key_cert_sign=signs_certificates,
        crl_sign=signs_certificates,
        content_commitment=False,
        key_encipherment=False,
        data_encipherment=False,
        key_agreement=False,
        encipher_only=False,
        decipher_only=False,
    )


def _make_ca(common_name: str) -> tuple[x509.Certificate, Key]:
    key = _new_key()
    name = _name(common_name)
    cert = (
        _builder(name, name, key.public_key(), CA_DAYS)
        # path_length=0: this authority signs end certificates only, never another authority
        .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
        .add_extension(_key_usage(signs_certificates=True), critical=True)
        .sign(key, hashes.SHA256())
    )
    return cert, key


def _make_leaf(
    ca_cert: x509.Certificate,
    ca_key: Key,
    common_name: str,
    usage: x509.ObjectIdentifier,
    names: tuple[str, ...] = (),
) -> tuple[x509.Certificate, Key]:
    key = _new_key()
    builder = (
        _builder(_name(common_name), ca_cert.subject, key.public_key(), LEAF_DAYS)
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(_key_usage(signs_certificates=False), critical=True)
        .add_extension(x509.ExtendedKeyUsage([usage]), critical=False)
        .add_extension(
            x509.AuthorityKeyIdentifier.from_issuer_public_key(ca_key.public_key()),
            critical=False,
        )
    )
    if names:
        builder = builder.add_extension(_subject_alternative_names(names), critical=False)
    return builder.sign(ca_key, hashes.SHA256()), key


def _write_atomically(path: Path, data: bytes, mode: int) -> None:
    """Write to a temporary file in the same folder, then rename: a reader never sees half a key."""
    fd, temporary = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.")
    try:
        os.fchmod(fd, mode)
        with os.fdopen(fd, "wb") as handle:
            handle.write(data)
        os.replace(temporary, path)
    except BaseException:
        Path(temporary).unlink(missing_ok=True)
        raise


def _save(directory: Path, stem: str, cert: x509.Certificate, key: Key | None) -> None:
    if key is not None:
        pem_key = key.private_bytes(
            serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
        )
        _write_atomically(directory / f"{stem}.key", pem_key, 0o600)
    _write_atomically(directory / f"{stem}.crt", cert.public_bytes(serialization.Encoding.PEM), 0o644)


def _load_ca(directory: Path) -> tuple[x509.Certificate, Key] | None:
    cert_path, key_path = directory / "ca.crt", directory / "ca.key"
    if not (cert_path.exists() and key_path.exists()):
        return None
    cert = x509.load_pem_x509_certificate(cert_path.read_bytes())
    key = serialization.load_pem_private_key(key_path.read_bytes(), password=None)
    if not isinstance(key, ec.EllipticCurvePrivateKey) or key.public_key() != cert.public_key():
        raise ValueError(f"{key_path} does not belong to {cert_path}")
    return cert, key


def write_certificates(
    directory: Path,
    extra_names: tuple[str, ...] = (),
    client_name: str = "chat client",
    new_ca: bool = False,
) -> Issued:
    """Issue a server and a client certificate into `directory`, signed by the authority found there.

    The authority is created when there is none (or when `new_ca` asks for a new one); otherwise it is reused, so
    that clients which already trust it keep working after the server certificate is issued again.
    """
    names = tuple(dict.fromkeys((*DEFAULT_NAMES, *(name.strip().lower() for name in extra_names if name.strip()))))
    _subject_alternative_names(names)  # a malformed name fails here, before anything is written
    directory.mkdir(parents=True, exist_ok=True)
    found = None if new_ca else _load_ca(directory)
    ca_cert, ca_key = found or _make_ca("chat local certificate authority")
    if found is None:
        _save(directory, "ca", ca_cert, ca_key)
    server_cert, server_key = _make_leaf(ca_cert, ca_key, names[0], ExtendedKeyUsageOID.SERVER_AUTH, names)
    _save(directory, "server", server_cert, server_key)
    client_cert, client_key = _make_leaf(ca_cert, ca_key, client_name, ExtendedKeyUsageOID.CLIENT_AUTH)
    _save(directory, "client", client_cert, client_key)
    return Issued(directory=directory, ca_created=found is None, names=names)
