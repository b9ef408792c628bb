"""nginx as deployed: HTTPS termination with a throw-away CA, HTTP redirected, HSTS, TLS >= 1.2,
requests spread over two Gunicorn instances, no version in `Server`, 503 when Gunicorn is down.

Real nginx and Gunicorn processes; the client verifies the server against the test CA.
"""

from __future__ import annotations

import datetime
import ipaddress
import re
import socket
import ssl
import warnings
from contextlib import ExitStack
from pathlib import Path

import cv2
import numpy as np
import pytest
import requests
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from devtools.servers import TlsFiles, free_port, gunicorn, nginx_proxy
from devtools.support import post_jpeg

HSTS = "max-age=31536000"


def _name(common_name: str) -> x509.Name:
    return x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, common_name)])


def _write_key(key: ec.EllipticCurvePrivateKey, path: Path) -> None:
    path.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )


def make_ca_and_server_cert(folder: Path) -> tuple[Path, TlsFiles]:
    """A one-day CA and a server certificate for localhost / 127.0.0.1 signed by it."""
    now = datetime.datetime.now(datetime.UTC)
    ca_key = ec.generate_private_key(ec.SECP256R1())
    ca_cert = (
        x509.CertificateBuilder()
        .subject_name(_name("midas test CA"))
        .issuer_name(_name("midas test CA"))
        .public_key(ca_key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + datetime.timedelta(days=1))
        .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
        .add_extension(
            x509.KeyUsage(
                digital_signature=True,
                content_commitment=False,
                key_encipherment=False,
                data_encipherment=False,
                key_agreement=False,
                key_cert_sign=True,
                crl_sign=True,
                encipher_only=False,
                decipher_only=False,
            ),
            critical=True,
        )
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(ca_key.public_key()), False)
        .sign(ca_key, hashes.SHA256())
    )
    key = ec.generate_private_key(ec.SECP256R1())
    cert = (
        x509.CertificateBuilder()
        .subject_name(_name("localhost"))
        .issuer_name(ca_cert.subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + datetime.timedelta(days=1))
        .add_extension(
            x509.SubjectAlternativeName(
                [x509.DNSName("localhost"), x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]
            ),
            critical=False,
        )
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(x509.ExtendedKeyUsage([x509.OID_SERVER_AUTH]), critical=False)
        .add_extension(
            x509.AuthorityKeyIdentifier.from_issuer_public_key(ca_key.public_key()), False
        )
        .sign(ca_key, hashes.SHA256())
    )
    ca_path = folder / "ca.pem"
    ca_path.write_bytes(ca_cert.public_bytes(serialization.Encoding.PEM))
    tls = TlsFiles(cert=folder / "tls.crt", key=folder / "tls.key")
    tls.cert.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    _write_key(key, tls.key)
    return ca_path, tls


@pytest.fixture(scope="module")
def site(model_path, tmp_path_factory):
    """nginx with HTTPS in front of two single-worker Gunicorn instances."""
    workdir = tmp_path_factory.mktemp("tls")
    ca, tls = make_ca_and_server_cert(workdir)
    with ExitStack() as stack:
        apps = []
        for name in ("a", "b"):
            (workdir / name).mkdir()
            app = gunicorn(model_path, workdir / name, workers=1, MIDAS_TRUSTED_PROXIES="1")
            apps.append(stack.enter_context(app)[0])
        proxy = stack.enter_context(nginx_proxy(apps, workdir, tls=tls))
        yield {"apps": apps, "proxy": proxy, "ca": str(ca)}


def picture(content: bytes) -> np.ndarray:
    return cv2.imdecode(np.frombuffer(content, np.uint8), cv2.IMREAD_COLOR)


