"""Webhook events and the suppression list in Redis.

Events are written by the outcome scripts (see emit in scripts/lib.lua) to one
stream per endpoint, `<p>:hook:<name>:events`. The dispatcher reads its stream
through the consumer group `dispatch`: a read event is pending until hook_done.lua
acknowledges and deletes it, so a worker killed mid-delivery loses none; another
dispatcher claims it once it has been idle for its backoff.

The suppression list is the hash `<p>:suppressed` (normalised address -> JSON
info) with `<p>:suppressed:order` (address by time) for paging. Entries whose end
date has passed are deleted by the worker's tick (Suppressions.expire_step).
"""
import json

import redis

GROUP = 'dispatch'
LOG_LENGTH = 100
# The expiry sweep: entries read per step (HSCAN COUNT), seconds between full passes.
EXPIRY_SCAN = 500
EXPIRY_EVERY = 60


def _text(value):
    return value.decode('utf-8', 'replace') if isinstance(value, bytes) else value


def _ended(info, now):
    """Whether a suppression's JSON info has an end date that has passed."""
    try:
        until = float(json.loads(info).get('until') or 0)
    except (ValueError, TypeError, AttributeError):
        return False
    return 0 < until <= now


def _entry(fields):
    return {_text(k): _text(v) for k, v in fields.items()}


class Events:
    """The event streams of the configured endpoints, and what the scripts need of them."""

    def __init__(self, client, keys, scripts, hooks):
        self.redis = client
        self.keys = keys
        self.scripts = scripts
        self.hooks = tuple(hooks)
        # KEYS and ARGV every outcome script gets: one stream per endpoint and its
        # subscribed types. Empty without endpoints: the scripts then write nothing.
        self.streams = [keys.hook_events(h.name) for h in self.hooks]
        self.subscriptions = [' ' + ' '.join(h.events) + ' ' for h in self.hooks]

    @property
    def on(self):
        return bool(self.hooks)

    def ensure_group(self, name):
        try:
            self.redis.xgroup_create(self.keys.hook_events(name), GROUP, id='0', mkstream=True)
        except redis.ResponseError as exc:
            if 'BUSYGROUP' not in str(exc):
                raise

    def read_new(self, name, consumer, count, block_ms):
        """[(entry id, fields)] never delivered to any consumer yet."""
        reply = self.redis.xreadgroup(GROUP, consumer, {self.keys.hook_events(name): '>'},
                                      count=count, block=block_ms)
        return [(_text(i), _entry(f)) for _, entries in (reply or []) for i, f in entries
                if f]

    def pending(self, name, count=100):
        """[(entry id, times delivered, idle ms)] of events read and not yet done."""
        rows = self.redis.xpending_range(self.keys.hook_events(name), GROUP, '-', '+', count)
        return [(_text(r['message_id']), r['times_delivered'], r['time_since_delivered'])
                for r in rows]

    def claim(self, name, consumer, min_idle_ms, ids):
        """Take over pending events idle for at least min_idle_ms (one taker wins)."""
        if not ids:
            return []
        entries = self.redis.xclaim(self.keys.hook_events(name), GROUP, consumer,
                                    int(min_idle_ms), ids)
        return [(_text(i), _entry(f)) for i, f in entries if f]

    def done(self, name, results, now, pause_after):
        """results: [(entry id, 'ok'|'failed'|'gave_up', log dict)]."""
        if not results:
            return
        args = [now, LOG_LENGTH, pause_after, GROUP]
        for entry_id, result, logged in results:
            args += [entry_id, result, json.dumps(logged)]
        self.scripts.hook_done(keys=[self.keys.hook_events(name), self.keys.hook(name),
                                     self.keys.hook_log(name)], args=args)

    def state(self, name):
        """{paused, failures, delivered, failed, gave_up, paused_at, last_ok, retry_now}."""
        raw = _entry(self.redis.hgetall(self.keys.hook(name)))
        return {'paused': raw.get('paused') == '1', 'failures': int(raw.get('failures') or 0),
                'delivered': int(raw.get('delivered') or 0),
                'failed': int(raw.get('failed') or 0), 'gave_up': int(raw.get('gave_up') or 0),
                'paused_at': float(raw['paused_at']) if raw.get('paused_at') else None,
                'last_ok': float(raw['last_ok']) if raw.get('last_ok') else None,
                'retry_now': raw.get('retry_now') == '1'}

    def backlog(self, name):
        """(events in the stream, events pending in the group)."""
        key = self.keys.hook_events(name)
        pipe = self.redis.pipeline(transaction=False)
        pipe.xlen(key)
        pipe.xpending(key, GROUP)
        try:
            length, pending = pipe.execute()
        except redis.ResponseError:         # no group yet: no dispatcher has run
            return self.redis.xlen(key), 0
        return length, pending['pending']

    def recent(self, name, count=50):
        return [json.loads(e) for e in self.redis.lrange(self.keys.hook_log(name), 0, count - 1)]

    def resume(self, name):
        self.redis.hset(self.keys.hook(name), mapping={'paused': 0, 'failures': 0})
        self.redis.hdel(self.keys.hook(name), 'paused_at')

    def retry_now(self, name, flag=True):
        """Ask the dispatchers to try every pending event now, backoff aside."""
        if flag:
            self.redis.hset(self.keys.hook(name), 'retry_now', 1)
        else:
            self.redis.hdel(self.keys.hook(name), 'retry_now')


class Suppressions:
    """The suppression list: normalised address -> info dict (see mailq/suppression.py)."""

    def __init__(self, client, keys, scripts):
        self.redis = client
        self.keys = keys
        self.scripts = scripts
        self._scan_cursor = 0
        self._next_expiry_step = 0.0

    def expire_step(self, now):
        """Delete the entries whose end date has passed, a few hundred per step and one
        step every EXPIRY_EVERY seconds at most (the worker's tick calls it). Matching
        already ignores them; this keeps the hash from growing for ever. Returns how
        many went."""
        if now < self._next_expiry_step:
            return 0
        self._scan_cursor, entries = self.redis.hscan(self.keys.suppressed, self._scan_cursor,
                                                      count=EXPIRY_SCAN)
        if self._scan_cursor == 0:
            self._next_expiry_step = now + EXPIRY_EVERY
        ended = [address for address, info in entries.items() if _ended(info, now)]
        return self.remove(ended, now, mode='expire') if ended else 0

    def add(self, entries, now):
        """entries: {normalised address: info dict}."""
        args = ['add', now]
        for address, info in entries.items():
            args += [address, json.dumps(info)]
        return self.scripts.suppress(keys=[self.keys.suppressed, self.keys.suppressed_order],
                                     args=args)

    def remove(self, addresses, now, mode='remove'):
        return self.scripts.suppress(keys=[self.keys.suppressed, self.keys.suppressed_order],
                                     args=[mode, now, *addresses])

    def get(self, address):
        value = self.redis.hget(self.keys.suppressed, address)
        return json.loads(value) if value else None

    def addresses(self):
        """Every address, newest first."""
        return [_text(a) for a in self.redis.zrevrange(self.keys.suppressed_order, 0, -1)]

    def page(self, start, stop):
        """(total, [info]) of one page, newest first."""
        key = self.keys.suppressed_order
        pipe = self.redis.pipeline(transaction=False)
        pipe.zcard(key)
        pipe.zrevrange(key, start, stop)
        total, addresses = pipe.execute()
        return total, self.many([_text(a) for a in addresses])

    def many(self, addresses):
        if not addresses:
            return []
        values = self.redis.hmget(self.keys.suppressed, addresses)
        return [json.loads(v) for v in values if v]
