"""A real SMTP server (aiosmtpd) that records messages and can misbehave on demand."""
import asyncio
import email.parser
import os
import ssl
import tempfile
import threading
import time
from dataclasses import dataclass, field

import trustme
from aiosmtpd.controller import Controller
from aiosmtpd.smtp import SMTP, AuthResult

from .procs import free_port

SECURITIES = ('none', 'starttls', 'tls')


@dataclass
class Received:
    mail_from: str
    rcpt_tos: list
    data: bytes
    message_id: str = None
    received_at: float = field(default_factory=time.time)


def _text(value):
    return value.decode('utf-8') if isinstance(value, bytes) else value


class _Faults:
    """Fault settings; read on the server loop, written from tests (under a lock)."""

    def __init__(self):
        self.rcpt = {}           # address (or None = everyone) -> (code, text)
        self.data = []           # queued replies for the next DATA commands
        self.drops = 0           # next N DATA commands: hang up without replying
        self.delay = 0.0         # seconds to sleep before replying to DATA
        self.greeting = []       # queued replies sent instead of the 220 greeting
        self.by_rcpt = {}        # address -> [times left, drop, delay, reply, hang up] at DATA


class _Handler:
    def __init__(self, server):
        self.server = server

    async def handle_RCPT(self, smtp, session, envelope, address, rcpt_options):
        reply = self.server._rcpt_fault(address)
        if reply:
            return reply
        envelope.rcpt_tos.append(address)
        return '250 OK'

    async def handle_DATA(self, smtp, session, envelope):
        srv = self.server
        drop, reply, delay, hang_up = srv._data_faults(envelope.rcpt_tos)
        if srv.data_policy and not (drop or reply):
            reply = srv.data_policy(time.monotonic())
        if delay:
            await asyncio.sleep(delay)   # keeps other connections served
        if drop:
            # abort() marks the transport lost at once, so the 250 that
            # aiosmtpd would push next is discarded, never sent.
            smtp.transport.abort()
            return '421 dropped'
        if reply:
            if hang_up:     # close() sends what is buffered (the reply) first
                asyncio.get_running_loop().call_soon(smtp.transport.close)
            return reply
        srv._record(envelope)
        return '250 OK queued'


class _CountingSMTP(SMTP):
    def __init__(self, owner, *args, **kwargs):
        self._owner = owner
        super().__init__(*args, **kwargs)

    def connection_made(self, transport):
        if self._original_transport is None and self.transport is None:
            self._owner._count('connections')   # a new TCP session, not STARTTLS
            reply = self._owner._greeting_fault()
            if reply:
                transport.write(reply.encode() + b'\r\n')
                transport.close()
                return
        self._owner._session(+1)
        super().connection_made(transport)

    def connection_lost(self, exc):
        if self._original_transport is None:
            self._owner._session(-1)
        super().connection_lost(exc)


class _Controller(Controller):
    def __init__(self, owner, *args, **kwargs):
        self._owner = owner
        super().__init__(*args, **kwargs)

    def factory(self):
        return _CountingSMTP(self._owner, self.handler, **self.SMTP_kwargs)


