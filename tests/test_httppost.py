"""The webhook dispatcher's HTTP client (mailq/httppost.py) against a raw socket server
that records every byte it gets and answers with scripted bytes: what goes on the
wire, each way a reply can end, kept-alive reuse, redirects not followed, deadlines,
and HTTPS against a real TLS server (trustme's CA as the trust store)."""
import socket
import ssl
import threading
import time

import pytest
import trustme

from mailq.httppost import Poster

OK = b'HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok'


class RawServer:
    """Accepts connections; for each request read (by its Content-Length) plays the next
    scripted reply: bytes are sent, a float is a pause in seconds, 'close' closes the
    connection and 'hang' holds it open with nothing more said."""

    def __init__(self, replies, tls=None):
        self.replies = list(replies)
        self.requests = []          # (connection number, raw request bytes)
        self.connections = 0
        self.tls = tls
        self.listener = socket.create_server(('127.0.0.1', 0))
        self.port = self.listener.getsockname()[1]
        self.open = []
        threading.Thread(target=self._accept, daemon=True).start()

    def url(self, path='/hooks/in?x=1', scheme='http'):
        return f'{scheme}://localhost:{self.port}{path}'

    def _accept(self):
        while True:
            try:
                conn, _ = self.listener.accept()
            except OSError:
                return
            self.connections += 1
            if self.tls is not None:
                try:
                    conn = self.tls.wrap_socket(conn, server_side=True)
                except (ssl.SSLError, OSError):
                    conn.close()
                    continue
            self.open.append(conn)
            threading.Thread(target=self._serve, args=(conn, self.connections),
                             daemon=True).start()

    def _serve(self, conn, number):
        try:
            self._requests(conn, number)
        except OSError:                     # the client has gone: as a real server sees
            pass

    def _requests(self, conn, number):
        buffer = b''
        while True:
            while b'\r\n\r\n' not in buffer:
                data = conn.recv(65536)
                if not data:
                    return
                buffer += data
            head, rest = buffer.split(b'\r\n\r\n', 1)
            length = next(int(line.split(b':')[1]) for line in head.split(b'\r\n')
                          if line.lower().startswith(b'content-length:'))
            while len(rest) < length:
                rest += conn.recv(65536)
            self.requests.append((number, head + b'\r\n\r\n' + rest[:length]))
            buffer = rest[length:]
            reply = self.replies.pop(0) if self.replies else OK
            for piece in (reply if isinstance(reply, list) else [reply]):
                if piece == 'hang':         # hold the connection open, answer nothing
                    return
                if piece == 'close':
                    conn.close()
                    return
                if isinstance(piece, float):
                    time.sleep(piece)
                    continue
                conn.sendall(piece)

    def close(self):
        if self.listener.fileno() >= 0:
            self.listener.shutdown(socket.SHUT_RDWR)    # wakes the accept() blocked on it
            self.listener.close()
        for conn in self.open:
            conn.close()


@pytest.fixture
def serve():
    servers = []

    def make(*replies, tls=None):
        servers.append(RawServer(replies, tls))
        return servers[-1]
    yield make
    for server in servers:
        server.close()


def post(poster, body=b'{"a":1}'):
    return poster.post(body, {'Mailq-Event-Id': 'evt_1', 'Mailq-Signature': 't=1,v1=ab'})


def test_the_request_bytes_and_one_connection_kept_alive(serve):
    server = serve(OK, b'HTTP/1.1 204 No Content\r\n\r\n')
    poster = Poster(server.url(), timeout=5)
    assert post(poster)[:2] == (200, '')
    assert post(poster, b'{"b":2}')[:2] == (204, '')
    assert server.connections == 1
    (n1, first), (n2, second) = server.requests
    assert n1 == n2 == 1
    assert first == (b'POST /hooks/in?x=1 HTTP/1.1\r\nHost: localhost:%d\r\n'
                     b'User-Agent: mailq-webhooks\r\nContent-Type: application/json\r\n'
                     b'Mailq-Event-Id: evt_1\r\nMailq-Signature: t=1,v1=ab\r\n'
                     b'Content-Length: 7\r\n\r\n{"a":1}' % server.port)
    assert second.endswith(b'Content-Length: 7\r\n\r\n{"b":2}')


