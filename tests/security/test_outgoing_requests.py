"""Where the server may send requests: https to Braze's REST hosts only (and the loopback URLs
BRAZE_LOCAL_ENDPOINTS lists: the sandbox, never another local port), no redirects followed, a timeout on every call.

Every hostile Instance URL is refused with a message that says why, by ``endpoint_normalize``, by
``Connection.clean()`` and by the admin's Connect form.
"""

from __future__ import annotations

import http.server
import socket
import threading
import time
import traceback
from contextlib import contextmanager

import pytest
from django.core.exceptions import ValidationError

from braze_integration import errors, services
from braze_integration.client import BrazeClient
from braze_integration.endpoints import EndpointRefused, endpoint_normalize, local_endpoints_check
from braze_integration.forms import CUSTOM_URL, ConnectionForm
from braze_integration.models import Connection, ConnectionStatus

EU = "https://rest.fra-01.braze.eu"

# (url, words of the refusal): refused whether or not local endpoints are allowed.
HOSTILE = [
    ("https://evil.com", "evil.com is not a Braze host"),
    ("https://braze.com.evil.com", "is not a Braze host"),
    ("https://evilbraze.com", "is not a Braze host"),
    ("https://evil.com.", "is not a Braze host"),
    ("https://evil.com:443", "is not a Braze host"),
    # IP literals, in every spelling a resolver accepts
    ("https://52.1.2.3", "IP addresses are not allowed"),
    ("http://169.254.169.254", "IP addresses are not allowed"),
    ("http://10.0.0.1", "IP addresses are not allowed"),
    ("http://127.0.0.2", "IP addresses are not allowed"),
    ("http://0.0.0.0", "IP addresses are not allowed"),
    ("http://2130706433", "IP addresses are not allowed"),
    ("https://2130706433", "IP addresses are not allowed"),
    ("http://0x7f.1", "IP addresses are not allowed"),
    ("http://0x7f000001", "IP addresses are not allowed"),
    ("http://0177.0.0.1", "IP addresses are not allowed"),
    ("http://017700000001", "IP addresses are not allowed"),
    ("http://127.1", "IP addresses are not allowed"),
    ("http://0", "IP addresses are not allowed"),
    ("http://[0:0:0:0:0:0:0:1]", "IP addresses are not allowed"),
    ("https://[::ffff:127.0.0.1]", "IP addresses are not allowed"),
    ("https://[::ffff:7f00:1]", "IP addresses are not allowed"),
    ("https://[fd00::1]", "IP addresses are not allowed"),
    ("https://[fe80::1%25eth0]", "IP addresses are not allowed"),
    # other schemes
    ("file:///etc/passwd", "Only https URLs are allowed, not file"),
    ("gopher://rest.fra-01.braze.eu:70/_POST", "Only https URLs are allowed, not gopher"),
    ("ftp://rest.fra-01.braze.eu", "Only https URLs are allowed, not ftp"),
    ("dict://127.0.0.1:11211/stat", "Only https URLs are allowed, not dict"),
    ("javascript:alert(1)", "Only https URLs are allowed"),
    ("//rest.fra-01.braze.eu", "without a scheme"),
    ("rest.fra-01.braze.eu", "without a scheme"),
    ("http://rest.fra-01.braze.eu", "must use https"),
    # userinfo, fragment and path tricks
    ("https://rest.fra-01.braze.eu@evil.com", "must not contain a user name or password"),
    ("https://user:pass@rest.fra-01.braze.eu", "must not contain a user name or password"),
    ("https://rest.fra-01.braze.eu%40evil.com", "not a valid host name"),
    ("https://rest.fra-01.braze.eu%2f@evil.com", "must not contain a user name or password"),
    ("https://evil.com#@rest.fra-01.braze.eu", "no path or query"),
    ("https://evil.com?@rest.fra-01.braze.eu", "no path or query"),
    ("https://evil.com/.braze.com", "no path or query"),
    ("https://rest.fra-01.braze.eu/users/track", "no path or query"),
    ("https://rest.fra-01.braze.eu/../../admin", "no path or query"),
    ("https://rest.fra-01.braze.eu?x=1", "no path or query"),
    ("https:rest.fra-01.braze.eu", "no path or query"),
    # backslashes, whitespace and control characters
    ("https://evil.com\\@rest.fra-01.braze.eu", "backslashes"),
    ("https://rest.fra-01.braze.eu\\evil.com", "backslashes"),
    ("https://rest.fra-01.braze.eu\r\nHost: evil.com", "control characters"),
    ("https://rest.fra-01.braze.eu\x00.evil.com", "control characters"),
    ("https://rest.fra-01.braze .eu", "spaces"),
    # unicode look-alikes and other characters that are not a host name
    ("https://rest.fra-01.br\u0430ze.eu", "not a valid host name"),  # Cyrillic a
    ("https://rest.fra-01.\uff42\uff52\uff41\uff5a\uff45.eu", "not a valid host name"),  # fullwidth
    ("https://rest.fra-01.braze\u2024eu", "not a valid host name"),  # one dot leader
    ("https://rest.fra-01.braze.eu\u3002", "not a valid host name"),  # ideographic full stop
    ("https://rest.fra-01.braze.eu\u200b", "not a valid host name"),  # zero-width space
    ("https://evil.com\uff0f.braze.com", "Not a valid URL"),  # fullwidth solidus: NFKC makes it a path
    ("https://evil.com\uff20rest.fra-01.braze.eu", "Not a valid URL"),  # fullwidth @
    ("https://.braze.com", "not a valid host name"),
    ("https://*.braze.com", "not a valid host name"),
    ("https://a_b.braze.com", "not a valid host name"),
    ("https://rest.fra-01.braze.eu;.evil.com", "not a valid host name"),
    # ports
    ("https://rest.fra-01.braze.eu:8443", "standard https port"),
    ("https://rest.fra-01.braze.eu:0", "standard https port"),
    ("https://rest.fra-01.braze.eu:443:1", "Not a valid URL"),
    ("https://rest.fra-01.braze.eu:99999", "Not a valid URL"),
    # empty
    ("", "Enter the REST endpoint"),
    ("   ", "Enter the REST endpoint"),
]
# Refused only while local endpoints are off (production); the sandbox uses them in development.
LOCAL = [
    "http://127.0.0.1:9400",
    "http://localhost:9400",
    "http://[::1]:9400",
    "http://localhost.",
    "http://LOCALHOST",
]
ACCEPTED = [
    (EU, EU),
    ("https://REST.FRA-01.BRAZE.EU", EU),
    ("https://rest.fra-01.braze.eu/", EU),
    ("https://rest.fra-01.braze.eu:443", EU),
    ("https://rest.fra-01.braze.eu.", EU),
    ("  https://rest.iad-01.braze.com  ", "https://rest.iad-01.braze.com"),
]


