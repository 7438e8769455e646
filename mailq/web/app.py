"""The Bottle application: authentication, JSON errors, and the server.

Every route lives behind HTTP Basic auth (or an API token) when credentials
are configured, except /healthz. Without credentials mailq refuses to listen
anywhere but loopback. API errors are always JSON, never an HTML page.
"""
import base64
import errno
import functools
import hmac
import ipaddress
import json
import logging
from dataclasses import dataclass

import bottle
import redis

from ..errors import ConfigError
from .security import HEADERS, is_api, unauthorized_page

log = logging.getLogger('mailq.web')
PUBLIC_PATHS = ('/healthz',)


def json_response(status, body, headers=None):
    response = bottle.HTTPResponse(status=status, body=json.dumps(body, default=str))
    response.content_type = 'application/json'
    for name, value in (headers or {}).items():
        response.set_header(name, value)
    return response


def error_response(status, message, details=None, headers=None):
    return json_response(status, {'error': message, 'details': details or {}}, headers)


def create_app(rt):
    """The whole web app on one Bottle: JSON API, admin API, cron, metrics, OpenAPI, dashboard."""
    from . import admin_api, api, cron_api, dashboard, metrics_route, openapi, webhooks_api
    app = bottle.Bottle(catchall=True)
    app.config['json.enable'] = False
    app.config['mailq.runtime'] = rt
    app.add_hook('before_request', lambda: check_auth(rt.config.web))
    app.install(log_unexpected)
    for routes in (api, openapi, metrics_route, cron_api, admin_api, dashboard, webhooks_api):
        routes.install(app, rt)
    for code in (400, 401, 403, 404, 405, 409, 413, 422, 500, 503):
        app.error(code)(lambda error: _json_error(error) if is_api()
                        else dashboard.error_page(rt, error.status_code, _message(error)))
    return app


def _message(error):
    return error.body if isinstance(error.body, str) and error.body else error.status_line


def _json_error(error):
    bottle.response.content_type = 'application/json'
    message = 'internal error' if error.status_code == 500 else _message(error)
    return json.dumps({'error': message, 'details': {}})


def log_unexpected(callback):
    """Bottle plugin: a bug in a route is logged once through `logging` (so the JSON
    format and the redaction filter apply; Bottle's catchall would print a raw traceback
    to stderr) and then answered by the 500 handler: JSON for the API, a page otherwise."""
    @functools.wraps(callback)
    def wrapper(*args, **kwargs):
        try:
            return callback(*args, **kwargs)
        except bottle.HTTPResponse:     # answers, including HTTPError and redirects
            raise
        except Exception as exc:
            log.exception('unhandled error in %s %s', bottle.request.method,
                          bottle.request.path)
            raise bottle.HTTPError(500, 'internal error', exc) from None
    return wrapper


def check_auth(web):
    """Basic auth or `Authorization: Bearer <api_token>`; compared in constant time."""
    if not web.has_auth or bottle.request.path in PUBLIC_PATHS:
        return
    header = bottle.request.get_header('Authorization', '')
    scheme, _, value = header.partition(' ')
    if scheme.lower() == 'bearer' and web.api_token:
        if hmac.compare_digest(value.strip().encode(), web.api_token.encode()):
            return
    elif scheme.lower() == 'basic' and web.username:
        try:
            user, _, password = base64.b64decode(value.strip()).decode().partition(':')
        except (ValueError, UnicodeDecodeError):
            user, password = '', ''
        user_ok = hmac.compare_digest(user.encode(), web.username.encode())
        password_ok = hmac.compare_digest(password.encode(), web.password.encode())
        if user_ok and password_ok:
            return
    challenge = {'WWW-Authenticate': 'Basic realm="mailq", charset="UTF-8"'}
    if not is_api():    # the dashboard: an HTML page, and the browser asks for a login
        raise bottle.HTTPResponse(status=401, body=unauthorized_page(),
                                  headers={**challenge, **HEADERS,
                                           'Content-Type': 'text/html; charset=utf-8'})
    raise error_response(401, 'authentication required', headers=challenge)


def is_loopback(host):
    if host in ('localhost',):
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


