"""Delivery webhooks: tell the app what became of its mails, signed and retried.

The outcome scripts write each event to the stream of every endpoint that takes its
type (mailq/store/hooks.py); here a dispatcher thread per endpoint reads its stream
through a consumer group and POSTs each event as JSON. The dispatcher runs in a child
process of the worker (one for a `-k process` swarm), so its JSON, signing and HTTP
work takes no GIL time from the delivery threads:

    Mailq-Signature: t=<unix time>,v1=<hex HMAC-SHA256(secret, "<t>.<body>")>

(Stripe's scheme: the receiver recomputes the HMAC and refuses an old `t`). Any
non-2xx answer, a timeout or a connection error is retried with backoff
(`retry_base` doubling up to `retry_max_delay`) for `retry_for` (3 days), then given
up. After `pause_after` (10) failures in a row the endpoint is paused until Resume.
An event leaves its stream only when delivered or given up (hook_done.lua), so a
worker killed with `kill -9` loses none: another dispatcher claims it. Delivery is
at least once; the event `id` is stable across retries, for the receiver to dedupe.
Redirects are not followed. URLs come from the config only.
"""
import hashlib
import hmac
import json
import logging
import os
import signal
import threading
import time
import urllib.parse

import redis

from .httppost import Poster
from .redisconn import is_outage
from .store.record import iso

log = logging.getLogger('mailq.webhooks')
BATCH = 100
READ_BLOCK_MS = 500
SIGNATURE_HEADER = 'Mailq-Signature'


def sign(secret, timestamp, body):
    """The Mailq-Signature header value of `body` (bytes) at `timestamp`."""
    mac = hmac.new(secret.encode(), f'{int(timestamp)}.'.encode() + body, hashlib.sha256)
    return f't={int(timestamp)},v1={mac.hexdigest()}'


def verify(secret, header, body, tolerance=300, now=None):
    """True if `header` signs `body` with `secret`, made within `tolerance` seconds."""
    try:
        parts = dict(p.split('=', 1) for p in header.split(','))
        timestamp = int(parts['t'])
    except (ValueError, KeyError, AttributeError):
        return False
    if abs((now or time.time()) - timestamp) > tolerance:
        return False
    expected = sign(secret, timestamp, body).split('v1=', 1)[1]
    return any(hmac.compare_digest(expected, v) for k, v in
               (p.split('=', 1) for p in header.split(',')) if k == 'v1')


def _json(text, default=None):
    try:
        return json.loads(text) if text else default
    except ValueError:
        return default


def event_body(entry_id, fields):
    """The JSON body of one stream entry: the same bytes on every retry."""
    mail_id = fields.get('id')
    status = fields.get('status')
    recipients = _json(fields.get('recipients'), [])
    if not recipients:
        suppressed = _json(fields.get('suppressed'), []) or []
        recipients = [{'address': r, 'outcome': status, 'code': None, 'reply': None}
                      for r in _json(fields.get('rcpts'), []) or [] if r not in suppressed]
        recipients += [{'address': r, 'outcome': 'suppressed', 'code': None, 'reply': None}
                       for r in dict.fromkeys(suppressed)]
    code = int(fields.get('code') or 0)
    body = {
        'id': f'evt_{mail_id}_{entry_id.replace("-", "_")}',
        'type': fields.get('type'),
        'created_at': iso(fields.get('at')),
        'mail': {
            'id': mail_id, 'message_id': fields.get('message_id'),
            'queue': fields.get('queue'), 'subject': fields.get('subject'),
            'from': fields.get('from'), 'to': fields.get('to'), 'status': status,
            'attempts': int(fields.get('attempts') or 0),
            'last_code': code or None,
            'last_reply': fields.get('reply') or fields.get('last_error') or None,
            'idempotency_key': fields.get('idempotency_key') or None,
            'metadata': _json(fields.get('metadata'), {}),
            'recipients': recipients,
        },
    }
    if fields.get('held_by'):          # mail.held: which limiter, and when its token comes
        body['mail'].update(held_by=fields['held_by'], ready_at=iso(fields.get('ready_at')))
    return body['id'], json.dumps(body, separators=(',', ':'), ensure_ascii=False).encode()