def test_predict_over_https_verified_against_the_ca(site, jpeg_640x480):
    answer = post_jpeg(site["proxy"].https, jpeg_640x480, verify=site["ca"], format="png")
    assert answer.status_code == 200
    assert answer.headers["Content-Type"] == "image/png"
    assert answer.headers["Strict-Transport-Security"] == HSTS
    heat = picture(answer.content)
    assert heat.shape == (480, 640, 3)
    # The picture nginx relayed is exactly the one Gunicorn makes, and it is not a flat image.
    direct = post_jpeg(site["apps"][0], jpeg_640x480, format="png")
    assert np.array_equal(heat, picture(direct.content))
    assert heat.std() > 10 and len(np.unique(heat.reshape(-1, 3), axis=0)) > 50


def test_an_unknown_ca_is_refused(site):
    with pytest.raises(requests.exceptions.SSLError):
        requests.get(f"{site['proxy'].https}/healthz", timeout=10)  # system CAs only


def test_hsts_also_on_errors_over_https(site):
    missing = requests.get(f"{site['proxy'].https}/nothing-here", verify=site["ca"], timeout=10)
    assert missing.status_code == 404 and missing.json()["error"]["code"]
    assert missing.headers["Strict-Transport-Security"] == HSTS


def test_plain_http_redirects_to_https_except_probes(site, jpeg_640x480):
    proxy = site["proxy"]
    https_port = proxy.https.rsplit(":", 1)[1]
    answer = post_jpeg(proxy.http, jpeg_640x480, output="side")
    assert answer.status_code == 308  # keeps POST and its body
    assert answer.headers["Location"] == f"https://127.0.0.1:{https_port}/predict?output=side"
    assert "Strict-Transport-Security" not in answer.headers
    page = requests.get(f"{proxy.http}/", timeout=10, allow_redirects=False)
    assert page.status_code == 308
    # Following it lands on the HTTPS page.
    followed = requests.get(f"{proxy.http}/", timeout=10, verify=site["ca"])
    assert followed.url == f"https://127.0.0.1:{https_port}/" and followed.status_code == 200
    assert "<form" in followed.text
    for probe in ("/healthz", "/readyz"):
        assert requests.get(f"{proxy.http}{probe}", timeout=10).status_code == 200


def _handshake(port: int, ca: str, version: ssl.TLSVersion) -> str:
    context = ssl.create_default_context(cafile=ca)
    with warnings.catch_warnings():  # TLSv1/TLSv1_1 are deprecated names, on purpose here
        warnings.simplefilter("ignore", DeprecationWarning)
        context.minimum_version = version
        context.maximum_version = version
    if version < ssl.TLSVersion.TLSv1_2:
        context.set_ciphers("DEFAULT:@SECLEVEL=0")  # let this client offer the old protocol
    with (
        socket.create_connection(("127.0.0.1", port), timeout=10) as raw,
        context.wrap_socket(raw, server_hostname="localhost") as tls,
    ):
        return tls.version()


def test_only_tls_1_2_and_newer(site):
    port = int(site["proxy"].https.rsplit(":", 1)[1])
    assert _handshake(port, site["ca"], ssl.TLSVersion.TLSv1_2) == "TLSv1.2"
    assert _handshake(port, site["ca"], ssl.TLSVersion.TLSv1_3) == "TLSv1.3"
    for old in (ssl.TLSVersion.TLSv1_1, ssl.TLSVersion.TLSv1):
        with pytest.raises(ssl.SSLError) as refused:
            _handshake(port, site["ca"], old)
        # The server's alert, not a client that could not even offer the protocol.
        assert "PROTOCOL_VERSION" in str(refused.value).upper(), refused.value


def test_requests_are_spread_over_every_upstream(site):
    # Public /readyz names no pid (docs/operations.md): nginx's log names the upstream instead.
    for number in range(8):
        headers = {"X-Request-ID": f"spread-{number}"}
        requests.get(
            f"{site['proxy'].https}/readyz", verify=site["ca"], timeout=10, headers=headers
        )
    log = (site["proxy"].folder / "nginx.log").read_text().splitlines()
    seen = {
        re.search(r"upstream=(\S+)", line).group(1) for line in log if "request_id=spread-" in line
    }
    assert seen == {app.removeprefix("http://") for app in site["apps"]}