def test_userinfo_stays_out_of_the_host_header(serve):
    server = serve(OK)
    poster = Poster(f'http://user:pw@127.0.0.1:{server.port}/', timeout=5)
    assert post(poster)[0] == 200
    head = server.requests[0][1]
    assert b'Host: 127.0.0.1:%d\r\n' % server.port in head and b'pw' not in head
    assert head.startswith(b'POST / HTTP/1.1\r\n')


def test_a_chunked_reply_with_trailers_then_the_connection_is_reused(serve):
    chunked = (b'HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n'
               b'5;ext=1\r\nhello\r\n3\r\n, w\r\n0\r\nX-Trailer: t\r\n\r\n')
    server = serve([chunked[:30], 0.05, chunked[30:60], 0.05, chunked[60:]], OK)
    poster = Poster(server.url(), timeout=5)
    assert post(poster)[:2] == (200, '')
    assert post(poster)[:2] == (200, '')
    assert server.connections == 1 and len(server.requests) == 2


def test_a_reply_read_to_the_close_then_a_new_connection(serve):
    server = serve([b'HTTP/1.1 200 OK\r\n\r\nbody until close', 'close'], OK)
    poster = Poster(server.url(), timeout=5)
    assert post(poster)[:2] == (200, '')
    assert post(poster)[:2] == (200, '')
    assert server.connections == 2


@pytest.mark.parametrize('reply', [
    b'HTTP/1.1 200 OK\r\nConnection: close\r\nContent-Length: 0\r\n\r\n',
    b'HTTP/1.0 200 OK\r\nContent-Length: 0\r\n\r\n'])
def test_connection_close_and_http_1_0_are_not_reused(serve, reply):
    server = serve(reply, OK)
    poster = Poster(server.url(), timeout=5)
    assert post(poster)[0] == 200 and post(poster)[0] == 200
    assert server.connections == 2


def test_a_redirect_is_a_failure_and_not_followed(serve):
    other = serve(OK)
    server = serve(b'HTTP/1.1 302 Found\r\nLocation: %s\r\nContent-Length: 0\r\n\r\n'
                   % other.url().encode())
    status, error, _ = post(Poster(server.url(), timeout=5))
    assert (status, error) == (302, 'HTTP 302 Found')
    assert other.requests == []


def test_an_error_status_is_reported_with_its_reason(serve):
    server = serve(b'HTTP/1.1 503 Service Unavailable\r\nContent-Length: 4\r\n\r\nbusy')
    assert post(Poster(server.url(), timeout=5))[:2] == (503, 'HTTP 503 Service Unavailable')


def test_a_100_continue_before_the_reply_is_skipped(serve):
    server = serve(b'HTTP/1.1 100 Continue\r\n\r\n' + OK, OK)
    poster = Poster(server.url(), timeout=5)
    assert post(poster)[:2] == (200, '')
    assert post(poster)[:2] == (200, '')
    assert server.connections == 1


def test_a_kept_alive_connection_closed_by_the_server_is_retried_once(serve):
    server = serve(OK, 'close', OK)
    poster = Poster(server.url(), timeout=5)
    assert post(poster)[0] == 200
    # The server dropped the idle connection without a reply: the same request again,
    # once, on a new connection.
    assert post(poster)[:2] == (200, '')
    assert [n for n, _ in server.requests] == [1, 1, 2]


def test_a_reply_cut_short_is_not_sent_again(serve):
    server = serve(OK, [b'HTTP/1.1 200 OK\r\nContent-Len', 'close'], OK)
    poster = Poster(server.url(), timeout=5)
    assert post(poster)[0] == 200
    status, error, _ = post(poster)
    # Part of a reply came: the server may have taken the event. The dispatcher's retry
    # (with its backoff) decides, not a silent second POST.
    assert status == 0 and error.startswith('Closed: the server closed'), error
    assert len(server.requests) == 2