@pytest.fixture
def dns(monkeypatch):
    """Braze names resolve to what the test says (a public address unless told otherwise)."""
    answers: dict[str, str] = {}

    def getaddrinfo(host, port, *args, **kwargs):
        address = answers.get(host, "18.157.12.34")
        family = socket.AF_INET6 if ":" in address else socket.AF_INET
        return [(family, socket.SOCK_STREAM, 6, "", (address, port))]

    monkeypatch.setattr(socket, "getaddrinfo", getaddrinfo)
    return answers


@pytest.mark.parametrize("local_endpoints", [[], LOCAL])
@pytest.mark.parametrize(("url", "words"), HOSTILE)
def test_a_hostile_instance_url_is_refused_saying_why(url, words, local_endpoints, dns):
    with pytest.raises(EndpointRefused) as refused:
        endpoint_normalize(url, local_endpoints=local_endpoints)
    assert words in str(refused.value)


@pytest.mark.parametrize("url", LOCAL)
def test_loopback_urls_are_refused_unless_local_endpoints_list_them(url):
    with pytest.raises(EndpointRefused) as refused:
        endpoint_normalize(url, local_endpoints=[])
    assert "BRAZE_LOCAL_ENDPOINTS lists them" in str(refused.value)
    assert endpoint_normalize(url, local_endpoints=[url]).startswith("http://")