def backoff(hook, times_delivered):
    """Seconds to wait after the n-th failed attempt."""
    return min(hook.retry_base * 2 ** max(times_delivered - 1, 0), hook.retry_max_delay)


def created_at(entry_id):
    return int(entry_id.split('-', 1)[0]) / 1000.0


class Dispatcher:
    """One thread per [webhook:NAME] endpoint, reading its stream as `consumer`."""

    def __init__(self, store, hooks, consumer):
        self.events = store.events
        self.hooks = hooks
        self.consumer = consumer
        self.stopping = threading.Event()
        self.threads = []

    def start(self):
        for hook in self.hooks:
            thread = threading.Thread(target=self._run, args=(hook,), daemon=True,
                                      name=f'webhook-{hook.name}')
            thread.start()
            self.threads.append(thread)
        if self.hooks:
            log.info('webhooks: %s', ', '.join(f'{h.name} ({len(h.events)} event types)'
                                               for h in self.hooks))
        return self

    def stop(self, timeout=5):
        self.stopping.set()
        for thread in self.threads:
            thread.join(timeout)

    def _run(self, hook):
        poster = Poster(hook.url, hook.timeout)
        delay = 0.5
        while not self.stopping.is_set():
            try:
                self.events.ensure_group(hook.name)
                while not self.stopping.is_set():
                    self.step(hook, poster)
                delay = 0.5
            except redis.RedisError as exc:
                if not is_outage(exc):
                    log.exception('webhook %s: Redis error', hook.name)
                self.stopping.wait(delay)
                delay = min(delay * 2, 10)
            except Exception:       # noqa: BLE001 - the thread must live on
                log.exception('webhook %s: dispatcher error', hook.name)
                self.stopping.wait(delay)
                delay = min(delay * 2, 10)
        poster.close()

    def step(self, hook, poster):
        """One round: due retries, then new events. Returns how many were attempted."""
        state = self.events.state(hook.name)
        if state['paused']:
            self.stopping.wait(1.0)
            return 0
        due = self._due(hook, state['retry_now'])
        attempted = self._deliver(hook, poster, due)
        new = self.events.read_new(hook.name, self.consumer, BATCH,
                                   READ_BLOCK_MS if not due else 1)
        attempted += self._deliver(hook, poster, [(i, f, 1) for i, f in new])
        return attempted

    def _due(self, hook, now_all):
        pending = self.events.pending(hook.name, BATCH)
        if now_all:
            self.events.retry_now(hook.name, False)
        entries = []
        for entry_id, times, idle_ms in pending:
            wait = 0 if now_all else backoff(hook, times) * 1000
            if idle_ms >= wait:
                entries += [(i, f, times + 1) for i, f in
                            self.events.claim(hook.name, self.consumer, wait, [entry_id])]
        return entries

    def _deliver(self, hook, poster, entries):
        results = []
        for entry_id, fields, attempts in entries:
            if self.stopping.is_set() and not results:
                break
            event_id, body = event_body(entry_id, fields)
            status, error, seconds = poster.post(body, {
                'Mailq-Event-Id': event_id,
                SIGNATURE_HEADER: sign(hook.secret, time.time(), body)})
            now = time.time()
            if not error:
                result = 'ok'
            elif now - created_at(entry_id) >= hook.retry_for:
                result = 'gave_up'
            else:
                result = 'failed'
            results.append((entry_id, result, {
                'event': event_id, 'type': fields.get('type'), 'mail': fields.get('id'),
                'at': now, 'status': status or None, 'error': error or None,
                'latency_ms': round(seconds * 1000, 1), 'result': result,
                'attempts': attempts}))
            if error:
                log.warning('webhook %s: event %s %s: %s', hook.name, event_id, result, error)
                # A failing endpoint: the rest of the batch waits for its retry.
                break
        self.events.done(hook.name, results, time.time(), hook.pause_after)
        return len(results)


def run_dispatcher(config, consumer):
    """The dispatcher as a process of its own, until SIGTERM or SIGINT: a child of the
    worker (DispatcherProcess), or a member of a `-k process` swarm."""
    from .runtime import Runtime
    dispatcher = Dispatcher(Runtime(config).store, config.webhooks, consumer)
    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, lambda signum, frame: dispatcher.stopping.set())
    dispatcher.start()
    dispatcher.stopping.wait()
    dispatcher.stop()
    return 0


