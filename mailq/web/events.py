"""GET /api/events: one server-sent-events stream for the live pages.

Each web process holds one subscription to the store's events channel (a thread
here) and fans what it hears out to its open streams, together with the summary
counts every STATS_EVERY seconds (one read per process, whatever the number of
pages). So every process of `[web] processes` serves live pages, whichever one took
the mail. waitress serves each stream from one of its threads for as long as it is
open: at most `[web] event_streams` are open at once per process (503 beyond, and
the page polls instead), and each ends after MAX_SECONDS (EventSource reconnects).
"""
import json
import logging
import os
import queue
import threading
import time

import bottle

from .. import service
from ..errors import Unavailable
from . import security
from .responses import error_response

log = logging.getLogger('mailq.web')
STATS_EVERY = 2.0
KEEPALIVE = 15.0
MAX_SECONDS = 300.0
RETRY_MS = 3000


class Hub:
    def __init__(self, rt, limit):
        self.rt, self.limit = rt, limit
        self.lock = threading.Lock()
        self.streams = set()
        self.thread = None

    def open(self):
        """A queue of events for one stream, or None when `limit` are open already."""
        with self.lock:
            if len(self.streams) >= self.limit:
                return None
            stream = queue.Queue(maxsize=1000)
            self.streams.add(stream)
            if self.thread is None or not self.thread.is_alive():
                self.thread = threading.Thread(target=self._run, name='mailq-events',
                                               daemon=True)
                self.thread.start()
            return stream

    def close(self, stream):
        with self.lock:
            self.streams.discard(stream)

    def _send(self, event):
        with self.lock:
            streams = list(self.streams)
        for stream in streams:
            try:
                stream.put_nowait(event)
            except queue.Full:      # a stalled client: it gets the next stats anyway
                pass

    def _run(self):
        """Listen while any stream is open; reconnect after a Redis outage."""
        subscription, next_stats = None, 0.0
        while True:
            with self.lock:
                if not self.streams:
                    self.thread = None
                    break
            try:
                if subscription is None:
                    subscription = self.rt.store.live_events()
                event = subscription.next(timeout=0.5)
                if event:
                    self._send(event)
                if time.monotonic() >= next_stats:
                    next_stats = time.monotonic() + STATS_EVERY
                    self._send({'type': 'stats', **service.stats(self.rt)})
            except Unavailable:
                time.sleep(1)
            except Exception as exc:    # noqa: BLE001 - a lost subscription: start again
                log.warning('live events: %s; subscribing again', exc)
                if subscription is not None:
                    subscription.close()
                subscription = None
                time.sleep(1)
        if subscription is not None:
            subscription.close()


def frame(event):
    kind = event.get('type', 'message')
    return f'event: {kind}\ndata: {json.dumps(event, separators=(",", ":"))}\n\n'


def install(app, rt):
    hub = Hub(rt, rt.config.web.event_streams)
    app.config['mailq.hub'] = hub

    @app.get('/api/events')
    def events():
        stream = hub.open()
        if stream is None:
            security.apply_headers()
            raise error_response(503, f'{hub.limit} live streams are open already ([web] '
                                      'event_streams); poll /api/stats instead',
                                 headers={'Retry-After': '10'})
        security.apply_headers()
        bottle.response.content_type = 'text/event-stream; charset=utf-8'
        bottle.response.set_header('X-Accel-Buffering', 'no')

        # waitress reads ahead on the connection ([web] server option
        # channel_request_lookahead), so a closed tab frees its stream's thread at once,
        # not at the next write.
        gone = bottle.request.environ.get('waitress.client_disconnected') or (lambda: False)

        def body():
            try:
                yield f'retry: {RETRY_MS}\n' + frame({'type': 'hello', 'process': os.getpid()})
                now = time.monotonic()
                ends, quiet_since = now + MAX_SECONDS, now
                while time.monotonic() < ends and not gone():
                    try:
                        event = stream.get(timeout=0.25)
                    except queue.Empty:
                        if time.monotonic() - quiet_since >= KEEPALIVE:
                            quiet_since = time.monotonic()
                            yield ': keep-alive\n\n'
                        continue
                    quiet_since = time.monotonic()
                    yield frame(event)
            finally:
                hub.close(stream)
        return body()