@pytest.mark.parametrize("url", [
    "http://127.0.0.1:6379",  # Redis
    "http://127.0.0.1:5432",  # PostgreSQL
    "http://127.0.0.1",  # port 80
    "http://127.0.0.1:9301",
    "https://127.0.0.1:9300",  # another scheme
    "http://localhost:9300",  # another host name: listed URLs are taken as written
    "http://[::1]:9300",
])
def test_only_the_listed_local_urls_are_allowed_not_every_loopback_port(url):
    listed = ["http://127.0.0.1:9300", "http://127.0.0.1:9400"]

    with pytest.raises(EndpointRefused) as refused:
        endpoint_normalize(url, local_endpoints=listed)

    assert "BRAZE_LOCAL_ENDPOINTS lists them" in str(refused.value)
    assert endpoint_normalize("http://127.0.0.1:9300/", local_endpoints=listed) == "http://127.0.0.1:9300"


@pytest.mark.django_db
def test_the_model_and_the_worker_refuse_an_unlisted_local_port(settings, braze_connection):
    settings.BRAZE_LOCAL_ENDPOINTS = ["http://127.0.0.1:9300"]
    redis = Connection(name="Braze", instance_url="http://127.0.0.1:6379")
    redis.set_api_key("k" * 32)

    with pytest.raises(ValidationError) as refused:
        redis.full_clean()
    assert "http://127.0.0.1:6379 is a local endpoint" in refused.value.message_dict["instance_url"][0]
    # A URL listed once and removed from the list since is refused before the next sync.
    result = services.connection_verify(connection=braze_connection)
    assert not result.ok and "BRAZE_LOCAL_ENDPOINTS" in result.message


def test_a_local_endpoints_entry_that_is_not_loopback_fails_the_system_check(settings, monkeypatch):
    settings.BRAZE_LOCAL_ENDPOINTS = ["http://127.0.0.1:9400", "http://10.0.0.5:9400", "https://rest.fra-01.braze.eu"]
    monkeypatch.setenv("BRAZE_ALLOW_LOCAL_ENDPOINTS", "1")

    messages = local_endpoints_check()

    assert [(m.id, m.msg) for m in messages] == [
        ("braze_integration.E001", "BRAZE_LOCAL_ENDPOINTS: 'http://10.0.0.5:9400' is not a loopback URL such as "
                                   "http://127.0.0.1:9400."),
        ("braze_integration.E001", "BRAZE_LOCAL_ENDPOINTS: 'https://rest.fra-01.braze.eu' is not a loopback URL "
                                   "such as http://127.0.0.1:9400."),
        ("braze_integration.W001", "BRAZE_ALLOW_LOCAL_ENDPOINTS is no longer read."),
    ]


@pytest.mark.parametrize(("url", "normalized"), ACCEPTED)
def test_braze_urls_are_accepted_as_scheme_and_host_only(url, normalized, dns):
    assert endpoint_normalize(url, local_endpoints=[]) == normalized


@pytest.mark.parametrize(
    "address",
    [
        "127.0.0.1",
        "10.1.2.3",
        "192.168.0.10",
        "169.254.169.254",
        "100.64.0.1",
        "0.0.0.0",
        "::1",
        "fd12::1",
        "fe80::1",
        "::ffff:10.0.0.1",
    ],
)
def test_a_braze_name_that_resolves_to_a_private_address_is_refused(address, dns):
    dns["rest.fra-01.braze.eu"] = address

    with pytest.raises(EndpointRefused) as refused:
        endpoint_normalize(EU, local_endpoints=LOCAL)

    assert "resolves to a non-public address" in str(refused.value)


# --- the same refusals where people meet them: Connection.clean() and the admin's Connect form -----


def form_errors(url: str) -> dict:
    form = ConnectionForm(
        data={
            "name": "Braze",
            "instance": CUSTOM_URL,
            "instance_url": url,
            "new_api_key": "k" * 32,
            "active": "on",
            "send_mode": "all_mapped_fields",
            "batch_size": 75,
            "rate_limit_requests": 3000,
            "rate_limit_seconds": 3,
            "max_attempts": 8,
        },
        instance=Connection(),
    )
    assert not form.is_valid()
    return form.errors


@pytest.mark.django_db
@pytest.mark.parametrize(("url", "words"), [case for case in HOSTILE if case[0].strip()])
def test_the_model_and_the_admin_form_refuse_a_hostile_url_naming_the_field(url, words, settings, dns):
    settings.BRAZE_LOCAL_ENDPOINTS = []
    connection = Connection(name="Braze", instance_url=url)
    connection.set_api_key("k" * 32)

    with pytest.raises(ValidationError) as refused:
        connection.full_clean()

    assert any(words in message for message in refused.value.message_dict["instance_url"])
    if "\x00" in url:  # the form field's own validator speaks first
        words = "Null characters are not allowed"
    assert any(words in message for message in form_errors(url)["instance_url"])


