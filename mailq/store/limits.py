"""Limits on sending, shared by every worker on every host: the relay's ([smtp] rate,
burst, max_connections, daily_quota, greeting_pause) and each [throttle:NAME] group's
(rate, burst, concurrency, daily_quota for its recipient domains).

The state lives in Redis (keys.py): a token bucket per limiter in its hash, slots as a
sorted set of holders scored by the end of their lease (a worker killed with kill -9
loses its slots when their leases run out; its heartbeat renews them while it lives),
the daily quota as a sorted set of the last 24 hours' sends. The checks run inside the
scripts a mail goes through anyway: a thread takes a session slot in fetch.lua (and in
finish.lua's fetch of its next task), a mail takes its tokens in claim.lua, a mail
leaves its concurrency slot in finish.lua. Without any limit configured those scripts
get empty blocks and make no extra call.

A mail that must wait is held (states.HELD): its task sits in the held set with the
time its token comes, no attempt counted; the scheduler tick puts it back on its queue
then (Store.move_due). A mail held for a group's concurrency slot waits in that group's
waiting set too: the mail that leaves the slot makes it due at once (finish.lua), so it
does not poll; its ready time, a second away, is only the safety net. A throttling
reply (throttling.py decides which) cuts the rate of the limiters the mail needed in
half, and it climbs back by additive increase.
"""
import json
import time
from dataclasses import dataclass

from .states import HELD

RELAY = 'relay'
WINDOW = 86400          # the daily quota's rolling window, as SES counts it
CUT_FLOOR = 1 / 64      # a cut never takes a rate below this share of the configured one
CLIMB = 1 / 50          # after a cut, the rate climbs back by this share each second
BUCKETS = ((300, '0-5m'), (600, '5-10m'), (1200, '10-20m'), (2400, '20-40m'),
           (4800, '40-80m'), (9600, '80-160m'), (None, '160m+'))   # Postfix qshape


@dataclass(frozen=True)
class Limiter:
    name: str
    domains: tuple = ('*',)        # ('*',): every mail (the relay)
    rate: float = None
    burst: int = None
    concurrency: int = None        # mails in flight; the relay's is max_connections
    daily_quota: int = None
    pause: float = None            # seconds paused after a 421 greeting (the relay)

    @property
    def bucket(self):
        """Tokens the bucket holds: `burst`, or one second's worth."""
        return self.burst or max(1, round(self.rate or 0))

    @property
    def step(self):
        return max((self.rate or 0) * CLIMB, 0.01)

    @property
    def floor(self):
        return max((self.rate or 0) * CUT_FLOOR, 0.01)

    @property
    def per_mail(self):
        """Whether claim.lua checks it: a rate, a quota, a pause or (groups) a
        concurrency. The relay's max_connections is checked at fetch instead."""
        return bool(self.rate or self.daily_quota or self.pause
                    or (self.concurrency and self.name != RELAY))

    def matches(self, domain):
        if self.domains == ('*',):
            return True
        domain = domain.lower()
        return any(domain == d or (d.startswith('*.') and domain.endswith(d[1:]))
                   for d in self.domains)

    def configured(self):
        """The limits as configured, for `mailq check` and /api/destinations."""
        return {'domains': list(self.domains), 'rate': self.rate,
                'burst': self.bucket if self.rate else None,
                'concurrency': self.concurrency, 'daily_quota': self.daily_quota,
                'greeting_pause': self.pause}


def limiters_of(config):
    """The relay's limiter (when any [smtp] limit is set) and one per [throttle:NAME]."""
    smtp = config.smtp
    found = []
    if smtp.rate or smtp.max_connections or smtp.daily_quota or smtp.greeting_pause:
        found.append(Limiter(RELAY, rate=smtp.rate, burst=smtp.burst,
                             concurrency=smtp.max_connections, daily_quota=smtp.daily_quota,
                             pause=smtp.greeting_pause))
    for group in getattr(config, 'throttles', ()):
        found.append(Limiter(group.name, domains=tuple(group.domains), rate=group.rate,
                             burst=group.burst, concurrency=group.concurrency,
                             daily_quota=group.daily_quota))
    return tuple(found)


