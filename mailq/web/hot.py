"""POST /api/mails answered without Bottle's routing, hooks, request and response objects.

They cost about 70 us of the 100 us of Python an accepted request takes in the app,
compose included (bench/, docs/benchmark.md). Only a request that every check of
app.py would let through is answered here, by the same functions: an allowed Host, the
login when [web] has credentials, and none of the headers a browser adds (Cookie,
Origin, Sec-Fetch-Site), so neither the cross-site nor the CSRF check has anything to
refuse; then a JSON body of a known length within the limit. Any other request, and one
refused or malformed, goes to the Bottle app, which answers it as it always has.
"""
import io
import json
import logging

from bottle import HTTP_CODES

from .. import service
from ..errors import MailqError
from .api import is_json_type
from .auth import OK, auth_state
from .security import HEADERS, host_allowed

PATH = '/api/mails'
BROWSER_HEADERS = ('HTTP_COOKIE', 'HTTP_ORIGIN', 'HTTP_SEC_FETCH_SITE')
INTERNAL_ERROR = json.dumps({'error': 'internal error', 'details': {}}).encode()
log = logging.getLogger('mailq.web')


class HotRoute:
    """Called with each request's environ: (status line, headers, body) when it answers,
    None when the Bottle app must."""

    def __init__(self, rt, allowed_hosts):
        self.rt = rt
        self.web = rt.config.web
        self.allowed_hosts = allowed_hosts
        self.limit = rt.config.limits.max_body_bytes

    def __call__(self, environ):
        if environ.get('PATH_INFO') != PATH or environ.get('REQUEST_METHOD') != 'POST' \
                or not self._passes_checks(environ):
            return None
        data = self._read_json(environ)
        if data is None:
            return None
        try:
            return answer(202, service.send(self.rt, data, idempotency_key=environ.get(
                'HTTP_IDEMPOTENCY_KEY')))
        except MailqError as exc:
            return answer(exc.http_status, {'error': str(exc), 'details': exc.details()})
        except Exception:       # noqa: BLE001 - logged once, answered as Bottle's 500
            log.exception('unhandled error in POST %s', PATH)
            return _response(500, INTERNAL_ERROR)

    def _passes_checks(self, environ):
        if any(name in environ for name in BROWSER_HEADERS):
            return False
        if not host_allowed(environ.get('HTTP_HOST'), self.allowed_hosts):
            return False
        if self.web.has_auth and auth_state(self.web, environ.get('HTTP_AUTHORIZATION')) != OK:
            return False
        content_type = environ.get('CONTENT_TYPE')
        return not content_type or is_json_type(content_type)

    def _read_json(self, environ):
        """The body as JSON, or None (with the body put back for Bottle) when it is not
        one of a stated length within the limit."""
        length = environ.get('CONTENT_LENGTH') or ''
        if not length.isdigit() or int(length) > self.limit \
                or 'HTTP_TRANSFER_ENCODING' in environ:
            return None
        raw = environ['wsgi.input'].read(int(length))
        try:
            return json.loads(raw.decode('utf-8'))
        except (UnicodeDecodeError, ValueError, RecursionError):
            environ['wsgi.input'] = io.BytesIO(raw)
            return None


def answer(status, body):
    """A JSON answer as api.py's json_response gives it, with the security headers."""
    return _response(status, json.dumps(body, default=str).encode())


def _response(status, body):
    headers = [('Content-Type', 'application/json'), *HEADERS.items(),
               ('Content-Length', str(len(body)))]
    return f'{status} {HTTP_CODES[status]}', headers, body