@pytest.mark.django_db
def test_the_model_refuses_a_braze_name_resolving_to_a_private_address(settings, dns):
    dns["rest.fra-01.braze.eu"] = "10.0.0.7"
    connection = Connection(name="Braze", instance_url=EU)
    connection.set_api_key("k" * 32)

    with pytest.raises(ValidationError) as refused:
        connection.full_clean()

    assert "resolves to a non-public address (10.0.0.7)" in str(refused.value)
    assert "resolves to a non-public address" in str(form_errors(EU)["instance_url"])


@pytest.mark.django_db
def test_a_url_stored_around_clean_is_still_refused_before_any_request(settings):
    # Given a hostile URL written straight to the database (a shell, a bad migration)
    connection = Connection.objects.create(name="Braze", instance_url="http://169.254.169.254")
    connection.set_api_key("k" * 32)

    # When the client is built for it, then nothing is sent
    with pytest.raises(errors.BrazeConfigurationError, match="IP addresses are not allowed"):
        services.client_for(connection)


# --- redirects and timeouts, against real local servers -------------------------------------------


@contextmanager
def http_server(handler_class):
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler_class)
    server.daemon_threads = True
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.02}, daemon=True)
    thread.start()
    try:
        yield server
    finally:
        server.shutdown()
        server.server_close()


class Target(http.server.BaseHTTPRequestHandler):
    hits: list[str] = []

    def do_POST(self):  # noqa: N802 (http.server's naming)
        Target.hits.append(self.path)
        self.send_response(201)
        self.send_header("Content-Type", "application/json")
        self.end_headers()
        self.wfile.write(b'{"message": "success"}')

    do_GET = do_POST  # noqa: N815

    def log_message(self, *args):
        pass


def redirecting_to(location: str, status: int):
    class Redirect(http.server.BaseHTTPRequestHandler):
        def do_POST(self):  # noqa: N802
            self.send_response(status)
            self.send_header("Location", location)
            self.send_header("Content-Length", "0")
            self.end_headers()

        def log_message(self, *args):
            pass

    return Redirect


@pytest.mark.parametrize("status", [301, 302, 303, 307, 308])
def test_a_redirect_is_an_error_and_its_target_is_never_requested(status):
    Target.hits = []
    with http_server(Target) as target:
        location = f"http://127.0.0.1:{target.server_port}/stolen"
        with http_server(redirecting_to(location, status)) as braze:
            client = BrazeClient(f"http://127.0.0.1:{braze.server_port}", "secret-key-0123456789", timeout=2)

            with pytest.raises(errors.BrazeAuthError) as refused:
                client.track({"attributes": [{"external_id": "m-1", "x": 1}]})

    assert refused.value.status == status and "redirect" in refused.value.message
    assert Target.hits == []


@pytest.mark.django_db(transaction=True)
def test_connect_against_a_redirecting_endpoint_says_so_and_never_follows(settings):
    Target.hits = []
    with http_server(Target) as target:
        with http_server(redirecting_to(f"http://127.0.0.1:{target.server_port}/users/track", 302)) as braze:
            settings.BRAZE_LOCAL_ENDPOINTS = [f"http://127.0.0.1:{braze.server_port}"]
            connection = Connection(name="Braze", instance_url=f"http://127.0.0.1:{braze.server_port}")
            connection.set_api_key("secret-key-0123456789")
            connection.save()

            result = services.connection_verify(connection=connection)

    assert not result.ok and result.status == ConnectionStatus.NEEDS_ATTENTION
    assert "redirect" in result.message
    assert Target.hits == []


@contextmanager
def silent_server():
    """Accepts connections and reads, but never answers."""
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen(8)
    accepted: list[socket.socket] = []
    stop = threading.Event()

    def accept():
        listener.settimeout(0.1)
        while not stop.is_set():
            try:
                accepted.append(listener.accept()[0])
            except OSError:
                continue

    thread = threading.Thread(target=accept, daemon=True)
    thread.start()
    try:
        yield listener.getsockname()[1]
    finally:
        stop.set()
        thread.join()
        for conn in accepted:
            conn.close()
        listener.close()


