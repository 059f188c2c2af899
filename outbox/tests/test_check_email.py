"""`check_email` against a real SMTP server: success, bad credentials, TLS refused, STARTTLS with a trusted CA."""

import datetime as dt
import ipaddress
import ssl

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID
from django.core.management import call_command
from django.core.management.base import CommandError

from outbox.testing import SMTPTestServer, free_port

USER, PASSWORD = "sender@clinic.org", "correct-smtp-password"


def _name(common_name: str) -> x509.Name:
    return x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, common_name)])


@pytest.fixture(scope="module")
def certificate_authority(tmp_path_factory):
    """A throwaway CA and a server certificate it signed for localhost and 127.0.0.1, as PEM files."""
    directory = tmp_path_factory.mktemp("tls")
    now = dt.datetime.now(dt.UTC)
    ca_key = ec.generate_private_key(ec.SECP256R1())
    ca_cert = (
        x509.CertificateBuilder()
        .subject_name(_name("Outbox Test CA"))
        .issuer_name(_name("Outbox Test CA"))
        .public_key(ca_key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(minutes=5))
        .not_valid_after(now + dt.timedelta(days=1))
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .add_extension(
            x509.KeyUsage(
                digital_signature=True,
                key_cert_sign=True,
                crl_sign=True,
                content_commitment=False,
                key_encipherment=False,
                data_encipherment=False,
                key_agreement=False,
                encipher_only=False,
                decipher_only=False,
            ),
            critical=True,
        )
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(ca_key.public_key()), critical=False)
        .sign(ca_key, hashes.SHA256())
    )
    server_key = ec.generate_private_key(ec.SECP256R1())
    server_cert = (
        x509.CertificateBuilder()
        .subject_name(_name("localhost"))
        .issuer_name(ca_cert.subject)
        .public_key(server_key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(minutes=5))
        .not_valid_after(now + dt.timedelta(days=1))
        .add_extension(
            x509.SubjectAlternativeName([x509.DNSName("localhost"), x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]),
            critical=False,
        )
        .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH]), critical=False)
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(x509.AuthorityKeyIdentifier.from_issuer_public_key(ca_key.public_key()), critical=False)
        .sign(ca_key, hashes.SHA256())
    )
    paths = {"ca": directory / "ca.pem", "cert": directory / "server.pem", "key": directory / "server.key"}
    paths["ca"].write_bytes(ca_cert.public_bytes(serialization.Encoding.PEM))
    paths["cert"].write_bytes(server_cert.public_bytes(serialization.Encoding.PEM))
    paths["key"].write_bytes(
        server_key.private_bytes(
            serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
        )
    )
    return paths


@pytest.fixture
def starttls_server(certificate_authority, settings):
    """An SMTP server that requires STARTTLS and AUTH, and settings that talk to it with EMAIL_USE_TLS."""
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    context.load_cert_chain(certificate_authority["cert"], certificate_authority["key"])
    with SMTPTestServer(username=USER, password=PASSWORD, tls_context=context, require_starttls=True) as server:
        settings.EMAIL_BACKEND = "django.core.mail.backends.smtp.EmailBackend"
        settings.EMAIL_HOST = server.host
        settings.EMAIL_PORT = server.port
        settings.EMAIL_USE_TLS = True
        settings.EMAIL_USE_SSL = False
        settings.EMAIL_HOST_USER = USER
        settings.EMAIL_HOST_PASSWORD = PASSWORD
        settings.EMAIL_TIMEOUT = 5
        yield server


@pytest.fixture
def auth_server(smtp_server, settings):
    """The plain test server, now requiring AUTH."""
    with SMTPTestServer(username=USER, password=PASSWORD) as server:
        settings.EMAIL_PORT = server.port
        settings.EMAIL_HOST_USER = USER
        settings.EMAIL_HOST_PASSWORD = PASSWORD
        yield server


def run_check(capsys) -> tuple[str, CommandError | None]:
    try:
        call_command("check_email")
    except CommandError as exc:
        return capsys.readouterr().out, exc
    return capsys.readouterr().out, None