class DispatcherProcess:
    """A forked child that runs run_dispatcher, restarted if it dies while the worker
    runs. It dies with the worker (even with kill -9): the events it had read stay
    pending in Redis and another dispatcher claims them."""

    RESTART_DELAY = 1.0

    def __init__(self, config, consumer):
        self.config = config
        self.consumer = consumer
        self.pid = None
        self.stopping = threading.Event()

    def start(self):
        if not self.config.webhooks:
            return self
        self._fork()
        threading.Thread(target=self._watch, name='webhooks-watch', daemon=True).start()
        return self

    def _fork(self):
        from .affinity import release
        from .swarm import die_with_parent
        pid = os.fork()
        if pid == 0:
            code = 1
            try:
                os.setpgid(0, 0)    # a signal to the worker's group reaches it through stop()
                die_with_parent()
                release()           # a restart is forked from a worker kept on one core
                code = run_dispatcher(self.config, self.consumer)
            except BaseException:   # noqa: BLE001 - nothing may return into the worker's code
                log.exception('webhook dispatcher failed')
            finally:
                logging.shutdown()
                os._exit(code)
        self.pid = pid
        log.info('webhook dispatcher started (pid %d)', pid)

    def _watch(self):
        while not self.stopping.is_set():
            try:
                _, status = os.waitpid(self.pid, 0)
            except ChildProcessError:   # reaped by stop()
                return
            if self.stopping.is_set():
                return
            log.error('webhook dispatcher (pid %d) died (%s); restarting it', self.pid,
                      os.waitstatus_to_exitcode(status))
            self.stopping.wait(self.RESTART_DELAY)
            if not self.stopping.is_set():
                self._fork()

    def stop(self, timeout=5):
        """SIGTERM, then SIGKILL after `timeout` s: what is still pending goes out later."""
        self.stopping.set()
        if self.pid is None:
            return
        try:
            os.kill(self.pid, signal.SIGTERM)
        except ProcessLookupError:
            return
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            try:
                if os.waitpid(self.pid, os.WNOHANG)[0]:
                    return
            except ChildProcessError:   # reaped by the watcher
                return
            time.sleep(0.05)
        try:
            os.kill(self.pid, signal.SIGKILL)
            os.waitpid(self.pid, 0)
        except (ProcessLookupError, ChildProcessError):
            pass


# -- what GET /api/webhooks, its actions and the Webhooks tab call

def shown_url(url):
    """The URL without userinfo or query (either may carry a token): safe to show."""
    parts = urllib.parse.urlsplit(url)
    return f'{parts.scheme}://{parts.netloc.rpartition("@")[2]}{parts.path or "/"}'


def endpoints(rt, recent=20):
    from .service import redis_errors
    found = []
    with redis_errors():
        for hook in rt.config.webhooks:
            state = rt.store.events.state(hook.name)
            length, pending = rt.store.events.backlog(hook.name)
            rows = rt.store.events.recent(hook.name, recent)
            for row in rows:
                row['at'] = iso(row.get('at'))
            found.append({'name': hook.name, 'url': shown_url(hook.url),
                          'events': list(hook.events), 'paused': state['paused'],
                          'paused_at': iso(state['paused_at']),
                          'failures_in_a_row': state['failures'],
                          'delivered': state['delivered'], 'failed': state['failed'],
                          'gave_up': state['gave_up'], 'last_ok': iso(state['last_ok']),
                          'waiting': length, 'pending': pending, 'recent': rows})
    return found


def _hook(rt, name):
    from .errors import NotFound
    for hook in rt.config.webhooks:
        if hook.name == name:
            return hook
    raise NotFound(f'no webhook endpoint {name!r}')


def resume(rt, name):
    """Unpause an endpoint; its waiting events go out now."""
    from .service import redis_errors
    _hook(rt, name)
    with redis_errors():
        rt.store.events.resume(name)
        rt.store.events.retry_now(name)
    return {'name': name, 'paused': False}


def retry(rt, name):
    """Try every pending event of an endpoint now, backoff aside."""
    from .service import redis_errors
    _hook(rt, name)
    with redis_errors():
        rt.store.events.retry_now(name)
    return {'name': name, 'retry': True}