@dataclass(frozen=True)
class Listen:
    """The address to serve on, and where each part came from, for error messages."""
    host: str
    port: int
    flags: frozenset        # 'host' and/or 'port' when given on the command line
    source: str             # the config file

    @classmethod
    def of(cls, config, host=None, port=None):
        """Flags win over [web]; None means not given (so --port 0 is not the config's)."""
        flags = frozenset(k for k, v in (('host', host), ('port', port)) if v is not None)
        return cls(config.web.host if host is None else host,
                   config.web.port if port is None else port, flags, config.source)

    def error(self, key, message):
        """A ConfigError naming the flag, or the file, section and key, that set `key`."""
        if key in self.flags:
            return ConfigError(message, 'command line', key=f'--{key}')
        return ConfigError(message, self.source, 'web', key)

    def socket(self, reuse=True):
        """A socket bound here; reuse=False also fails on a port that another
        SO_REUSEPORT server (a second `mailq web`) holds, which would otherwise share it."""
        import socket
        try:
            family, kind, proto, _, address = socket.getaddrinfo(
                self.host, self.port, type=socket.SOCK_STREAM)[0]
            sock = socket.socket(family, kind, proto)
        except OSError as exc:
            raise self.error('host', f'cannot listen on {self.host}: {exc.strerror}') from None
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, int(reuse))
        try:
            sock.bind(address)
        except OSError as exc:
            sock.close()
            key = 'port' if exc.errno == errno.EADDRINUSE else 'host'
            raise self.error(key, f'cannot listen on {self.host}:{self.port}: '
                                  f'{exc.strerror}') from None
        return sock


def check_bind(config, host=None, port=None):
    """Refuse a public address without credentials; return where to listen."""
    listen = Listen.of(config, host, port)
    if not config.web.has_auth and not is_loopback(listen.host):
        raise listen.error('host', f'refusing to listen on {listen.host} without '
                                   f'authentication: set username and password (or api_token) '
                                   f'in [web], or bind to 127.0.0.1')
    return listen


def _startup_warning(rt):
    """A Redis that keeps nothing on disk loses queued mail on restart: say so at start."""
    from ..redisconn import persistence_warning
    try:
        warning = persistence_warning(rt.redis)
    except (redis.ConnectionError, redis.TimeoutError) as exc:
        log.error('Redis unreachable at start (%s); the API answers 503 until it is back', exc)
        return
    if warning:
        log.warning(warning)


def _json_server_errors():
    """waitress answers some requests itself (a body over max_request_body_size, a
    malformed request line) in text/plain; make those answers JSON like all of ours."""
    from waitress.utilities import Error

    def to_response(self, ident=None):
        body = json.dumps({'error': f'{self.reason}: {self.body}', 'details': {}}).encode()
        return f'{self.code} {self.reason}', [('Content-Type', 'application/json')], body
    Error.to_response = to_response


def serve(rt, host=None, port=None, threads=None):
    """Serve the app with waitress (a production WSGI server) until interrupted."""
    return bind(rt, host, port, threads)()


def bind(rt, host=None, port=None, threads=None):
    """Check and bind the address now, so a bad or busy one fails in the caller's thread
    as a config error; return the function that serves until interrupted."""
    import waitress
    web = rt.config.web
    listen = check_bind(rt.config, host, port)
    _startup_warning(rt)
    _json_server_errors()
    options = dict(threads=threads or web.threads, ident='mailq', _quiet=True,
                   max_request_body_size=rt.config.limits.max_body_bytes + 1024)
    if web.processes > 1:
        return _swarm(rt, listen, web.processes, options)
    sock = listen.socket(reuse=False)
    log.info('web listening on http://%s:%s/', listen.host, sock.getsockname()[1])
    return functools.partial(waitress.serve, create_app(rt), sockets=[sock], **options)


def _swarm(rt, listen, processes, options):
    """[web] processes > 1: fork servers that listen on the same port, so the API uses
    more than one core. Each child has its own SO_REUSEPORT socket and the kernel spreads
    new connections over them; with one shared socket the child that woke first took
    every keep-alive connection. The parent binds first, to fail before forking."""
    import signal
    import sys
    import waitress
    from ..swarm import Swarm
    listen.socket(reuse=False).close()      # port in use by anyone: fail here
    holder = listen.socket()                # bound, never listening: gets no connections
    log.info('web listening on http://%s:%s/ (%d processes)', listen.host, listen.port,
             processes)

    def child(index):
        signal.signal(signal.SIGTERM, lambda *_: sys.exit(0))
        waitress.serve(create_app(rt), sockets=[listen.socket()], **options)

    def run():
        try:
            return Swarm('web', [child] * processes).run()
        finally:
            holder.close()
    return run
