"""Hand a rendered message to its destination: an SMTP relay, the outbox, or stdout.

Every transport returns a `Delivery`; it never raises for a failed delivery.
The SMTP transport keeps one session per worker thread and reuses it (RSET is
not needed after a completed transaction); any error closes it, and the next
mail opens a new one. A registry of all threads' sessions lets the graceful stop
end each one with QUIT (RFC 5321 4.1.1.10).
"""
import base64
import fnmatch
import email
import email.generator
import io
import logging
import re
import smtplib
import socket
import ssl
import sys
import threading
import time
from dataclasses import dataclass, field

log = logging.getLogger('mailq.transport')
IDLE_CHECK_AFTER = 5.0


@dataclass
class Delivery:
    """The result of one attempt. `code` is the deciding SMTP reply code, 0 if none."""
    ok: bool
    code: int = 0
    reply: str = ''
    transient: bool = False
    refused: dict = field(default_factory=dict)   # recipient -> [code, reply]
    stage: str = ''             # 'connect': the reply came before any transaction (greeting)

    @property
    def outcome_text(self):
        return f'{self.code} {self.reply}'.strip() if self.code else self.reply

    @property
    def deferred(self):
        """Recipients refused with a 4xx at RCPT: RFC 5321 4.5.3.1.10 asks the client
        to try them again in a later transaction, whatever became of the others."""
        return {rcpt: reply for rcpt, reply in self.refused.items() if 400 <= reply[0] < 500}

    def still_owed(self, recipients):
        """The recipients a retry must go to: after a delivery, the deferred ones;
        after a transient failure, all but those refused for good (5xx)."""
        if not self.ok and not self.transient:
            return []
        deferred = self.deferred
        if self.ok:
            return [r for r in recipients if r in deferred]
        return [r for r in recipients if r not in self.refused or r in deferred]


class Staging:
    """[smtp] allow_recipients and redirect_to, applied to each delivery attempt.

    plan() says whom this attempt goes to, with which bytes, and what to note on the
    mail: the recipients caught (kept in the outbox instead), or the original
    recipients of a redirected mail, which also get an X-Original-To header."""

    def __init__(self, smtp_config):
        self.mode = smtp_config.staging
        self.patterns = smtp_config.allow_recipients
        self.redirect_to = smtp_config.redirect_to

    def allowed(self, address):
        address = address.lower()
        return any(fnmatch.fnmatchcase(address, p) for p in self.patterns)

    def plan(self, recipients, raw):
        """(recipients to send to, message, note for the record or None)."""
        if self.mode == 'redirect':
            header = 'X-Original-To: ' + ',\r\n '.join(_header_safe(r) for r in recipients)
            return ([self.redirect_to], header.encode() + b'\r\n' + raw,
                    {'mode': 'redirect', 'to': self.redirect_to, 'original': recipients})
        if self.mode == 'allow':
            caught = [r for r in recipients if not self.allowed(r)]
            if caught:
                return ([r for r in recipients if r not in caught], raw,
                        {'mode': 'allow', 'caught': caught,
                         'reason': 'not in [smtp] allow_recipients (' +
                                   ', '.join(self.patterns) + ')'})
        return recipients, raw, None


def _header_safe(address):
    return ''.join(c for c in address if ' ' < c <= '~')


def create_release_transport(smtp_config):
    """The SMTP transport caught mails are released through, or None without a relay."""
    relay = smtp_config.release_relay()
    return SMTPTransport(relay) if relay else None


def create_transport(smtp_config):
    kind = smtp_config.transport
    if kind == 'smtp':
        return SMTPTransport(smtp_config)
    if kind == 'console':
        return ConsoleTransport()
    return OutboxTransport()


class OutboxTransport:
    """Keeps mails instead of sending them (like letter_opener); the record is the copy."""
    keeps_mail = True

    def send(self, sender, recipients, raw):
        return Delivery(ok=True, code=250, reply='kept in outbox')

    def close(self, polite=False):
        pass