class SMTPServer:
    """Threaded SMTP server on 127.0.0.1 for tests.

    security: 'none', 'starttls' (advertised; required if require_starttls)
    or 'tls' (implicit TLS from the first byte, like port 465).
    auth: (username, password) enables AUTH PLAIN/LOGIN and requires it.
    """

    host = '127.0.0.1'

    def __init__(self, security='none', auth=None, require_starttls=False,
                 port=None):
        if security not in SECURITIES:
            raise ValueError('security must be one of %s' % (SECURITIES,))
        self.security = security
        self.auth = auth
        self.port = port or free_port()
        self.messages = []
        self.connections = 0
        self.transactions = 0
        self.open_sessions = 0       # TCP sessions open now, and the most at once
        self.max_open_sessions = 0
        self.transaction_times = []  # time.monotonic() of every DATA, answered or not
        # data_policy(now) -> a reply instead of 250 (e.g. a rate limit), or None
        self.data_policy = None
        self._lock = threading.Condition()
        self._faults = _Faults()
        self._tmp = tempfile.mkdtemp(prefix='mailq-smtp-')
        self.ca_file = None
        server_ctx = self._make_certs() if security != 'none' else None

        kwargs = dict(hostname=self.host, port=self.port, ready_timeout=10)
        if security == 'tls':
            kwargs['ssl_context'] = server_ctx
        elif security == 'starttls':
            kwargs['tls_context'] = server_ctx
            kwargs['require_starttls'] = require_starttls
        if auth:
            kwargs['authenticator'] = self._authenticate
            kwargs['auth_required'] = True
            # aiosmtpd only sees STARTTLS as "TLS"; implicit TLS is already
            # encrypted, so the check applies to starttls only.
            kwargs['auth_require_tls'] = security == 'starttls'
        self._controller = _Controller(self, _Handler(self), **kwargs)
        self._controller.start()
        with self._lock:
            self.connections = 0   # forget the controller's own readiness probe
            self.max_open_sessions = self.open_sessions

    def _make_certs(self):
        ca = trustme.CA()
        cert = ca.issue_cert('127.0.0.1', 'localhost')
        self.ca_file = os.path.join(self._tmp, 'ca.pem')
        ca.cert_pem.write_to_path(self.ca_file)
        ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
        cert.configure_cert(ctx)
        return ctx

    def client_ssl_context(self):
        """An ssl context that trusts this server's CA."""
        return ssl.create_default_context(cafile=self.ca_file)

    def _authenticate(self, server, session, envelope, mechanism, auth_data):
        given = (_text(auth_data.login), _text(auth_data.password))
        # handled=False: let aiosmtpd send the 535 itself (the default is silence).
        return AuthResult(success=given == tuple(self.auth), handled=False)

    # -- recording -------------------------------------------------------
    def _count(self, name):
        with self._lock:
            setattr(self, name, getattr(self, name) + 1)

    def _session(self, delta):
        with self._lock:
            self.open_sessions += delta
            self.max_open_sessions = max(self.max_open_sessions, self.open_sessions)

    def _record(self, envelope):
        data = envelope.original_content or envelope.content
        if isinstance(data, str):
            data = data.encode('utf-8', 'surrogateescape')
        headers = email.parser.BytesHeaderParser().parsebytes(data)
        msg = Received(envelope.mail_from, list(envelope.rcpt_tos), data,
                       headers.get('Message-ID'))
        with self._lock:
            self.messages.append(msg)
            self._lock.notify_all()

    def wait_for(self, count, timeout=10):
        """Block until at least `count` messages arrived; return them all."""
        with self._lock:
            if not self._lock.wait_for(lambda: len(self.messages) >= count,
                                       timeout):
                raise AssertionError(
                    'SMTP server on port %s got %d message(s), expected %d '
                    'within %ss (connections=%d, transactions=%d)'
                    % (self.port, len(self.messages), count, timeout,
                       self.connections, self.transactions))
            return list(self.messages)

    # -- fault injection (callable while the server runs) ---------------
    def fail_rcpt(self, address, code=550, text='5.1.1 No such user'):
        """Refuse `address` (None: every recipient) at RCPT; code=None clears it."""
        with self._lock:
            if code is None:
                self._faults.rcpt.pop(address, None)
            else:
                self._faults.rcpt[address] = '%d %s' % (code, text)

    def fail_data(self, code, text='Temporary failure', times=1):
        """Answer the next `times` DATA commands with `code` instead of 250."""
        with self._lock:
            self._faults.data.extend(['%d %s' % (code, text)] * times)

    def drop_in_data(self, times=1):
        """Close the connection after the next `times` DATA payloads, no reply."""
        with self._lock:
            self._faults.drops += times

    def delay_data(self, seconds):
        """Sleep before replying to DATA (0 turns it off)."""
        with self._lock:
            self._faults.delay = seconds

    def fail_greeting(self, code=421, text='Service not available', times=1):
        """Greet the next `times` connections with `code` and hang up."""
        with self._lock:
            self._faults.greeting.extend(['%d %s' % (code, text)] * times)

    def fault_for(self, address, reply=None, drop=False, delay=0.0, times=1, hang_up=False):
        """Misbehave at DATA for transactions to `address` only (the others go through).
        hang_up: close the connection right after sending `reply`."""
        with self._lock:
            self._faults.by_rcpt[address] = [times, drop, delay, reply, hang_up]

    def reset_faults(self):
        with self._lock:
            self._faults = _Faults()

    def _rcpt_fault(self, address):
        with self._lock:
            rcpt = self._faults.rcpt
            return rcpt.get(address) or rcpt.get(None)

    def _greeting_fault(self):
        with self._lock:
            return self._faults.greeting.pop(0) if self._faults.greeting else None

    def _data_faults(self, rcpt_tos=()):
        with self._lock:
            self.transactions += 1
            self.transaction_times.append(time.monotonic())
            f = self._faults
            for address in rcpt_tos:
                fault = f.by_rcpt.get(address)
                if fault and fault[0] > 0:
                    fault[0] -= 1
                    return fault[1], fault[3], fault[2], fault[4]
            drop = f.drops > 0
            if drop:
                f.drops -= 1
                return True, None, f.delay, False
            reply = f.data.pop(0) if f.data else None
            return False, reply, f.delay, False

    # -- lifecycle -------------------------------------------------------
    def stop(self):
        if self._controller is not None:
            self._controller.stop()
            self._controller = None

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.stop()

    def __repr__(self):
        return '<SMTPServer %s:%s %s>' % (self.host, self.port, self.security)