def test_a_fresh_connection_refused_is_an_error_not_a_retry(serve):
    server = serve()
    port = server.port
    server.close()
    status, error, _ = post(Poster(f'http://127.0.0.1:{port}/', timeout=5))
    assert status == 0 and error.startswith('ConnectionRefusedError'), error


def test_a_server_that_never_answers_times_out(serve):
    server = serve('hang')
    started = time.monotonic()
    status, error, seconds = post(Poster(server.url(), timeout=0.5))
    assert status == 0 and error == 'TimeoutError: timed out'
    assert seconds >= 0.5 and time.monotonic() - started >= 0.5


def test_the_deadline_is_for_the_whole_reply_not_each_read(serve):
    trickle = [b'HTTP/1.1 200 OK\r\n'] + [item for i in range(20)
                                         for item in (0.1, b'X-Slow-%d: 1\r\n' % i)]
    server = serve(trickle + [b'Content-Length: 0\r\n\r\n'])
    status, error, seconds = post(Poster(server.url(), timeout=0.5))
    # Each byte came within 0.1 s, but the whole reply would take 2 s.
    assert status == 0 and error == 'TimeoutError: timed out'
    assert seconds < 2


@pytest.mark.parametrize('reply, problem', [
    (b'SMTP 220 hello\r\n\r\n', 'not an HTTP reply'),
    (b'HTTP/1.1 200 OK\r\nContent-Length: ten\r\n\r\n', 'bad Content-Length'),
    (b'HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\n', 'bad chunk size')])
def test_a_reply_that_is_not_http_is_an_error(serve, reply, problem):
    server = serve(reply)
    status, error, _ = post(Poster(server.url(), timeout=2))
    assert status == 0 and error.startswith('ReplyError') and problem in error, error


def test_a_long_body_is_dropped_with_its_connection(serve):
    big = b'HTTP/1.1 200 OK\r\nContent-Length: 200000\r\n\r\n' + b'x' * 200000
    server = serve(big, OK)
    poster = Poster(server.url(), timeout=5)
    assert post(poster)[:2] == (200, '')
    assert post(poster)[:2] == (200, '')
    assert server.connections == 2


@pytest.fixture
def tls_pair(tmp_path, monkeypatch):
    """A server context with a localhost cert, and trustme's CA as the client's only
    trust store (OpenSSL's SSL_CERT_FILE, read by ssl.create_default_context)."""
    ca = trustme.CA()
    server = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    ca.issue_cert('localhost').configure_cert(server)
    ca_file = tmp_path / 'ca.pem'
    ca.cert_pem.write_to_path(str(ca_file))
    monkeypatch.setenv('SSL_CERT_FILE', str(ca_file))
    monkeypatch.delenv('SSL_CERT_DIR', raising=False)
    return server


def test_https_with_a_trusted_certificate(serve, tls_pair):
    server = serve(OK, OK, tls=tls_pair)
    poster = Poster(server.url(scheme='https'), timeout=5)
    assert post(poster)[:2] == (200, '')
    assert post(poster)[:2] == (200, '')
    assert server.connections == 1
    assert server.requests[0][1].endswith(b'\r\n\r\n{"a":1}')


def test_https_to_an_untrusted_certificate_is_refused(serve, tls_pair, tmp_path,
                                                      monkeypatch):
    server = serve(OK, tls=tls_pair)
    other_ca = tmp_path / 'other.pem'
    trustme.CA().cert_pem.write_to_path(str(other_ca))
    monkeypatch.setenv('SSL_CERT_FILE', str(other_ca))
    status, error, _ = post(Poster(server.url(scheme='https'), timeout=5))
    assert status == 0 and 'CERTIFICATE_VERIFY_FAILED' in error, error
    assert server.requests == []
