"""POSTs to one HTTP endpoint over a kept-alive connection: the webhook dispatcher's client.

A small HTTP/1.1 client of its own, not http.client: that one parses each reply's
headers with the email package and builds file objects per reply, which cost the
dispatcher more CPU than signing and encoding the event (a dispatcher shares the
worker's cores). It does what a webhook sender needs and no more: one request at a
time, replies with Content-Length, chunked or read to close, a whole-request
deadline, HTTPS with the system's trust store, and never a redirect followed.
"""
import socket
import ssl
import time
import urllib.parse

MAX_HEAD = 65536            # a reply's status line and headers
MAX_BODY = 65536            # read and dropped; a longer body closes the connection
READ_SIZE = 65536


class ReplyError(Exception):
    """A reply that is not HTTP, or is too long to read."""


class Closed(ReplyError):
    """The server closed the connection before a whole reply."""


class Poster:
    """POSTs `body` to one URL; `post` answers (status or 0, error text or '', seconds)."""

    def __init__(self, url, timeout, user_agent='mailq-webhooks'):
        parts = urllib.parse.urlsplit(url)
        self.https = parts.scheme == 'https'
        self.host = parts.hostname
        self.port = parts.port or (443 if self.https else 80)
        self.timeout = timeout
        path = (parts.path or '/') + (f'?{parts.query}' if parts.query else '')
        self.head = (f'POST {path} HTTP/1.1\r\nHost: {parts.netloc.rpartition("@")[2]}\r\n'
                     f'User-Agent: {user_agent}\r\nContent-Type: application/json\r\n')
        self.tls = ssl.create_default_context() if self.https else None
        self.sock = None
        self.buffer = b''
        self.replied = False        # a byte of this request's reply has come

    def post(self, body, headers):
        """One request; once more on a fresh connection if a kept-alive one was closed
        under it (the server's idle timeout) before any reply byte came."""
        started = time.monotonic()
        request = (self.head + ''.join(f'{k}: {v}\r\n' for k, v in headers.items())
                   + f'Content-Length: {len(body)}\r\n\r\n').encode() + body
        for attempt in (1, 2):
            reused = self.sock is not None
            deadline = time.monotonic() + self.timeout
            self.replied = False
            try:
                if self.sock is None:
                    self._connect(deadline)
                self.sock.settimeout(_left(deadline))
                self.sock.sendall(request)
                status, reason = self._reply(deadline)
            except (OSError, ReplyError) as exc:
                self.close()
                if reused and attempt == 1 and not self.replied and isinstance(
                        exc, (Closed, ConnectionResetError, BrokenPipeError)):
                    continue
                return 0, _describe(exc), time.monotonic() - started
            error = '' if 200 <= status < 300 else f'HTTP {status} {reason}'.rstrip()
            return status, error, time.monotonic() - started
        return 0, 'connection lost', time.monotonic() - started   # not reached

    def close(self):
        if self.sock is not None:
            try:
                self.sock.close()
            except OSError:
                pass
            self.sock = None
        self.buffer = b''

    def _connect(self, deadline):
        sock = socket.create_connection((self.host, self.port), _left(deadline))
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        if self.tls is not None:
            sock = self.tls.wrap_socket(sock, server_hostname=self.host)
        self.sock = sock

    def _reply(self, deadline):
        """(status, reason) of the reply, its body read and dropped; 1xx skipped."""
        while True:
            status, reason, fields, version = self._head(deadline)
            if status >= 200 or status == 101:
                break
        keep = self._body(status, fields, deadline)
        if not keep or fields.get('connection', '').lower() == 'close' or (
                version == 'HTTP/1.0' and fields.get('connection', '').lower() != 'keep-alive'):
            self.close()
        return status, reason

    def _head(self, deadline):
        while b'\r\n\r\n' not in self.buffer:
            if len(self.buffer) > MAX_HEAD:
                raise ReplyError('reply headers longer than 64 KB')
            self._fill(deadline)
        head, self.buffer = self.buffer.split(b'\r\n\r\n', 1)
        lines = head.decode('latin-1').split('\r\n')
        version, _, rest = lines[0].partition(' ')
        code, _, reason = rest.partition(' ')
        if not version.startswith('HTTP/1.') or not (code.isdigit() and len(code) == 3):
            raise ReplyError(f'not an HTTP reply: {lines[0][:80]!r}')
        fields = {}
        for line in lines[1:]:
            name, _, value = line.partition(':')
            fields[name.strip().lower()] = value.strip()
        return int(code), reason.strip(), fields, version

    def _body(self, status, fields, deadline):
        """Read the body and drop it; False if the connection cannot be reused."""
        if status in (204, 304) or 100 <= status < 200:
            return True
        if 'chunked' in fields.get('transfer-encoding', '').lower():
            return self._chunked(deadline)
        length = fields.get('content-length')
        if length is None:                  # the body runs to the close
            return False
        if not length.isdigit():
            raise ReplyError(f'bad Content-Length {length[:40]!r}')
        if int(length) > MAX_BODY:
            return False
        self._take(int(length), deadline)
        return True

    def _chunked(self, deadline):
        read = 0
        while True:
            while b'\r\n' not in self.buffer:
                self._fill(deadline)
            line, self.buffer = self.buffer.split(b'\r\n', 1)
            try:
                size = int(line.split(b';', 1)[0].strip(), 16)
            except ValueError:
                raise ReplyError(f'bad chunk size {line[:40]!r}') from None
            read += size
            if read > MAX_BODY:
                return False
            if size == 0:                   # trailers, then the blank line
                while not self.buffer.startswith(b'\r\n') and b'\r\n\r\n' not in self.buffer:
                    self._fill(deadline)
                end = 2 if self.buffer.startswith(b'\r\n') else self.buffer.index(b'\r\n\r\n') + 4
                self.buffer = self.buffer[end:]
                return True
            self._take(size + 2, deadline)

    def _take(self, count, deadline):
        while len(self.buffer) < count:
            self._fill(deadline)
        self.buffer = self.buffer[count:]

    def _fill(self, deadline):
        self.sock.settimeout(_left(deadline))
        data = self.sock.recv(READ_SIZE)
        if not data:
            raise Closed('the server closed the connection before a whole reply')
        self.replied = True
        self.buffer += data


def _left(deadline):
    left = deadline - time.monotonic()
    if left <= 0:
        raise TimeoutError('timed out')
    return left


def _describe(exc):
    text = str(exc) or 'no detail'
    return f'{type(exc).__name__}: {text}'[:300]