class ConsoleTransport:
    """Prints each message to stdout, for development."""
    keeps_mail = False
    _lock = threading.Lock()

    def send(self, sender, recipients, raw):
        with self._lock:
            sys.stdout.write(f'--- mail from {sender} to {", ".join(recipients)}\n')
            sys.stdout.write(raw.decode('utf-8', 'replace'))
            sys.stdout.write('\n--- end\n')
            sys.stdout.flush()
        return Delivery(ok=True, code=250, reply='printed to console')

    def close(self, polite=False):
        pass


class _Sessions:
    """The open sessions of all threads: idle ones (which close_all() may QUIT) and
    busy ones (mid-transaction: their own thread QUITs them once done)."""

    def __init__(self):
        self._lock = threading.Lock()
        self._idle, self._busy = set(), set()
        self.closing = False

    def add_busy(self, conn):
        with self._lock:
            self._busy.add(conn)

    def checkout(self, conn):
        """Mark an idle session busy; False if close_all() has taken it."""
        with self._lock:
            if conn not in self._idle:
                return False
            self._idle.discard(conn)
            self._busy.add(conn)
            return True

    def checkin(self, conn):
        """Back to idle after a transaction; False once the stop has begun."""
        with self._lock:
            self._busy.discard(conn)
            if self.closing:
                return False
            self._idle.add(conn)
            return True

    def forget(self, conn):
        with self._lock:
            self._idle.discard(conn)
            self._busy.discard(conn)

    def take_idle(self):
        """Start the stop: no session goes back to idle; returns the idle ones."""
        with self._lock:
            self.closing = True
            idle, self._idle = list(self._idle), set()
            return idle


class SMTPTransport:
    keeps_mail = False

    def __init__(self, cfg):
        self.cfg = cfg
        self._local = threading.local()
        self._sessions = _Sessions()
        self.tls_context = ssl.create_default_context(
            cafile=str(cfg.ca_file) if cfg.ca_file else None)
        if not cfg.verify:
            self.tls_context.check_hostname = False
            self.tls_context.verify_mode = ssl.CERT_NONE

    def send(self, sender, recipients, raw):
        try:
            conn = self._connection()
        except smtplib.SMTPAuthenticationError as exc:
            self.close()
            return self._auth_failure(exc)
        except smtplib.SMTPResponseException as exc:
            self.close()
            delivery = _from_reply(exc.smtp_code, exc.smtp_error)
            delivery.stage = 'connect'
            return delivery
        except (OSError, smtplib.SMTPException) as exc:
            self.close()
            return Delivery(ok=False, transient=True, reply=f'connect failed: {_describe(exc)}')
        try:
            delivery = _transaction(conn, sender, recipients, raw)
        except smtplib.SMTPResponseException as exc:
            delivery = _from_reply(exc.smtp_code, exc.smtp_error)
        except (OSError, smtplib.SMTPException) as exc:
            delivery = Delivery(ok=False, transient=True, reply=_describe(exc))
        self._release(conn, healthy=delivery.ok)
        return delivery

    def _release(self, conn, healthy):
        """Keep a healthy session for the next mail, unless the stop has begun (then
        QUIT it); close any other: it may be in any state after a failure."""
        if healthy and self._sessions.checkin(conn):
            self._local.last_used = time.monotonic()
            return
        self._local.conn = None
        self._sessions.forget(conn)
        _quietly_close(conn, polite=healthy)

    def _connection(self):
        """This thread's session, checked out (busy), or a new one."""
        conn = getattr(self._local, 'conn', None)
        if conn is not None and not self._sessions.checkout(conn):
            conn = self._local.conn = None          # close_all() has QUIT it
        if conn is not None and time.monotonic() - self._local.last_used > IDLE_CHECK_AFTER:
            try:
                if conn.noop()[0] != 250:
                    raise smtplib.SMTPServerDisconnected('noop failed')
            except (OSError, smtplib.SMTPException):
                self.close()
                conn = None
        if conn is None:
            conn = self._open()
            self._sessions.add_busy(conn)
            self._local.conn, self._local.last_used = conn, time.monotonic()
        return conn

    def _open(self):
        cfg = self.cfg
        if cfg.security == 'tls':
            conn = smtplib.SMTP_SSL(cfg.host, cfg.port, timeout=cfg.timeout,
                                    context=self.tls_context)
        else:
            conn = smtplib.SMTP(cfg.host, cfg.port, timeout=cfg.timeout)
        try:
            conn.ehlo()
            if cfg.security == 'starttls':
                if not conn.has_extn('starttls'):   # never fall back to plaintext
                    raise smtplib.SMTPNotSupportedError('server does not offer STARTTLS')
                conn.starttls(context=self.tls_context)
                conn.ehlo()
            if cfg.username:
                conn.login(cfg.username, cfg.password)
        except BaseException:
            _quietly_close(conn)
            raise
        return conn

    def _auth_failure(self, exc):
        transient = self.cfg.auth_failure == 'transient' or 400 <= exc.smtp_code < 500
        return Delivery(ok=False, code=exc.smtp_code, reply=_reply_text(exc.smtp_error),
                        transient=transient)

    def close(self, polite=False):
        """close(): drop this thread's session (after an error, so no QUIT).
        close(polite=True), the graceful stop (from any thread): QUIT every idle
        session; a busy one is QUIT by its own thread when its transaction ends."""
        conn = getattr(self._local, 'conn', None)
        self._local.conn = None
        if conn is not None:
            self._sessions.forget(conn)
            _quietly_close(conn, polite)
        if polite:
            for idle in self._sessions.take_idle():
                _quietly_close(idle, polite=True)


