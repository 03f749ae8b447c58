"""A channel that never finishes answering holds neither a call nor the process.

requests' timeout bounds each read, not the call: a "slow-loris" server that
sends a byte just within it would keep a call alive for ever. These tests
talk to a real loopback server that sends its headers at once and then
dribbles the body.
"""

import datetime
import socket
import ssl
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

from lib.adapters.base import (
    ChannelAdapter,
    ChannelConfig,
    UnreachableError,
)

ROOT = Path(__file__).resolve().parents[2]
BODY = b'{"ok": true}'


class TrickleServer:
    """Answers ``GET /slow`` a byte every ``gap`` seconds (giving up after
    ``give_up`` seconds) and anything else at once."""

    def __init__(self, gap, size=200, chunked=False, give_up=4.0, head_too=False):
        self.gap = gap
        self.head_too = head_too
        self.size = size
        self.chunked = chunked
        self.give_up = give_up
        self.stopped = threading.Event()
        self.listener = socket.create_server(("127.0.0.1", 0))
        self.listener.settimeout(0.05)
        self.url = f"http://127.0.0.1:{self.listener.getsockname()[1]}"
        threading.Thread(target=self._serve, daemon=True).start()

    def stop(self):
        self.stopped.set()
        self.listener.close()

    def _serve(self):
        while not self.stopped.is_set():
            try:
                conn, _address = self.listener.accept()
            except (TimeoutError, OSError):
                continue
            threading.Thread(target=self._answer, args=(conn,), daemon=True).start()

    def _answer(self, conn):
        with conn:
            try:
                request = b""
                while b"\r\n\r\n" not in request:
                    data = conn.recv(4096)
                    if not data:
                        return
                    request += data
                # "GET /slow" or, through a proxy, "GET http://host/slow"
                slow = b"/slow " in request.split(b"\r\n", 1)[0]
                body = (b" " * self.size + BODY) if slow else BODY
                head = b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\n"
                head += b"X-Trickle: yes\r\nConnection: close\r\n"
                if self.chunked:
                    head += b"Transfer-Encoding: chunked\r\n\r\n"
                else:
                    head += b"Content-Length: %d\r\n\r\n" % len(body)
                if slow and self.head_too:
                    # the status line and headers a byte at a time, too
                    for i in range(len(head)):
                        if self.stopped.is_set():
                            return
                        time.sleep(self.gap)
                        conn.sendall(head[i : i + 1])
                else:
                    conn.sendall(head)
                pieces = [body[i : i + 1] for i in range(len(body))] if slow else [body]
                end = time.monotonic() + self.give_up
                for piece in pieces:
                    if self.stopped.is_set() or time.monotonic() > end:
                        return
                    if slow:
                        time.sleep(self.gap)
                    if self.chunked:
                        piece = b"%x\r\n%s\r\n" % (len(piece), piece)
                    conn.sendall(piece)
                if self.chunked:
                    conn.sendall(b"0\r\n\r\n")
            except OSError:
                return


@pytest.fixture
def server(request):
    trickle = TrickleServer(**getattr(request, "param", {"gap": 0.1}))
    yield trickle
    trickle.stop()


