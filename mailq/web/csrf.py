"""CSRF tokens for dashboard forms, the way Sidekiq::Web does it.

A browser gets a random session id in an HttpOnly cookie. Its token is an
HMAC of that id under `[web] secret`, so nobody without the secret can make
one, and nothing needs to be stored. Each render masks the token with fresh
random bytes (a one-time pad), so the page never repeats the same secret
bytes (BREACH) and the check just unmasks and compares in constant time.
"""
import base64
import hashlib
import hmac
import secrets

COOKIE = 'mailq_session'
FIELD = 'csrf'
HEADER = 'X-CSRF-Token'
SIZE = 32


def new_session_id():
    return secrets.token_urlsafe(SIZE)


def _token(secret, session_id):
    return hmac.new(secret.encode(), b'csrf:' + session_id.encode(), hashlib.sha256).digest()


def _xor(a, b):
    return bytes(x ^ y for x, y in zip(a, b))


def masked_token(secret, session_id):
    """A fresh-looking token for one render: pad + (pad XOR token), base64url."""
    pad = secrets.token_bytes(SIZE)
    return base64.urlsafe_b64encode(pad + _xor(pad, _token(secret, session_id))).decode()


def valid(secret, session_id, value):
    """True when `value` is a masked token of this session."""
    if not session_id or not value:
        return False
    try:
        raw = base64.urlsafe_b64decode(value.encode())
    except (ValueError, UnicodeError):
        return False
    if len(raw) != 2 * SIZE:
        return False
    return hmac.compare_digest(_xor(raw[:SIZE], raw[SIZE:]), _token(secret, session_id))
