"""`chat certs`: a local authority, and server and client certificates that TLS clients accept."""

from __future__ import annotations

import datetime as dt
import ipaddress
import stat

import pytest
from cryptography import x509
from cryptography.x509.oid import ExtendedKeyUsageOID
from cryptography.x509.verification import PolicyBuilder, Store

from chat import cli

FILES = ("ca.crt", "ca.key", "server.crt", "server.key", "client.crt", "client.key")


def load(path) -> x509.Certificate:
    return x509.load_pem_x509_certificate(path.read_bytes())


def run_certs(*args: str) -> int:
    return cli.main(["certs", *args])


def test_writes_an_authority_a_server_and_a_client_certificate(tmp_path, capsys):
    certs = tmp_path / "certs"
    assert run_certs("--dir", str(certs), "--name", "chat.example.org", "--name", "192.0.2.10") == 0
    assert "new authority" in capsys.readouterr().out
    assert sorted(path.name for path in certs.iterdir()) == sorted(FILES)
    for name in FILES:
        mode = stat.S_IMODE((certs / name).stat().st_mode)
        assert mode == (0o600 if name.endswith(".key") else 0o644), name

    ca, server, client = (load(certs / name) for name in ("ca.crt", "server.crt", "client.crt"))
    assert ca.extensions.get_extension_for_class(x509.BasicConstraints).value.ca
    names = server.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    assert names.get_values_for_type(x509.DNSName) == ["localhost", "chat.example.org"]
    assert names.get_values_for_type(x509.IPAddress) == [
        ipaddress.ip_address("127.0.0.1"),
        ipaddress.ip_address("::1"),
        ipaddress.ip_address("192.0.2.10"),
    ]
    assert not server.extensions.get_extension_for_class(x509.BasicConstraints).value.ca
    assert server.not_valid_after_utc - server.not_valid_before_utc <= dt.timedelta(days=398)

    # what a TLS client checks: the chain up to the authority, the name, the key usage
    store = Store([ca])
    for host in ("localhost", "chat.example.org"):
        PolicyBuilder().store(store).build_server_verifier(x509.DNSName(host)).verify(server, [])
    PolicyBuilder().store(store).build_server_verifier(x509.IPAddress(ipaddress.ip_address("::1"))).verify(server, [])
    with pytest.raises(x509.verification.VerificationError):
        PolicyBuilder().store(store).build_server_verifier(x509.DNSName("example.com")).verify(server, [])
    client.verify_directly_issued_by(ca)  # a server requiring client certificates checks it (test_serving.py)
    usage = client.extensions.get_extension_for_class(x509.ExtendedKeyUsage).value
    assert list(usage) == [ExtendedKeyUsageOID.CLIENT_AUTH]


def test_running_again_keeps_the_authority_unless_asked_for_a_new_one(tmp_path, capsys):
    certs = tmp_path / "certs"
    assert run_certs("--dir", str(certs)) == 0
    authority, server = (certs / "ca.crt").read_bytes(), (certs / "server.crt").read_bytes()

    assert run_certs("--dir", str(certs), "--name", "chat.example.org") == 0
    assert "existing authority" in capsys.readouterr().out
    assert (certs / "ca.crt").read_bytes() == authority  # clients that trust it keep working
    assert (certs / "server.crt").read_bytes() != server
    PolicyBuilder().store(Store([load(certs / "ca.crt")])).build_server_verifier(
        x509.DNSName("chat.example.org")
    ).verify(load(certs / "server.crt"), [])

    assert run_certs("--dir", str(certs), "--new-ca") == 0
    assert (certs / "ca.crt").read_bytes() != authority


@pytest.mark.parametrize("bad", ["bad name!", "a..b", "-leading.example", "x" * 64 + ".example"])
def test_a_malformed_name_writes_nothing(tmp_path, capsys, bad):
    certs = tmp_path / "certs"
    assert run_certs("--dir", str(certs), f"--name={bad}") == 2
    assert "neither a host name nor an IP address" in capsys.readouterr().err
    assert not certs.exists()


def test_unicode_and_wildcard_names_are_encoded_as_tls_clients_expect(tmp_path):
    certs = tmp_path / "certs"
    assert run_certs("--dir", str(certs), "--name", "bücher.example", "--name", "*.chat.example") == 0
    names = load(certs / "server.crt").extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    assert names.get_values_for_type(x509.DNSName) == ["localhost", "xn--bcher-kva.example", "*.chat.example"]


def test_a_key_that_does_not_match_the_authority_is_reported(tmp_path, capsys):
    first, second = tmp_path / "first", tmp_path / "second"
    assert run_certs("--dir", str(first)) == 0
    assert run_certs("--dir", str(second)) == 0
    (first / "ca.key").write_bytes((second / "ca.key").read_bytes())
    capsys.readouterr()
    assert run_certs("--dir", str(first)) == 2
    assert "does not belong to" in capsys.readouterr().err