def test_server_header_has_no_version(site):
    proxy = site["proxy"]
    for answer in (
        requests.get(f"{proxy.http}/healthz", timeout=10),
        requests.get(f"{proxy.http}/", timeout=10, allow_redirects=False),
        requests.get(f"{proxy.https}/healthz", verify=site["ca"], timeout=10),
        requests.get(f"{proxy.https}/static/style.css", verify=site["ca"], timeout=10),
    ):
        assert answer.headers["Server"] == "nginx"


# A quote ends nginx's JSON string; the rest would override "code". nginx must not echo it.
HOSTILE_ID = 'a","code":"ok","x":"'


def assert_nginx_json(answer, status: int, code: str) -> dict:
    assert answer.status_code == status and answer.headers["Server"] == "nginx"
    body = answer.json()  # valid JSON whatever X-Request-ID the client sent
    assert body["error"]["code"] == code
    assert body["request_id"] == answer.headers["X-Request-ID"]
    assert re.fullmatch(r"[0-9a-f]{32}", body["request_id"]), body["request_id"]  # nginx's own
    return body


def test_the_page_behind_tls_names_its_https_address(site):
    """The app believes nginx's X-Forwarded-Proto (MIDAS_TRUSTED_PROXIES=1), so the curl
    hint on the page is the address the visitor used, with https and the port."""
    page = requests.get(f"{site['proxy'].https}/", verify=site["ca"], timeout=10).text
    assert f"{site['proxy'].https}/predict -o" in page
    direct = requests.get(f"{site['apps'][0]}/", timeout=10).text
    assert f"{site['apps'][0]}/predict -o" in direct  # no proxy headers: as the client came


def test_public_readiness_through_nginx_says_ready_and_nothing_more(site):
    for url in (f"{site['proxy'].https}/readyz", f"{site['proxy'].http}/readyz"):
        answer = requests.get(url, verify=site["ca"], timeout=10, allow_redirects=False)
        assert answer.status_code == 200 and answer.json() == {"ready": True}, url
    assert "versions" in requests.get(f"{site['apps'][0]}/readyz", timeout=10).json()


def test_nginx_413_is_valid_json_whatever_the_request_id(site):
    for request_id in (HOSTILE_ID, "x" * 129, "ok}{"):
        answer = requests.post(
            f"{site['proxy'].https}/predict",
            data=b"\0" * (11 << 20),
            headers={"Content-Type": "image/jpeg", "X-Request-ID": request_id},
            verify=site["ca"],
            timeout=30,
        )
        assert_nginx_json(answer, 413, "too_large")
    fine = requests.post(
        f"{site['proxy'].https}/predict",
        data=b"\0" * (11 << 20),
        headers={"Content-Type": "image/jpeg", "X-Request-ID": "client-id.1:2"},
        verify=site["ca"],
        timeout=30,
    )
    assert fine.status_code == 413 and fine.json()["request_id"] == "client-id.1:2"


def test_gunicorn_down_is_a_503_json_with_retry_after(tmp_path, jpeg_640x480):
    dead = f"127.0.0.1:{free_port()}"  # nothing listens here
    with nginx_proxy(dead, tmp_path, ready_status=503) as proxy:
        answer = post_jpeg(proxy.http, jpeg_640x480)
        probe = requests.get(f"{proxy.http}/readyz", timeout=10)
        hostile = requests.get(f"{proxy.http}/", headers={"X-Request-ID": HOSTILE_ID}, timeout=10)
    assert_nginx_json(hostile, 503, "unavailable")
    assert answer.status_code == 503 and probe.status_code == 503
    assert answer.headers["Retry-After"] == "1"
    body = answer.json()
    assert body["error"]["code"] == "unavailable"
    assert body["request_id"] == answer.headers["X-Request-ID"]
    assert answer.headers["Server"] == "nginx"
    # nginx's own answers carry the app's security headers too
    assert answer.headers["X-Content-Type-Options"] == "nosniff"
    assert answer.headers["Referrer-Policy"] == "no-referrer"