class Limits:
    def __init__(self, client, keys, scripts, config):
        self.redis, self.keys, self.scripts = client, keys, scripts
        self.all = limiters_of(config)
        self.lease = config.worker.heartbeat_timeout
        self.by_name = {lim.name: lim for lim in self.all}
        relay = self.by_name.get(RELAY)
        self.max_connections = (relay.concurrency or 0) if relay else 0
        self.on = bool(self.all)
        checked = [lim for lim in self.all if lim.per_mail]
        # claim.lua's block: KEYS and ARGV after its own (see its header)
        self.claim_keys = [keys.held, keys.events] + [k for lim in checked for k in (
            keys.limit(lim.name), keys.limit_slots(lim.name), keys.limit_sent(lim.name),
            keys.limit_waiting(lim.name))]
        self.claim_args = [len(checked), self.lease] if checked else [0]
        self.checks_claims = bool(checked)      # then claim.lua may hold, and tell webhooks
        for lim in checked:
            self.claim_args += [lim.name, lim.rate or 0, lim.bucket, lim.concurrency or 0
                                if lim.name != RELAY else 0, lim.daily_quota or 0,
                                ' '.join(['', *lim.domains, '']) if lim.domains != ('*',)
                                else '*', lim.step]
        # finish.lua's block: the session slots first (with max_connections), then the
        # slots a mail leaves, each with its waiting set, and the held set
        self.session_key = keys.limit_slots(RELAY) if self.max_connections else ''
        groups = [lim for lim in self.all if lim.concurrency and lim.name != RELAY]
        self.finish_keys = ([self.session_key] if self.max_connections else []) + \
            [k for lim in groups
             for k in (keys.limit_slots(lim.name), keys.limit_waiting(lim.name))] + \
            ([keys.held] if groups else [])
        self.slot_keys = [k for lim in self.all if lim.concurrency
                          for k in (keys.limit_slots(lim.name), keys.limit_free(lim.name))]

    # -- the worker's side

    def holder(self, worker_id, busy_field):
        """A thread's name as a session slot holder."""
        return f'{worker_id}|{busy_field}'

    def fetch_block(self, worker_id, busy_field, now):
        """fetch.lua's session slot key and args (empty ones without max_connections)."""
        if not self.max_connections:
            return '', [0, '', 0, 0]
        return self.session_key, [self.max_connections, self.holder(worker_id, busy_field),
                                  now, self.lease]

    def finish_block(self, worker_id, busy_field):
        """finish.lua's slots keys and args."""
        holder = self.holder(worker_id, busy_field) if self.max_connections else ''
        return self.finish_keys, [len(self.finish_keys), self.max_connections, holder,
                                  self.lease]

    def wait_for_slot(self, timeout):
        """Block up to `timeout` s for a session slot to be freed (a worker's stop frees
        them at once; a killed worker's when their leases end)."""
        self.redis.blpop([self.keys.limit_free(RELAY)], timeout=timeout)

    def needed(self, recipients):
        """The limiters a mail to `recipients` goes through."""
        domains = {r.rsplit('@', 1)[-1].lower() for r in recipients}
        return [lim for lim in self.all if any(lim.matches(d) for d in domains)]

    def throttled(self, recipients, reply, greeting=False, now=None):
        """A throttling reply to a mail to `recipients`: a 421 greeting pauses the relay
        (with greeting_pause), any other cuts the rate of the groups the mail needed,
        or else the relay's. Returns (ready time, [(limiter, before, after)] of the
        limiters changed), or None when no limiter can hold the mail (then it is
        retried as any 4xx)."""
        now = now or time.time()
        needed = self.needed(recipients)
        if greeting:
            targets = [lim for lim in needed if lim.pause]
        else:
            groups = [lim for lim in needed if lim.rate and lim.name != RELAY]
            targets = groups or [lim for lim in needed if lim.rate and lim.name == RELAY]
        if not targets:
            return None
        ready, changed = now, []
        for lim in targets:
            flag, before, after, at = self.scripts.limit_cut(
                keys=[self.keys.limit(lim.name)],
                args=[now, 'pause' if greeting else 'cut', lim.rate or 0, lim.step,
                      lim.floor, lim.pause or 0, reply[:300]])
            ready = max(ready, float(at))
            if int(flag):
                changed.append((lim, float(before), float(after)))
        return ready, changed

    def renew(self, worker_id, mail_ids, now=None):
        """Extend the leases of this worker's slots (its heartbeat, once a beat)."""
        if not self.slot_keys:
            return 0
        return self.scripts.limit_slots(
            keys=self.slot_keys, args=['renew', (now or time.time()) + self.lease,
                                       f'{worker_id}|', *mail_ids])

    def release(self, worker_id):
        """Free every slot of this worker (its stop)."""
        if not self.slot_keys:
            return 0
        return self.scripts.limit_slots(keys=self.slot_keys,
                                        args=['release', 0, f'{worker_id}|'])

    # -- reads: /api/destinations, the Destinations tab, /metrics

    def view(self, now=None, sample=2000):
        """One row per limiter: configured and current rate, tokens, slots in use, quota
        used in the last 24 h, mails held, the last throttling reply; and one per
        recipient domain of the held and queued mails (a sample of `sample` each), with
        the mails waiting by age (qshape's buckets)."""
        now = now or time.time()
        keys = self.keys
        pipe = self.redis.pipeline(transaction=False)
        for lim in self.all:
            pipe.hgetall(keys.limit(lim.name))
            pipe.zcount(keys.limit_slots(lim.name), now, '+inf')
            pipe.zcount(keys.limit_sent(lim.name), now - WINDOW, '+inf')
        pipe.zcard(keys.held)
        pipe.zrange(keys.held, 0, sample - 1, withscores=True)
        replies = pipe.execute()
        held_total, held = replies[-2], replies[-1]
        from .containers import task_mail_id
        pipe = self.redis.pipeline(transaction=False)
        ids = [task_mail_id(task) or '-' for task, _ in held]
        for mail_id in ids:
            pipe.hmget(keys.record(mail_id), 'held_by', 'rcpts', 'created_at')
        infos = pipe.execute() if ids else []
        held_by, domains = {}, {}
        for values in infos:
            by, rcpts, created = (v.decode() if v else '' for v in values)
            held_by[by] = held_by.get(by, 0) + 1
            age = now - float(created or now)
            for domain in {r.rsplit('@', 1)[-1].lower() for r in _json_list(rcpts)}:
                row = domains.setdefault(domain, {'domain': domain, 'held': 0,
                                                  'ages': {b: 0 for _, b in BUCKETS}})
                row['held'] += 1
                row['ages'][_bucket(age)] += 1
        rows = []
        for i, lim in enumerate(self.all):
            state, slots, sent = replies[3 * i: 3 * i + 3]
            state = {k.decode(): v.decode() for k, v in state.items()}
            rows.append(self._row(lim, state, slots, sent, held_by.get(lim.name, 0), now))
        return {'limiters': rows, 'held': held_total,
                'domains': sorted(domains.values(), key=lambda r: -r['held'])}

    @staticmethod
    def _row(lim, state, slots, sent, held, now):
        current, tokens = None, None
        if lim.rate:
            current = lim.rate
            if 'cut_rate' in state:
                current = min(lim.rate, float(state['cut_rate'])
                              + lim.step * max(0.0, now - float(state['cut_at'])))
            tokens = float(lim.bucket)
            if 'tokens' in state:
                tokens = min(lim.bucket, float(state['tokens'])
                             + max(0.0, now - float(state['ts'])) * current)
        paused = float(state.get('paused_until') or 0)
        return {'name': lim.name, **lim.configured(),
                'current_rate': round(current, 3) if current is not None else None,
                'tokens': round(tokens, 2) if tokens is not None else None,
                'slots_used': slots if lim.concurrency else None,
                'quota_used': sent if lim.daily_quota else None,
                'held': held, 'paused_until': paused if paused > now else None,
                'last_reply': state.get('last_reply'),
                'last_reply_at': float(state['last_reply_at'])
                if state.get('last_reply_at') else None}


def _bucket(age):
    return next(label for bound, label in BUCKETS if bound is None or age < bound)


def _json_list(text):
    try:
        value = json.loads(text) if text else []
    except ValueError:
        return []
    return value if isinstance(value, list) else []


__all__ = ['HELD', 'Limiter', 'Limits', 'RELAY', 'limiters_of']