def test_check_email__plain_server_with_auth_passes_every_step_and_sends_nothing(auth_server, capsys):
    out, error = run_check(capsys)

    assert error is None
    for line in ("connect to 127.0.0.1", "220 ", "EHLO: 250", "AUTH as s***@clinic.org: 235", "NOOP: 250", "QUIT: 221"):
        assert line in out
    assert "Every step passed; nothing was sent." in out
    assert auth_server.messages == [] and auth_server.data_commands == 0
    assert PASSWORD not in out and USER not in out


def test_check_email__bad_credentials_fail_at_auth_with_the_535_reply_and_a_hint(auth_server, settings, capsys):
    settings.EMAIL_HOST_PASSWORD = "wrong-password"

    out, error = run_check(capsys)

    assert error is not None and error.returncode == 1
    assert "[FAIL] AUTH as s***@clinic.org: 535" in out
    assert "Hint: The server refused the credentials: check EMAIL_HOST_USER and EMAIL_HOST_PASSWORD" in str(error)
    assert "wrong-password" not in out + str(error)


def test_check_email__starttls_not_offered_fails_with_a_hint(smtp_server, settings, capsys):
    settings.EMAIL_USE_TLS = True

    out, error = run_check(capsys)

    assert error is not None and error.returncode == 1
    assert "[FAIL] STARTTLS: the server does not offer STARTTLS" in out
    assert "EMAIL_USE_SSL=true" in str(error)


def test_check_email__starttls_with_a_ca_trusted_through_ssl_cert_file_passes(
    starttls_server, certificate_authority, monkeypatch, capsys
):
    monkeypatch.setenv("SSL_CERT_FILE", str(certificate_authority["ca"]))

    out, error = run_check(capsys)

    assert error is None, out
    assert "STARTTLS: 220" in out
    assert "certificate for localhost issued by Outbox Test CA" in out
    assert "AUTH as s***@clinic.org: 235" in out
    assert starttls_server.messages == []


def test_check_email__starttls_with_an_untrusted_certificate_is_refused(starttls_server, tmp_path, monkeypatch, capsys):
    empty_bundle = tmp_path / "empty.pem"
    empty_bundle.write_text("")
    monkeypatch.setenv("SSL_CERT_FILE", str(empty_bundle))
    monkeypatch.setenv("SSL_CERT_DIR", str(tmp_path))

    out, error = run_check(capsys)

    assert error is not None and error.returncode == 1
    assert "[FAIL] STARTTLS: certificate not trusted" in out
    assert "SSL_CERT_FILE" in str(error)
    assert "AUTH" not in out.split("[FAIL]")[1]  # credentials never go over an unverified connection


def test_check_email__server_requiring_tls_refuses_auth_without_it(starttls_server, monkeypatch, capsys, settings):
    settings.EMAIL_USE_TLS = False

    out, error = run_check(capsys)

    assert error is not None
    assert "[FAIL] AUTH" in out or "[FAIL] EHLO" in out
    assert "EMAIL_USE_TLS" in str(error) or "STARTTLS" in str(error)


def test_check_email__nothing_listening_fails_at_connect(smtp_server, settings, capsys):
    settings.EMAIL_PORT = free_port()

    out, error = run_check(capsys)

    assert error is not None and error.returncode == 1
    assert "[FAIL] connect to 127.0.0.1" in out
    assert "connection refused" in out
    assert "EMAIL_HOST and EMAIL_PORT" in str(error)


def test_check_email__ssl_against_a_plain_port_fails_with_a_hint(smtp_server, settings, capsys):
    settings.EMAIL_USE_SSL = True

    out, error = run_check(capsys)

    assert error is not None
    assert "[FAIL] connect to" in out
    assert "EMAIL_USE_TLS" in str(error)


def test_check_email__non_smtp_backend_has_nothing_to_check(settings, capsys):
    settings.EMAIL_BACKEND = "django.core.mail.backends.console.EmailBackend"

    _, error = run_check(capsys)

    assert error is not None and error.returncode == 1
    assert "does not talk SMTP" in str(error)