def _transaction(conn, sender, recipients, raw):
    """smtplib.sendmail, step by step, so we keep the final reply and per-recipient refusals."""
    if _needs_smtputf8(sender, recipients, raw):
        if not conn.has_extn('smtputf8'):       # RFC 6531 3.4: no downgrade; it can't go
            return Delivery(ok=False, reply='the relay does not offer SMTPUTF8, which this '
                            'mail needs (a non-ASCII address or header, RFC 6531)')
        raw, options = _body_type(conn, raw)
        options = options + ['SMTPUTF8']
    else:
        raw, options = _body_type(conn, raw)
    if conn.has_extn('pipelining') and _plain(sender) and all(map(_plain, recipients)):
        return _pipelined(conn, sender, recipients, raw, options)
    code, resp = conn.mail(sender, options)
    if code != 250:
        _reset(conn)
        return _from_reply(code, resp)
    refused = {}
    for rcpt in recipients:
        code, resp = conn.rcpt(rcpt)
        if code not in (250, 251):
            refused[rcpt] = [code, _reply_text(resp)]
    if len(refused) == len(recipients):
        _reset(conn)
        transient = any(400 <= code < 500 for code, _ in refused.values())
        code, text = next(iter(refused.values()))
        return Delivery(ok=False, code=code, reply=f'all recipients refused: {text}',
                        transient=transient, refused=refused)
    code, resp = conn.data(raw)
    if code != 250:
        _reset(conn)
        return _from_reply(code, resp)
    return Delivery(ok=True, code=code, reply=_reply_text(resp), refused=refused)


def _needs_smtputf8(sender, recipients, raw):
    """A UTF-8 address (SMTP submission takes them) or UTF-8 header fields (RFC 6532)."""
    if not sender.isascii() or not all(r.isascii() for r in recipients):
        return True
    end = raw.find(b'\r\n\r\n')
    return not raw[:end if end >= 0 else len(raw)].isascii()


def _body_type(conn, raw):
    """(message, MAIL FROM parameters) per RFC 6152. compose.py renders 7-bit mail; an
    8-bit one (stored by an older mailq) goes with BODY=8BITMIME where the server
    offers it, and is converted to 7-bit where it does not."""
    if raw.isascii():
        return raw, []
    if conn.has_extn('8bitmime'):
        return raw, ['BODY=8BITMIME']
    return to_7bit(raw), []