def run_script(script, timeout):
    """Run ``script`` in a Python of its own, from the addon's root; it must
    end well within ``timeout`` seconds and exit 0."""
    done = subprocess.run(
        [sys.executable, "-c", script],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    return done


def make_adapter(timeout):
    return ChannelAdapter(ChannelConfig("generic", timeout=timeout))


@pytest.mark.parametrize(
    "server",
    [
        {"gap": 0.1},
        {"gap": 0.1, "chunked": True},
        {"gap": 0.1, "size": 0, "head_too": True},
    ],
    indirect=True,
)
def test_a_trickled_answer_fails_as_a_timeout_within_the_deadline(server):
    """Each byte comes within the 0.2 s read timeout; the call still ends
    at its deadline (3 x 0.2 s), as a timeout, instead of after 20 s; also
    when the status line and headers are what comes slowly."""
    adapter = make_adapter(timeout=0.2)
    started = time.monotonic()
    with pytest.raises(UnreachableError, match="timeout") as info:
        adapter.request("GET", f"{server.url}/slow")
    elapsed = time.monotonic() - started
    assert 0.5 < elapsed < 1.5
    assert info.value.retryable and info.value.status is None
    # the shut connection is not reused: the next call gets its answer
    response = adapter.request("GET", f"{server.url}/fast")
    assert response.json() == {"ok": True}


@pytest.mark.parametrize(
    "server", [{"gap": 0.1, "size": 0, "head_too": True}], indirect=True
)
def test_a_trickled_answer_through_a_proxy_is_cut_too(server):
    """Through an HTTP proxy (here the slow server itself plays it), the
    headers are under the deadline as well."""
    adapter = make_adapter(timeout=0.2)
    started = time.monotonic()
    with pytest.raises(UnreachableError, match="no complete answer"):
        adapter.request(
            "GET", "http://channel.example/slow", proxies={"http": server.url}
        )
    assert 0.5 < time.monotonic() - started < 1.5


@pytest.mark.parametrize("server", [{"gap": 0.03, "size": 0}], indirect=True)
def test_a_slow_answer_complete_within_the_deadline_is_read(server):
    """Longer than one read timeout in all, within the deadline: an answer,
    whose body, text and headers the callers read as usual."""
    adapter = make_adapter(timeout=0.2)
    started = time.monotonic()
    response = adapter.request("GET", f"{server.url}/slow")
    assert time.monotonic() - started > 0.2
    assert response.status_code == 200
    assert response.json() == {"ok": True} and response.text == BODY.decode()
    assert response.headers["X-Trickle"] == "yes"


def test_a_hung_fan_out_task_does_not_keep_the_process_alive():
    """run_all gives up on a task at its timeout; the thread left running
    it must not hold the interpreter at exit."""
    script = (
        "import threading\n"
        "from lib.fanout import run_all\n"
        "hang = threading.Event().wait\n"
        "out = run_all({'a': hang, 'b': hang}, timeout=0.1)\n"
        "print(sorted(type(err).__name__ for _result, err in out.values()))\n"
    )
    started = time.monotonic()
    done = run_script(script, timeout=8)
    assert done.stdout.strip() == "['TimeoutError', 'TimeoutError']"
    assert time.monotonic() - started < 5


def test_a_forked_child_runs_its_own_fan_out():
    """A process forked after using the pool (Odoo's prefork workers) has
    none of its parent's threads: it gets a pool of its own, not one whose
    queued tasks nothing runs."""
    script = (
        "import os\n"
        "from lib.fanout import run_all\n"
        "print(run_all({'a': lambda: 1}, timeout=2)['a'][0])\n"
        "pid = os.fork()\n"
        "if pid == 0:\n"
        "    out = run_all({'b': lambda: 2}, timeout=2)\n"
        "    os._exit(0 if out['b'][0] == 2 else 3)\n"
        "print(os.waitpid(pid, 0)[1])\n"
    )
    done = run_script(script, timeout=20)
    assert done.stdout.split() == ["1", "0"]


def _self_signed(tmp_path):
    """A certificate and key for ``localhost``, written under ``tmp_path``."""
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "localhost")])
    now = datetime.datetime.now(datetime.timezone.utc)
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(1)
        .not_valid_before(now - datetime.timedelta(days=1))
        .not_valid_after(now + datetime.timedelta(days=1))
        .add_extension(x509.SubjectAlternativeName([x509.DNSName("localhost")]), False)
        .sign(key, hashes.SHA256())
    )
    cert_path, key_path = tmp_path / "cert.pem", tmp_path / "key.pem"
    cert_path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    key_path.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )
    return str(cert_path), str(key_path)


def _serve_each_connection(listener, handle):
    """Accept connections on ``listener`` until it is closed, each handled
    by ``handle(conn)`` in a thread of its own."""

    def serve():
        while True:
            try:
                conn, _address = listener.accept()
            except OSError:
                return
            threading.Thread(target=handle, args=(conn,), daemon=True).start()

    threading.Thread(target=serve, daemon=True).start()


@pytest.mark.parametrize("path", ["/head", "/body"])
def test_a_trickled_tls_answer_is_cut_at_the_deadline_too(tmp_path, path):
    """Over TLS (every marketplace), headers or body trickled a byte at a
    time: the call ends at its deadline; a prompt answer is read."""
    cert, key = _self_signed(tmp_path)
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.load_cert_chain(cert, key)
    listener = socket.create_server(("127.0.0.1", 0))
    port = listener.getsockname()[1]

    def answer(conn):
        try:
            tls = context.wrap_socket(conn, server_side=True)
            request = b""
            while b"\r\n\r\n" not in request:
                request += tls.recv(4096)
            head = b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\n"
            head += b"Content-Length: %d\r\n\r\n" % len(BODY)
            if b"/fast" in request:
                tls.sendall(head + BODY)
                return
            slow = head + BODY if b"/head" in request else BODY
            if b"/body" in request:
                tls.sendall(head)
            for i in range(len(slow)):
                time.sleep(0.1)
                tls.sendall(slow[i : i + 1])
        except OSError:
            return

    _serve_each_connection(listener, answer)
    try:
        adapter = make_adapter(timeout=0.2)
        started = time.monotonic()
        with pytest.raises(UnreachableError, match="no complete answer"):
            adapter.request("GET", f"https://localhost:{port}{path}", verify=cert)
        assert 0.5 < time.monotonic() - started < 1.5
        response = adapter.request("GET", f"https://localhost:{port}/fast", verify=cert)
        assert response.json() == {"ok": True}
    finally:
        listener.close()


