"""The Bottle application: the checks every request passes, JSON errors, and the server.

Every request passes, in this order: the Host check (DNS rebinding), the login
(HTTP Basic or an API token, when credentials are configured; /healthz is open),
then the cross-site and CSRF checks of state-changing requests. They are
registered here, for the API and the dashboard alike. Without credentials mailq
refuses to listen anywhere but loopback. API errors are always JSON.
"""
import errno
import functools
import ipaddress
import json
import logging
import time
from dataclasses import dataclass

import bottle
import redis

from ..affinity import Placer
from ..errors import ConfigError
from ..redisconn import is_outage, outage_text, persistence_warning
from . import (admin_api, api, cron_api, dashboard, events, metrics_route, openapi, security,
               webhooks_api)
from .auth import require_auth
from .hot import HotRoute
from .responses import error_response

log = logging.getLogger('mailq.web')
ROUTES = (api, openapi, metrics_route, cron_api, admin_api, events, dashboard, webhooks_api)
ERROR_CODES = (400, 401, 403, 404, 405, 409, 413, 415, 422, 500, 503)


class App(bottle.Bottle):
    """Bottle, with POST /api/mails answered by hot.py whenever it can (every request
    it does not answer is Bottle's, as before)."""

    hot = None

    def __call__(self, environ, start_response):
        answer = self.hot(environ) if self.hot is not None else None
        if answer is None:
            return self.wsgi(environ, start_response)
        status, headers, body = answer
        start_response(status, headers)
        return [body]


def create_app(rt, listen_host=None):
    """The whole web app on one Bottle: JSON API, admin API, cron, metrics, OpenAPI,
    dashboard. `listen_host` (--host) is accepted in Host like [web] host."""
    app = App(catchall=True)
    app.config['json.enable'] = False
    hosts = security.allowed_hosts(rt.config.web, listen_host)
    install_checks(app, rt, hosts)
    app.hot = HotRoute(rt, hosts)
    app.install(log_unexpected)
    for routes in ROUTES:
        routes.install(app, rt)
    for code in ERROR_CODES:
        app.error(code)(lambda error: _json_error(error) if security.is_api()
                        else dashboard.error_page(rt, error.status_code, _message(error)))
    return app


def install_checks(app, rt, allowed_hosts):
    """Host first (before a login is even looked at), then the login, then the
    cross-site and CSRF checks; the security headers go on every answer."""
    web = rt.config.web
    app.add_hook('before_request', lambda: check_host(allowed_hosts))
    app.add_hook('before_request', lambda: require_auth(web))
    app.add_hook('before_request', lambda: check_cross_site(rt))
    app.add_hook('after_request', lambda: security.apply_headers(keep=True))


def check_host(allowed_hosts):
    """400 (JSON, on every path) for a Host that is not one of ours."""
    reason = security.host_reason(allowed_hosts)
    if reason:
        security.apply_headers()
        raise error_response(400, reason, {'header': 'Host'})


def check_cross_site(rt):
    """403 for a cross-site or CSRF-less state change: JSON for the API, a page otherwise."""
    refused = security.guard(rt.config.web.secret)
    if not refused:
        return
    status, reason = refused
    if security.is_api():
        security.apply_headers()
        raise error_response(status, reason)
    raise bottle.HTTPResponse(status=status, body=dashboard.error_page(rt, status, reason),
                              headers=dict(bottle.response.headers))


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
    """A Redis that keeps nothing on disk loses queued mail on restart: say so at start.
    A Redis that cannot serve us now (down, LOADING, NOREPLICAS...) is said, not fatal."""
    try:
        warning = persistence_warning(rt.redis)
        rt.store.index.mark_start(time.time())
    except redis.RedisError as exc:
        if not is_outage(exc):
            raise
        log.error('%s at start; the API answers 503 until it is back', outage_text(exc))
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


def serve_wsgi(app, config):
    """Serve any WSGI app on [web] host and port with mailq's server options and CPU
    placement, in one process (the bench's minimal app, its ceiling of an HTTP enqueue)."""
    import waitress
    _placed(config.web, None, functools.partial(
        waitress.serve, app, host=config.web.host, port=config.web.port,
        **server_options(config.web, config.limits)))


def serve(rt, host=None, port=None, threads=None):
    """Serve the app with waitress (a production WSGI server) until interrupted."""
    return bind(rt, host, port, threads)()


def server_options(web, limits, threads=None):
    """waitress's options. Half-sent requests cost a socket each, not a thread, so the
    connection limit is high and idle connections are closed soon; poll() instead of
    select(), which fails on a file descriptor above 1023; reading one request ahead lets
    a live stream (GET /api/events) see its client leave. waitress drops
    X-Forwarded-Proto unless it comes from [web] trusted_proxy."""
    options = dict(threads=threads or web.threads, ident='mailq', _quiet=True,
                   max_request_body_size=limits.max_body_bytes + 1024,
                   connection_limit=web.connection_limit, channel_timeout=web.channel_timeout,
                   cleanup_interval=web.cleanup_interval, backlog=web.backlog,
                   asyncore_use_poll=True, channel_request_lookahead=1)
    if web.trusted_proxy:   # the scheme the browser used, for the Origin check
        options.update(trusted_proxy=web.trusted_proxy,
                       trusted_proxy_headers={'x-forwarded-proto'})
    return options


def _raise_file_limit(connections):
    """Let the process hold `connections` sockets (plus Redis and files): raise the
    soft RLIMIT_NOFILE up to the hard one, and say so when that is not enough."""
    import resource
    need = connections + 256
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft != resource.RLIM_INFINITY and soft < need:
        target = need if hard == resource.RLIM_INFINITY else min(need, hard)
        resource.setrlimit(resource.RLIMIT_NOFILE, (target, hard))
        if target < need:
            log.warning('[web] connection_limit = %d, but only %d open files are allowed '
                        '(ulimit -n); raise the limit or lower connection_limit',
                        connections, target)


def _host_warning(web, listen):
    if listen.host in security.WILDCARD_BINDS and not web.allowed_hosts:
        log.warning('listening on %s, but only loopback names are accepted in the Host '
                    'header: list the names clients use in [web] allowed_hosts', listen.host)


def _placed(web, member, serve):
    """Run `serve` with this process's threads kept on one CPU ([web] cpu_affinity)."""
    placer = Placer(web.cpu_affinity, member, role='web').start()
    try:
        return serve()
    finally:
        placer.stop()


def bind(rt, host=None, port=None, threads=None, place=True):
    """Check and bind the address now, so a bad or busy one fails in the caller's thread
    as a config error; return the function that serves until interrupted. Without
    `place` the caller places the process (`mailq run`: the worker places its threads,
    the web's among them)."""
    import waitress
    web = rt.config.web
    listen = check_bind(rt.config, host, port)
    _startup_warning(rt)
    _host_warning(web, listen)
    _json_server_errors()
    _raise_file_limit(web.connection_limit)
    options = server_options(web, rt.config.limits, threads)
    if web.processes > 1:
        return _swarm(rt, listen, web.processes, options)
    sock = listen.socket(reuse=False)
    log.info('web listening on http://%s:%s/', listen.host, sock.getsockname()[1])
    serve = functools.partial(waitress.serve, create_app(rt, listen.host), sockets=[sock],
                              **options)
    return functools.partial(_placed, web, None, serve) if place else serve


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
        _placed(rt.config.web, index, functools.partial(
            waitress.serve, create_app(rt, listen.host), sockets=[listen.socket()],
            **options))

    def run():
        try:
            return Swarm('web', [child] * processes).run()
        finally:
            holder.close()
    return run