def to_7bit(raw):
    """The message with every 8bit or binary leaf part re-encoded as base64; the
    header fields (already 7-bit) are written back unchanged."""
    msg = email.message_from_bytes(raw)
    for part in msg.walk():
        if part.is_multipart():
            continue
        cte = str(part.get('Content-Transfer-Encoding', '7bit')).strip().lower()
        if cte in ('base64', 'quoted-printable') or part.get_payload().isascii():
            continue
        payload = part.get_payload(decode=True) or b''
        del part['Content-Transfer-Encoding']
        part.set_payload(base64.encodebytes(payload).decode('ascii'))
        part['Content-Transfer-Encoding'] = 'base64'
    out = io.BytesIO()
    email.generator.BytesGenerator(out, mangle_from_=False, maxheaderlen=0).flatten(
        msg, linesep='\r\n')
    return out.getvalue()


def _pipelined(conn, sender, recipients, raw, options=()):
    """The same transaction with RFC 2920 PIPELINING: MAIL, RCPTs and DATA in one write,
    then the message; two round trips instead of 3 + one per recipient."""
    params = ''.join(f' {o}' for o in options)
    commands = [f'MAIL FROM:<{sender}>{params}\r\n'] + [f'RCPT TO:<{r}>\r\n'
                                                          for r in recipients]
    conn.send(''.join(commands) + 'DATA\r\n')
    mail_code, mail_resp = conn.getreply()
    refused = {}
    for rcpt in recipients:
        code, resp = conn.getreply()
        if code not in (250, 251):
            refused[rcpt] = [code, _reply_text(resp)]
    data_code, data_resp = conn.getreply()
    failed = None
    if mail_code != 250:
        failed = _from_reply(mail_code, mail_resp)
    elif len(refused) == len(recipients):
        transient = any(400 <= code < 500 for code, _ in refused.values())
        code, text = next(iter(refused.values()))
        failed = Delivery(ok=False, code=code, reply=f'all recipients refused: {text}',
                          transient=transient, refused=refused)
    elif data_code != 354:
        failed = _from_reply(data_code, data_resp)
    if failed:
        if data_code == 354:      # RFC 2920 3.1: end the accepted DATA with an empty message
            conn.send(b'.\r\n')
            conn.getreply()
        _reset(conn)
        return failed
    body = dot_stuffed(raw)
    conn.send(body + (b'.\r\n' if body.endswith(b'\r\n') else b'\r\n.\r\n'))
    code, resp = conn.getreply()
    if code != 250:
        _reset(conn)
        return _from_reply(code, resp)
    return Delivery(ok=True, code=code, reply=_reply_text(resp), refused=refused)


_DOT_LINE = re.compile(rb'(?m)^\.')


def dot_stuffed(raw):
    """RFC 5321 4.5.2: a line that starts with a dot gets another. The regex walks the
    whole message (about 15 us for 2 KB); most have no such line, which find sees at
    memchr speed."""
    if raw.startswith(b'.') or b'\n.' in raw:
        return _DOT_LINE.sub(b'..', raw)
    return raw


_PLAIN_ADDRESS = re.compile(r'^[!-;=?-~]+@[A-Za-z0-9.-]+$')


def _plain(address):
    """A bare ASCII address (as compose.py makes them) that needs no smtplib quoting."""
    return bool(_PLAIN_ADDRESS.match(address))


def _reset(conn):
    """RSET after a refusal. A server that closes the connection after its 5xx
    (some MTAs do) must not turn the permanent reply into a connection error; the
    session is closed after a failure anyway."""
    try:
        conn.rset()
    except (OSError, smtplib.SMTPException):
        pass


def _from_reply(code, resp):
    """RFC 5321 4.2.1: 4yz is transient, 5yz permanent; anything else is treated as transient."""
    return Delivery(ok=False, code=code, reply=_reply_text(resp),
                    transient=not 500 <= code < 600)


def _reply_text(resp):
    if isinstance(resp, bytes):
        resp = resp.decode('utf-8', 'replace')
    return ' '.join(str(resp).split())[:500]


def _describe(exc):
    if isinstance(exc, (socket.timeout, TimeoutError)):
        return f'timeout: {exc}'
    return f'{type(exc).__name__}: {exc}'[:500]


def _quietly_close(conn, polite=False):
    if polite:
        try:
            conn.quit()
        except (OSError, smtplib.SMTPException):
            pass
    try:
        conn.close()
    except OSError:
        pass
