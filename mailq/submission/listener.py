"""Bind and serve the submission listener, with the same policy as `mailq web`: on
loopback by default, and never beyond it without both AUTH and TLS configured, since
the listener would otherwise relay for anyone who can reach it."""
import asyncio
import concurrent.futures
import errno
import logging
import signal
import socket
import ssl
import threading

from ..affinity import Placer
from ..errors import ConfigError
from ..web.app import is_loopback
from .accepter import Accepter
from .auth import Authenticator
from .counters import FLUSH_INTERVAL, Counters
from .handler import Handler
from .protocol import SubmissionSMTP

try:
    import uvloop
except ImportError:     # dist/mailq.pyz carries no compiled extension: asyncio's own loop
    uvloop = None

log = logging.getLogger('mailq.submission')
SESSION_TIMEOUT = 300


def check_bind(config):
    """Refuse a public address unless AUTH and TLS are both configured."""
    sub = config.submission
    if not is_loopback(sub.host) and not (sub.has_auth and sub.has_tls):
        missing = ' and '.join(w for w, ok in (('username/password', sub.has_auth),
                                               ('tls_cert/tls_key', sub.has_tls)) if not ok)
        raise config.error(f'refusing to listen on {sub.host} without AUTH and TLS: set '
                           f'{missing} in [submission], or bind to 127.0.0.1',
                           'submission', 'host')
    return sub


def loop_factory(sub):
    """uvloop's event loop when it is installed and [submission] event_loop is auto: a
    message costs the listener about a fifth less CPU than on asyncio's own loop
    (docs/benchmark.md). None: asyncio's."""
    return uvloop.new_event_loop if sub.event_loop == 'auto' and uvloop else None


def tls_context(sub):
    if not sub.has_tls:
        return None
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    context.load_cert_chain(str(sub.tls_cert), str(sub.tls_key))
    return context


def _socket(config):
    sub = config.submission
    try:
        family, kind, proto, _, address = socket.getaddrinfo(
            sub.host, sub.port, type=socket.SOCK_STREAM)[0]
        sock = socket.socket(family, kind, proto)
    except OSError as exc:
        raise config.error(f'cannot listen on {sub.host}: {exc.strerror}', 'submission',
                           'host') from None
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        sock.bind(address)
    except OSError as exc:
        sock.close()
        key = 'port' if exc.errno == errno.EADDRINUSE else 'host'
        raise config.error(f'cannot listen on {sub.host}:{sub.port}: {exc.strerror}',
                           'submission', key) from None
    sock.listen(512)
    sock.setblocking(False)
    return sock


def bind(rt, main_thread=True):
    """Check the policy and bind now (a bad address fails in the caller as a config
    error); return the Serving that serves until stopped (its stop(), or SIGTERM/SIGINT
    when `main_thread`). With `main_thread` the process is the listener's own, and it
    keeps its threads on one CPU ([submission] cpu_affinity); in `mailq run` the worker
    places them."""
    config = rt.config
    sub = check_bind(config)
    try:
        context = tls_context(sub)
    except (OSError, ssl.SSLError) as exc:
        raise ConfigError(f'cannot load the certificate: {exc}', config.source,
                          'submission', 'tls_cert') from None
    sock = _socket(config)
    # aiosmtpd logs every command line at INFO and auth data at DEBUG: AUTH PLAIN's
    # base64 is a password. Only its warnings get through.
    logging.getLogger('mail.log').setLevel(logging.WARNING)
    port = sock.getsockname()[1]
    new_loop = loop_factory(sub)
    log.info('submission listening on smtp://%s:%s/%s%s (%s)', sub.host, port,
             ' (STARTTLS)' if context else '', ' (AUTH)' if sub.has_auth else '',
             'uvloop' if new_loop else 'asyncio')
    loopback = is_loopback(sub.host)

    authenticator = Authenticator(sub.username, sub.password) if sub.has_auth else None

    def protocol(handler, counters):
        return SubmissionSMTP(
            handler, counters=counters, data_size_limit=sub.max_message_bytes,
            enable_SMTPUTF8=True, hostname=socket.gethostname(), ident='mailq',
            tls_context=context, require_starttls=bool(context) and not loopback,
            timeout=SESSION_TIMEOUT, auth_required=sub.has_auth,
            auth_require_tls=not loopback, authenticator=authenticator)

    async def main(stop):
        loop = asyncio.get_running_loop()
        # The counters' flush blocks on Redis too, in a thread of its own.
        executor = concurrent.futures.ThreadPoolExecutor(1, thread_name_prefix='mailq-flush')
        accepter = Accepter(rt, loop)
        counters = Counters(rt.store)
        handler = Handler(rt, accepter, counters, advertise_auth=sub.has_auth)
        server = await loop.create_server(lambda: protocol(handler, counters), sock=sock)
        placer = Placer(sub.cpu_affinity if main_thread else 'none', role='submission')
        if main_thread:
            for sig in (signal.SIGTERM, signal.SIGINT):
                loop.add_signal_handler(sig, _on_signal, sig, stop)
        flusher = asyncio.create_task(_flush(counters, executor))
        placer.start()
        try:
            await stop.wait()
        finally:
            placer.stop()
            log.info('submission listener stopping')
            server.close()
            flusher.cancel()
            await loop.run_in_executor(executor, accepter.close)
            await loop.run_in_executor(executor, counters.flush)
            executor.shutdown(wait=True)
            log.info('submission stopped')

    return Serving(main, new_loop)


def _on_signal(sig, stop):
    log.info('received %s: taking no new mail', signal.Signals(sig).name)
    stop.set()


class Serving:
    """A bound listener: calling it serves until stop(), which another thread may call
    (`mailq run` serves it in a thread and stops it when the worker stops)."""

    def __init__(self, main, new_loop=None):
        self.main = main                # main(stop event): serve until it is set
        self.new_loop = new_loop        # the event loop's factory; None: asyncio's
        self.loop = self.stopping = None
        self.started = threading.Event()
        self.thread = None              # with in_thread()

    def __call__(self):
        with asyncio.Runner(loop_factory=self.new_loop) as runner:
            runner.run(self._serve())

    def in_thread(self):
        """Serve in a thread of its own (the caller keeps the main thread)."""
        self.thread = threading.Thread(target=self, name='mailq-submission', daemon=True)
        self.thread.start()
        return self

    async def _serve(self):
        self.loop, self.stopping = asyncio.get_running_loop(), asyncio.Event()
        self.started.set()
        await self.main(self.stopping)

    def stop(self, timeout=10):
        """Close the port, store the mails in hand, flush the counters; then the serving
        call returns (waited for, when in_thread)."""
        if not self.started.wait(5):
            return
        try:
            self.loop.call_soon_threadsafe(self.stopping.set)
        except RuntimeError:            # it has stopped already
            return
        if self.thread:
            self.thread.join(timeout)


async def _flush(counters, executor):
    loop = asyncio.get_running_loop()
    while True:
        await asyncio.sleep(FLUSH_INTERVAL)
        await loop.run_in_executor(executor, counters.flush)


def serve(rt):
    """`mailq submission`: serve in the main thread until SIGTERM or SIGINT."""
    return bind(rt)()
