"""Who is asking: HTTP Basic or `Authorization: Bearer <api_token>`, compared in
constant time. Every route needs it when [web] credentials are set, except /healthz,
which answers anonymous callers with less."""
import base64
import hmac

import bottle

from .responses import error_response
from .security import HEADERS, is_api, unauthorized_page

PUBLIC_PATHS = ('/healthz',)
CHALLENGE = {'WWW-Authenticate': 'Basic realm="mailq", charset="UTF-8"'}
MISSING, WRONG, OK = 'missing', 'wrong', 'ok'
MESSAGES = {MISSING: 'authentication required',
            WRONG: 'invalid credentials'}     # never says which of user and password


def check_auth(web, request=None):
    """MISSING (no Authorization header), OK, or WRONG (anything else)."""
    return auth_state(web, (request or bottle.request).get_header('Authorization'))


def auth_state(web, header):
    """check_auth of an Authorization header's value (None when absent)."""
    if not header:
        return MISSING
    scheme, _, value = header.partition(' ')
    if scheme.lower() == 'bearer' and web.api_token:
        if hmac.compare_digest(value.strip().encode(), web.api_token.encode()):
            return OK
    elif scheme.lower() == 'basic' and web.username:
        try:
            user, _, password = base64.b64decode(value.strip()).decode().partition(':')
        except (ValueError, UnicodeDecodeError):
            user, password = '', ''
        user_ok = hmac.compare_digest(user.encode(), web.username.encode())
        password_ok = hmac.compare_digest(password.encode(), web.password.encode())
        if user_ok and password_ok:
            return OK
    return WRONG


def authenticated(web):
    """True when no credentials are configured (loopback only) or the caller gave them."""
    return not web.has_auth or check_auth(web) == OK


def require_auth(web):
    """The before_request hook: 401 unless the caller authenticated (or the path is public)."""
    if not web.has_auth or bottle.request.path in PUBLIC_PATHS:
        return
    state = check_auth(web)
    if state == OK:
        return
    if not is_api():    # the dashboard: an HTML page, and the browser asks for a login
        raise bottle.HTTPResponse(status=401, body=unauthorized_page(MESSAGES[state]),
                                  headers={**CHALLENGE, **HEADERS,
                                           'Content-Type': 'text/html; charset=utf-8'})
    raise error_response(401, MESSAGES[state], headers=CHALLENGE)