def test_a_server_that_never_answers_is_a_transport_error_within_the_timeout():
    with silent_server() as port:
        client = BrazeClient(f"http://127.0.0.1:{port}", "secret-key-0123456789", timeout=0.5)
        started = time.monotonic()

        with pytest.raises(errors.BrazeTransportError) as failed:
            client.track({"attributes": [{"external_id": "m-1", "x": 1}]})

    assert time.monotonic() - started < 2
    assert failed.value.retryable and failed.value.maybe_delivered  # the request went out; no answer


@pytest.mark.django_db(transaction=True)
def test_every_client_the_sync_builds_has_the_configured_timeout(settings):
    settings.BRAZE_HTTP_TIMEOUT = 0.4
    with silent_server() as port:
        settings.BRAZE_LOCAL_ENDPOINTS = [f"http://127.0.0.1:{port}"]
        connection = Connection(name="Braze", instance_url=f"http://127.0.0.1:{port}")
        connection.set_api_key("secret-key-0123456789")
        connection.save()
        started = time.monotonic()

        result = services.connection_verify(connection=connection)

    assert time.monotonic() - started < 2
    assert not result.ok and "unreachable" in result.message
    assert services.client_for(connection).timeout == 0.4


def test_the_connection_pool_takes_the_proxy_and_ca_settings_of_the_environment(monkeypatch, tmp_path):
    import urllib3

    from braze_integration.client import connection_pool

    bundle = tmp_path / "ca.pem"
    bundle.write_text("")
    monkeypatch.setenv("HTTPS_PROXY", "http://proxy.internal:3128")
    monkeypatch.setenv("REQUESTS_CA_BUNDLE", str(bundle))
    for name in ("NO_PROXY", "no_proxy", "https_proxy"):
        monkeypatch.delenv(name, raising=False)

    pool = connection_pool(EU)

    assert isinstance(pool, urllib3.ProxyManager) and pool.proxy.host == "proxy.internal" and pool.proxy.port == 3128
    assert pool.connection_pool_kw["ca_certs"] == str(bundle)


