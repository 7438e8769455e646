"""AUTH PLAIN/LOGIN against [submission] username/password, compared in constant time.

Failures are counted per client address: after FAILURES within WINDOW seconds the
address gets 454 without a check, so a password cannot be guessed at line speed.
The password is never logged (aiosmtpd's own logger is muted by listener.py, since it
would log the AUTH line's base64 and the auth data at debug level).
"""
import collections
import hmac
import time

from aiosmtpd.smtp import AuthResult

from .replies import AUTH_LIMITED

FAILURES = 5
WINDOW = 60.0


class Login:
    """What a session remembers of its login: the user name, never the password."""

    def __init__(self, login):
        self.login = login

    def __repr__(self):
        return f'Login({self.login!r})'


class Authenticator:
    def __init__(self, username, password, failures=FAILURES, window=WINDOW, clock=None):
        self.username = username.encode()
        self.password = password.encode()
        self.failures, self.window = failures, window
        self.clock = clock or time.monotonic
        self.recent = collections.defaultdict(collections.deque)   # address -> times

    def __call__(self, server, session, envelope, mechanism, auth_data):
        address = session.peer[0] if session.peer else '?'
        now = self.clock()
        times = self.recent[address]
        while times and now - times[0] > self.window:
            times.popleft()
        if len(times) >= self.failures:
            return AuthResult(success=False, handled=False, message=AUTH_LIMITED)
        login = getattr(auth_data, 'login', None) or b''
        password = getattr(auth_data, 'password', None) or b''
        user_ok = hmac.compare_digest(login, self.username)
        password_ok = hmac.compare_digest(password, self.password)
        if user_ok and password_ok:
            self.recent.pop(address, None)
            return AuthResult(success=True, auth_data=Login(login.decode('utf-8', 'replace')))
        times.append(now)
        if len(self.recent) > 10000:       # bounded memory under a scan of many addresses
            self.recent.pop(next(iter(self.recent)))
        return AuthResult(success=False, handled=False)