def _keep_alive_server(answer):
    """A loopback server that hands each connection to ``answer(conn,
    request_line)`` for every request it reads on it (keep-alive)."""
    listener = socket.create_server(("127.0.0.1", 0))

    def serve_connection(conn):
        with conn:
            buffer = b""
            try:
                while True:
                    while b"\r\n\r\n" not in buffer:
                        data = conn.recv(4096)
                        if not data:
                            return
                        buffer += data
                    head, buffer = buffer.split(b"\r\n\r\n", 1)
                    answer(conn, head.split(b"\r\n", 1)[0])
            except OSError:
                return

    _serve_each_connection(listener, serve_connection)
    return listener, f"http://127.0.0.1:{listener.getsockname()[1]}"


def test_a_deadline_after_a_redirect_spares_the_connection_it_left():
    """One adapter, one session, two threads (the adapter cache does that),
    and a caller that follows redirects (the adapters do not).
    The first call is redirected: its connection to the first host goes
    back to the pool, where the second call takes it. The first call's
    deadline, passing while the second call reads a slow but timely answer
    on that connection, cuts only the first call's own connection."""
    slow_listener, slow_url = _keep_alive_server(
        lambda conn, _line: _trickle(conn, b"HTTP/1.1 200 OK\r\n", 0.2, 40)
    )
    accepted = []

    def first_host(conn, line):
        if conn not in accepted:
            accepted.append(conn)
        if line.startswith(b"GET /redirect "):
            conn.sendall(
                b"HTTP/1.1 302 Found\r\nLocation: %s/slow\r\n"
                b"Content-Length: 0\r\n\r\n" % slow_url.encode()
            )
            return
        # within each read timeout (1 s), complete within this call's own
        # deadline, across the other call's deadline
        conn.sendall(b"HTTP/1.1 200 OK\r\nContent-Length: %d\r\n\r\n" % len(BODY))
        for i in range(len(BODY)):
            time.sleep(2.5 / len(BODY))
            conn.sendall(BODY[i : i + 1])

    listener, url = _keep_alive_server(first_host)
    adapter = make_adapter(timeout=1.0)  # a deadline of 3 s per call
    outcome = {}

    def call(name, path):
        started = time.monotonic()
        try:
            outcome[name] = adapter.request(
                "GET", url + path, allow_redirects=True
            ).json()
        except UnreachableError as err:
            outcome[name] = str(err)
        outcome[name + "_s"] = time.monotonic() - started

    try:
        first = threading.Thread(target=call, args=("first", "/redirect"))
        first.start()
        time.sleep(1.5)
        second = threading.Thread(target=call, args=("second", "/timely"))
        second.start()
        first.join(10)
        second.join(10)
    finally:
        listener.close()
        slow_listener.close()
    assert "no complete answer" in outcome["first"]
    assert 2.5 < outcome["first_s"] < 4.0
    # the second call ran on the connection the redirect left behind
    assert len(accepted) == 1
    assert outcome["second"] == {"ok": True}
    assert outcome["second_s"] > 2.0


def _trickle(conn, head, gap, count):
    """Headers at once, then a body of ``count`` bytes a byte every ``gap``."""
    conn.sendall(head + b"Content-Length: %d\r\n\r\n" % count)
    for _ in range(count):
        time.sleep(gap)
        conn.sendall(b" ")


@pytest.mark.parametrize("sent", [0, 10])
def test_an_answer_cut_short_of_its_length_is_no_answer(sent):
    """A channel whose connection closes before the body its headers
    declared (urllib3 before 2.0 would hand the rest over as complete): an
    empty body must not pass for an acknowledgement, nor a cut one for data.
    A whole body, plain or gzip-encoded, is read as usual."""
    import gzip

    packed = gzip.compress(BODY)

    def answer(conn, line):
        if line.startswith(b"GET /whole "):
            conn.sendall(b"HTTP/1.1 200 OK\r\nContent-Length: %d\r\n\r\n" % len(BODY))
            conn.sendall(BODY)
        elif line.startswith(b"GET /gzip "):
            conn.sendall(
                b"HTTP/1.1 200 OK\r\nContent-Encoding: gzip\r\n"
                b"Content-Length: %d\r\n\r\n" % len(packed) + packed
            )
        else:
            conn.sendall(b"HTTP/1.1 200 OK\r\nContent-Length: 100\r\n\r\n")
            conn.sendall(b"x" * sent)
            conn.shutdown(socket.SHUT_RDWR)
            raise OSError("closed")

    listener, url = _keep_alive_server(answer)
    try:
        adapter = make_adapter(timeout=2.0)
        # urllib3 2 finds it itself, urllib3 1.26 hands the body over as
        # complete: the adapter's check finds it then
        with pytest.raises(UnreachableError, match="the answer ended early"):
            adapter.request("GET", f"{url}/cut")
        assert adapter.request("GET", f"{url}/whole").json() == {"ok": True}
        assert adapter.request("GET", f"{url}/gzip").json() == {"ok": True}
    finally:
        listener.close()