def test_a_host_the_no_proxy_list_names_goes_direct_and_checks_certificates_with_certifi(monkeypatch):
    import certifi
    import urllib3

    from braze_integration.client import connection_pool

    for name in ("REQUESTS_CA_BUNDLE", "CURL_CA_BUNDLE", "https_proxy", "no_proxy"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("HTTPS_PROXY", "http://proxy.internal:3128")
    monkeypatch.setenv("NO_PROXY", "braze.eu")

    direct = connection_pool(EU)
    assert not isinstance(direct, urllib3.ProxyManager)
    assert direct.connection_pool_kw["ca_certs"] == certifi.where()
    assert isinstance(connection_pool("https://rest.iad-01.braze.com"), urllib3.ProxyManager)


def test_the_client_never_retries_nor_follows_redirects_itself():
    """What the client asks of every call, besides the endpoint tests above: a failed call is the
    engine's to retry (it knows whether Braze may have had it), never the HTTP library's."""
    from braze_integration.client import connection_pool

    pool = connection_pool(EU)
    assert pool.connection_pool_kw["retries"].total is False and pool.connection_pool_kw["retries"].redirect == 0


class SlowTarget(Target):
    def do_POST(self):  # noqa: N802
        time.sleep(0.2)
        self.rfile.read(int(self.headers["Content-Length"]))
        super().do_POST()


def test_threads_posting_at_once_through_one_client_each_get_their_answer_and_keep_their_connection(caplog):
    """A web process's threads pressing Connect at once share the process's client: each gets its answer,
    and no connection is thrown away for want of room in the pool."""
    with http_server(SlowTarget) as server:
        client = BrazeClient(f"http://127.0.0.1:{server.server_port}", "secret-key-0123456789", timeout=5)
        answers = []
        with caplog.at_level("WARNING", logger="urllib3"):
            threads = [threading.Thread(target=lambda: answers.append(client.track({"attributes": []})))
                       for _ in range(4)]
            for thread in threads:
                thread.start()
            for thread in threads:
                thread.join()

    assert [answer.status for answer in answers] == [201] * 4
    assert "Connection pool is full" not in caplog.text


# --- the transport's edges (found by attacking the urllib3 client) ---------------------------------


def raw_server(handle):
    """A socket server on 127.0.0.1 whose connections ``handle(conn)`` serves, each in a thread."""
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen(8)

    def serve():
        while True:
            try:
                conn, _ = listener.accept()
            except OSError:
                return
            threading.Thread(target=serve_one, args=(conn,), daemon=True).start()

    def serve_one(conn):
        try:
            handle(conn)
        except OSError:  # the client gave up on it (a refused certificate, say)
            pass
        finally:
            conn.close()

    threading.Thread(target=serve, daemon=True).start()
    return listener


def read_request(conn) -> bytes:
    data = b""
    while b"\r\n\r\n" not in data:
        chunk = conn.recv(65536)
        if not chunk:
            return data
        data += chunk
    head, _, body = data.partition(b"\r\n\r\n")
    length = next((int(line.split(b":")[1]) for line in head.split(b"\r\n")
                   if line.lower().startswith(b"content-length:")), 0)
    while len(body) < length:
        body += conn.recv(65536)
    return head


@pytest.fixture
def tls_files(tmp_path):
    """A self-signed certificate for 127.0.0.1 and its key."""
    import datetime as dt
    import ipaddress

    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "127.0.0.1")])
    now = dt.datetime.now(dt.UTC)
    cert = (x509.CertificateBuilder().subject_name(name).issuer_name(name).public_key(key.public_key())
            .serial_number(x509.random_serial_number()).not_valid_before(now - dt.timedelta(days=1))
            .not_valid_after(now + dt.timedelta(days=1))
            .add_extension(x509.SubjectAlternativeName([x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]), False)
            .add_extension(x509.BasicConstraints(ca=True, path_length=None), True)
            .sign(key, hashes.SHA256()))
    cert_file, key_file = tmp_path / "cert.pem", tmp_path / "key.pem"
    cert_file.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    key_file.write_bytes(key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                           serialization.NoEncryption()))
    return cert_file, key_file


def post(url: str, key: str = "secret-key-0123456789"):
    try:
        return BrazeClient(url, key, timeout=2).post_bytes(b'{"attributes":[]}')
    except errors.BrazeError as err:
        return err


def test_a_tls_failure_after_the_request_went_out_may_have_been_delivered_an_untrusted_certificate_not(
        tls_files, monkeypatch):
    import ssl

    cert_file, key_file = tls_files
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.load_cert_chain(cert_file, key_file)

    def garbage_after_the_request(conn):
        raw = conn.dup()
        tls = context.wrap_socket(conn, server_side=True)
        read_request(tls)
        raw.sendall(b"\x17\x03\x03\x00\x20" + b"\0" * 32)  # a record that is not TLS's
        time.sleep(0.2)

    server = raw_server(garbage_after_the_request)
    url = f"https://127.0.0.1:{server.getsockname()[1]}"
    try:
        monkeypatch.setenv("REQUESTS_CA_BUNDLE", str(cert_file))
        broken = post(url)
        monkeypatch.delenv("REQUESTS_CA_BUNDLE")
        untrusted = post(url)  # certifi's roots do not know this certificate
    finally:
        server.close()

    assert isinstance(broken, errors.BrazeTransportError) and broken.maybe_delivered
    assert isinstance(untrusted, errors.BrazeTransportError) and not untrusted.maybe_delivered
    assert "untrusted certificate" in untrusted.message


def test_through_a_proxy_a_lost_connection_may_have_carried_the_request_an_unreachable_proxy_did_not(monkeypatch):
    def drops_after_reading(conn):
        read_request(conn)

    proxy = raw_server(drops_after_reading)
    closed = socket.socket()
    closed.bind(("127.0.0.1", 0))  # bound, never listening: refused
    for name in ("NO_PROXY", "no_proxy", "http_proxy"):
        monkeypatch.delenv(name, raising=False)
    try:
        monkeypatch.setenv("HTTP_PROXY", f"http://127.0.0.1:{proxy.getsockname()[1]}")
        lost = post("http://127.0.0.1:9")
        monkeypatch.setenv("HTTP_PROXY", f"http://127.0.0.1:{closed.getsockname()[1]}")
        unreached = post("http://127.0.0.1:9")
    finally:
        proxy.close()
        closed.close()

    assert isinstance(lost, errors.BrazeTransportError) and lost.maybe_delivered
    assert isinstance(unreached, errors.BrazeTransportError) and not unreached.maybe_delivered


@pytest.mark.parametrize(("environment", "proxied"), [
    ({"ALL_PROXY": "http://proxy.internal:3128"}, True),
    ({"HTTPS_PROXY": "proxy.internal:3128"}, True),  # no scheme: http:// as requests reads it
    ({"HTTPS_PROXY": "http://proxy.internal:3128", "NO_PROXY": "52.0.0.0/8,braze.eu"}, False),
])
def test_proxy_settings_are_read_by_the_rules_of_requests(monkeypatch, environment, proxied):
    import urllib3

    from braze_integration.client import connection_pool

    for name in ("HTTPS_PROXY", "https_proxy", "ALL_PROXY", "all_proxy", "NO_PROXY", "no_proxy"):
        monkeypatch.delenv(name, raising=False)
    for name, value in environment.items():
        monkeypatch.setenv(name, value)

    assert isinstance(connection_pool(EU), urllib3.ProxyManager) == proxied


def test_a_socks_proxy_is_a_configuration_error_that_says_what_to_do(monkeypatch):
    from braze_integration.client import connection_pool

    monkeypatch.setenv("HTTPS_PROXY", "socks5://proxy.internal:1080")
    monkeypatch.delenv("NO_PROXY", raising=False)
    monkeypatch.delenv("no_proxy", raising=False)

    with pytest.raises(errors.BrazeConfigurationError, match=r"socks5://.*use an http:// or https:// proxy"):
        connection_pool(EU)


def test_a_ca_directory_is_used_as_a_directory(monkeypatch, tmp_path):
    from braze_integration.client import connection_pool

    monkeypatch.setenv("REQUESTS_CA_BUNDLE", str(tmp_path))

    pool = connection_pool(EU)
    assert pool.connection_pool_kw["ca_cert_dir"] == str(tmp_path) and "ca_certs" not in pool.connection_pool_kw


@pytest.mark.parametrize("key", ["secret-key\n-0123456789", "secret-key\r\nX-Evil: 1", "secret-kéy-01234€56789"])
def test_a_key_no_http_header_can_carry_is_a_transport_error_that_does_not_quote_it(key):
    with http_server(Target) as server:
        answer = post(f"http://127.0.0.1:{server.server_port}", key)

    assert isinstance(answer, errors.BrazeTransportError) and not answer.maybe_delivered
    text = "".join(traceback.format_exception(answer))
    assert key not in text and "line break" in answer.message


def answering(status: int, headers: dict, body: bytes):
    class Answer(http.server.BaseHTTPRequestHandler):
        def do_POST(self):  # noqa: N802
            self.rfile.read(int(self.headers["Content-Length"]))
            self.send_response(status)
            for name, value in headers.items():
                self.send_header(name, value)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *args):
            pass

    return Answer


@pytest.mark.parametrize(("headers", "wait"), [
    ({"Retry-After": "soon"}, 1.0), ({"Retry-After": "inf"}, 1.0), ({"X-RateLimit-Reset": "nan"}, 1.0),
    ({"Retry-After": "86400"}, 3600.0),  # at most an hour
])
def test_a_429_with_a_retry_header_that_makes_no_sense_waits_a_sensible_time(headers, wait):
    with http_server(answering(429, headers, b'{"message": "slow down"}')) as server:
        answer = post(f"http://127.0.0.1:{server.server_port}")

    assert isinstance(answer, errors.BrazeRateLimited) and answer.retry_after == wait


def test_an_answer_of_odd_shape_or_size_is_read_without_failing():
    with http_server(answering(201, {}, b'{"message": "success", "errors": 5}')) as server:
        odd = post(f"http://127.0.0.1:{server.server_port}")
    huge = b'{"message": "' + b"x" * 3_000_000 + b'"}'
    with http_server(answering(500, {}, huge)) as server:
        large = post(f"http://127.0.0.1:{server.server_port}")

    assert odd.status == 201 and odd.errors == []
    assert isinstance(large, errors.BrazeServerError) and len(large.message) <= 2_000
