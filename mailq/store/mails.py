"""The mail records in Redis, and every state change of a mail.

A mail is a hash `<prefix>:m:<id>` of JSON-safe fields (never a pickle), a string
`<prefix>:m:<id>:attempts` with one JSON line per delivery attempt (records written
before it have a list `<prefix>:m:<id>:log` instead) and its message in
`<prefix>:m:<id>:body` (body.py). The record holds only short fields, so Redis keeps
it as a compact listpack. Its Huey
task (which carries only the mail id) sits in exactly one place at a time: a
queue list, the schedule or retry set, or a worker's in-flight list. Each state
change is one Lua script, so a crash between two steps cannot lose a mail.
"""
import datetime
import functools
import json
import time
from dataclasses import dataclass

import redis

from ..errors import Conflict

from . import body
from .containers import (Dead, Held, Outbox, Queue, Retries, Schedule, latencies,
                         task_mail_id, task_queue)
from .cron import CronState
from .hooks import Events, Suppressions
from .limits import Limits
from .record import MailRecord
from .scripts import Scripts, run_together
from .search import Index, index_keys, index_values, indexes_of_records
from .states import DEAD, FINAL_STATES, HELD, NOT_CANCELLABLE, QUEUED, RETRYING, SCHEDULED, SENT
from .stats import Stats
from .workers import Workers

# Upper bounds (seconds) of the delivery duration histogram that /metrics exposes.
DURATION_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60)
# A mail whose worker stopped (killed, crashed, shut down past its timeout) while
# sending it this many times is dead: it may be what kills the workers.
MAX_INTERRUPTIONS = 10
# Stale tasks one fetch may step over before it answers "nothing for now".
MAX_STALE = 1000
CHUNK = 1000
# Mails a call of accept_batch.lua stores (a larger batch is several calls in one
# MULTI/EXEC): enough that the call's own cost is spread thin; calls of 100 took Redis
# more a mail (33.5 us at 10 or 25, 39.7 at 100: medians of 11 rounds, box loaded).
BATCH_CALL = 25
# What take() answers when every session slot of the relay is another thread's.
NO_SLOT = 'noslot'


def delivery_metric_fields(attempt):
    """(outcome:code class, histogram bucket, seconds) of one attempt, for finish.lua."""
    code = int(attempt.get('code') or 0)
    code_class = f'{code // 100}xx' if 200 <= code < 600 else 'none'
    duration = float(attempt.get('duration') or 0)
    le = next((str(b) for b in DURATION_BUCKETS if duration <= b), '+Inf')
    return f"{attempt['outcome']}:{code_class}", le, duration


def today(now=None):
    """'YYYY-MM-DD' (UTC) of `now`: the day a per-day counter belongs to."""
    return _day(int((now or time.time()) // 86400))


@functools.lru_cache(maxsize=4)
def _day(days_since_epoch):
    """Formatted once a day, not once a mail."""
    return (EPOCH + datetime.timedelta(days=days_since_epoch)).strftime('%Y-%m-%d')


EPOCH = datetime.datetime(1970, 1, 1, tzinfo=datetime.timezone.utc)


@dataclass(frozen=True)
class Accepted:
    """What accept.lua answered: a new mail, or the earlier one of its idempotency key;
    the recipients it left off the envelope because they are suppressed."""
    id: str
    new: bool
    suppressed: tuple = ()
    all_suppressed: bool = False


@dataclass(frozen=True)
class Earlier:
    """The mail an idempotency key already names."""
    id: str
    status: str
    queue: str
    send_at: str
    request_hash: str


class Store:
    """Reads and state changes of mail records. Knows Redis, not SMTP or HTTP."""

    def __init__(self, client, keys, config):
        self.redis = client
        self.keys = keys
        self.worker_config = config.worker
        self.limits = config.limits
        self.outbox_max = config.smtp.outbox_max
        self.scripts = Scripts(client)
        self.schedule = Schedule(client, keys, self.scripts, keys.schedule)
        self.retries = Retries(client, keys, self.scripts, keys.retry)
        self.dead = Dead(client, keys, self.scripts, keys.dead)
        self.outbox = Outbox(client, keys, self.scripts, keys.outbox)
        self.held = Held(client, keys, self.scripts, keys.held)
        self.workers = Workers(client, keys)
        self.stats = Stats(client, keys)
        self.cron = CronState(client, keys, self.scripts)
        self.events = Events(client, keys, self.scripts, getattr(config, 'webhooks', ()))
        self.suppressions = Suppressions(client, keys, self.scripts)
        self.throttle = Limits(client, keys, self.scripts, config)
        self.index = Index(client, keys, self.scripts)

    def live_events(self):
        """A subscription to the events channel (store/live.py), for GET /api/events."""
        from .live import LiveEvents
        return LiveEvents(self.redis, self.keys)

    def queue(self, name):
        return Queue(self.redis, self.keys, self.scripts, name)

    def list_container(self, kind):
        """The container of a states.LISTS kind."""
        return next(box for box in (self.schedule, self.retries, self.dead, self.outbox,
                                    self.held) if box.kind.name == kind)

    def known_queues(self):
        return list(self.worker_config.queue_names)

    # -- accept

    def accept(self, mail, task, request_hash='', pipe=None):
        """Store `mail` (a compose.Mail) and its first task. Returns an Accepted, or with
        `pipe` the pending reply, for accepted()."""
        keys, args = self.accept_call(mail, task, request_hash)
        reply = self.scripts.accept(keys=keys, args=args, client=pipe or self.redis)
        return reply if pipe is not None else accepted(reply)

    def accept_call(self, mail, task, request_hash):
        """The KEYS and ARGV of accept.lua for one mail."""
        keys = self.keys
        if mail.send_at is not None and mail.send_at > time.time():
            mode, target, score, status = 'schedule', keys.schedule, mail.send_at, SCHEDULED
        else:
            mode, target, score, status = 'queue', keys.queue(mail.queue), 0, QUEUED
        idem = keys.idempotency(mail.idempotency_key) if mail.idempotency_key else ''
        fields = mail.record_fields(status=status, task=task)
        if request_hash:
            fields['request_hash'] = request_hash
        events = self.events
        indexes, index_fields = index_keys(keys, index_values(
            mail.recipients, mail.message_id, mail.idempotency_key))
        args = [mail.id, self.limits.idempotency_ttl, mode, score, task, time.time(),
                self.worker_config.keep_sent_days * 86400, body.pack(mail.raw),
                len(events.streams), *events.subscriptions, len(index_fields), *index_fields]
        for name, value in fields.items():
            args += [name, value]
        return ([keys.record(mail.id), idem, target, keys.wake(mail.queue), keys.suppressed,
                 keys.events, keys.body(mail.id), *events.streams, *indexes], args)

    def accept_each(self, items):
        """Store each (mail, task, request hash) on its own, all in one round trip (no
        MULTI: one refused leaves the others stored). Returns, in order, the Accepted or
        the exception of each script; a lost connection raises for all."""
        calls = [self.accept_call(*item) for item in items]
        replies = self.scripts.accept.run_each(calls)
        return [r if isinstance(r, Exception) else accepted(r) for r in replies]

    def accept_all(self, items):
        """Store every (mail, task, request hash) or none, in one MULTI/EXEC. An
        idempotency key that names an earlier mail of another request (or two mails of
        this batch with different requests) raises Conflict before anything is written;
        the keys are WATCHed, so one written meanwhile makes the check run again."""
        idem = [self.keys.idempotency(m.idempotency_key) for m, _, _ in items
                if m.idempotency_key]
        if not idem:        # nothing to WATCH: one MULTI/EXEC packed by hiredis
            calls = [batch_call([self.accept_call(*item) for item in items[i:i + BATCH_CALL]])
                     for i in range(0, len(items), BATCH_CALL)]
            return [accepted(reply) for replies in self.scripts.accept_batch.run_all(calls)
                    for reply in replies]
        with self.redis.pipeline(transaction=True) as pipe:
            while True:
                try:
                    if idem:
                        pipe.watch(*idem)
                        self._check_reused_keys(pipe, items)
                        pipe.multi()
                    for mail, task, request_hash in items:
                        self.accept(mail, task, request_hash, pipe=pipe)
                    return [accepted(reply) for reply in pipe.execute()]
                except redis.WatchError:
                    continue

    def _check_reused_keys(self, client, items):
        seen = {}
        for mail, _, request_hash in items:
            key = mail.idempotency_key
            if key and request_hash and seen.setdefault(key, request_hash) != request_hash:
                raise reused_key(key, 'another mail of this batch')
        keys = list(seen)
        ids = client.mget([self.keys.idempotency(k) for k in keys]) if keys else []
        for key, mail_id in zip(keys, ids):
            if mail_id:
                earlier = self.earlier(mail_id.decode(), client)
                if earlier.request_hash and earlier.request_hash != seen[key]:
                    raise reused_key(key, f'mail {earlier.id}')

    def earlier(self, mail_id, client=None):
        """The Earlier of a mail an idempotency key named (its record may have expired)."""
        values = (client or self.redis).hmget(self.keys.record(mail_id), 'status', 'queue',
                                              'send_at', 'request_hash')
        status, queue, send_at, request_hash = (v.decode() if v else '' for v in values)
        return Earlier(mail_id, status, queue, send_at, request_hash)

    # -- worker side

    def take(self, worker_id, queue_order, busy_field, now=None):
        """Reliable fetch (fetch.lua), then the claim of its mail (claim.lua):
        (queue, task, claim) or None, where claim is (sender, recipients, raw, attempts,
        recipients suppressed since the mail was accepted); NO_SLOT when the relay's
        session slots ([smtp] max_connections) are all other threads'. A mail held by
        a limiter is stepped over, as a stale task is.
        Between the two the task is in the in-flight list, so a crash loses nothing."""
        for _ in range(MAX_STALE):
            fetched = self.scripts.fetch(*self._fetch_call(worker_id, queue_order, busy_field,
                                                           now, 0))
            if not fetched:
                return None
            if fetched == NO_SLOT.encode():
                return NO_SLOT
            item = self.claim(worker_id, fetched[0].decode(), fetched[1], busy_field, now)
            if item:
                return item
        return None

    def claim(self, worker_id, queue, task, busy_field, now=None):
        """Claim the mail of a task this worker fetched: (queue, task, claim), or None
        for a stale task, which leaves the in-flight list, and for a mail a limiter
        holds, which goes to the held set."""
        reply = self.scripts.claim(*self._claim_call(worker_id, queue, task, busy_field, now))
        return _claimed(queue, task, reply)

    def claim_fetching_ahead(self, worker_id, queue, task, busy_field, queue_order, min_len,
                             now=None):
        """Fetch the thread's next task ahead (only from a queue holding more than
        `min_len`), then claim `task`, in one round trip: (claimed item or None, (queue,
        task) fetched ahead or None). The next outcome then carries the next claim."""
        fetch, claim = self._together(
            (self.scripts.fetch, self._fetch_call(worker_id, queue_order, busy_field, now,
                                                  min_len)),
            (self.scripts.claim, self._claim_call(worker_id, queue, task, busy_field, now)))
        ahead = (fetch[0].decode(), fetch[1]) if fetch and fetch != NO_SLOT.encode() else None
        return _claimed(queue, task, claim), ahead

    def _fetch_call(self, worker_id, queue_order, busy_field, now, min_len):
        keys = self.keys
        slot_key, slot_args = self.throttle.fetch_block(worker_id, busy_field,
                                                        now or time.time())
        return ([keys.inflight(worker_id), keys.paused, keys.busy(worker_id), slot_key,
                 keys.ahead(worker_id), *(keys.queue(q) for q in queue_order)],
                [busy_field, *slot_args, min_len, *queue_order])

    def _claim_call(self, worker_id, queue, task, busy_field, now):
        keys = self.keys
        mail_id = task_mail_id(task) or '-'
        limits, events = self.throttle, self.events
        hooks_keys, hooks_args = (events.streams, [len(events.streams), *events.subscriptions]) \
            if limits.checks_claims else ((), ())
        return ([keys.record(mail_id), keys.inflight(worker_id), keys.busy(worker_id),
                 keys.suppressed, *limits.claim_keys, *hooks_keys, keys.ahead(worker_id),
                 keys.body(mail_id)],
                [task, mail_id, queue, worker_id, busy_field, now or time.time(),
                 len(FINAL_STATES), *FINAL_STATES, *limits.claim_args, *hooks_args])

    @staticmethod
    def _together(*calls):
        """Replies of (script, (keys, args)) calls sent in one write; raises the first
        error among them (an outage: the caller retries them all, as it would one)."""
        replies = run_together([(script, keys, args) for script, (keys, args) in calls])
        for reply in replies:
            if isinstance(reply, Exception):
                raise reply
        return replies

    def wait_for_work(self, queue_order, timeout):
        """Block up to `timeout` s for a wake token of one of the queues."""
        self.redis.blpop([self.keys.wake(q) for q in queue_order],
                                     timeout=timeout)

    def finish(self, mail_id, task, worker_id, busy_field, outcome, attempt, *, last_error='',
               next_at=0, new_task='', rcpts='', outbox=False, now=None, event=None,
               suppress=None, refused_for_good=False, suppressed_now=(), then_fetch=(),
               fetch_min=0, then_claim=None, staging='', pipe=None):
        """Record an attempt's outcome and acknowledge the task. `rcpts` (JSON), when
        given, narrows the envelope to the recipients still owed the mail. In the same
        script: `suppress` ({normalised address: info}) goes on the suppression list,
        `suppressed_now` (recipients found suppressed at delivery) is noted on the
        record, and the outcome's event is written for the endpoints that take it;
        `event` is {'recipients': [...], 'code', 'reply'} for its body. With
        `then_fetch` (a queue order), the thread's next task is fetched in the same call
        (with `fetch_min`, only from a queue holding more than that: a fetch ahead).
        `staging` (JSON) is what [smtp] allow_recipients or redirect_to did to this
        attempt, noted on the record. The outcome is published on the events channel and
        counted per outcome and queue for the day. A sent mail's body key expires after
        keep_sent_bodies (the outbox keeps it), its record after keep_sent_days.
        Returns (1 recorded or 0 stale, (queue, task) fetched or None), or with `pipe`
        (the bench's history fill) the pending reply. With `then_claim` ((queue, task)
        the thread fetched ahead), that task is claimed right after, in the same round
        trip, and the claimed item (or None) is returned third."""
        keys, cfg = self.keys, self.worker_config
        now = now or time.time()
        day = today(now)
        target, score, keep = '', 0, 0
        if outcome == HELD:
            target, score = keys.held, next_at
        elif outcome == RETRYING:
            target, score = keys.retry, next_at
        elif outcome == DEAD:
            target, score = keys.dead, now
        elif outbox and outcome == SENT:
            target, score = keys.outbox, now
        else:
            keep = cfg.keep_sent_days * 86400
        events = self.events
        event = event or {}
        slot_keys, slot_args = self.throttle.finish_block(worker_id, busy_field)
        call = (
            [keys.record(mail_id), keys.log(mail_id), keys.inflight(worker_id),
             keys.busy(worker_id), keys.stat('processed'), keys.stat('failed'),
             keys.stat('processed', day), keys.stat('failed', day), target,
             keys.stat('deliveries'), keys.stat('duration'), keys.suppressed,
             keys.suppressed_order, keys.events, keys.stat('outcomes', day),
             keys.body(mail_id), keys.attempts(mail_id), *events.streams, *slot_keys,
             keys.paused, keys.ahead(worker_id),
             *(keys.queue(q) for q in then_fetch)],
            [task, busy_field, outcome, now, json.dumps(attempt), last_error, score,
             new_task, keep, mail_id, *delivery_metric_fields(attempt), rcpts,
             f'mail.{outcome}', json.dumps(event['recipients']) if event else '',
             event.get('code') or 0, event.get('reply') or '',
             json.dumps({a: json.dumps(i) for a, i in suppress.items()}) if suppress
             else '', '1' if refused_for_good else '',
             json.dumps(list(suppressed_now)) if suppressed_now else '', staging,
             0 if outbox else cfg.sent_body_ms, len(events.streams),
             *events.subscriptions, *slot_args, fetch_min, *then_fetch])
        if pipe is not None:
            return self.scripts.finish(*call, client=pipe)
        if then_claim is None:
            recorded, *fetched = self.scripts.finish(*call)
            return recorded, (fetched[0].decode(), fetched[1]) if fetched else None
        (recorded, *fetched), claim = self._together(
            (self.scripts.finish, call),
            (self.scripts.claim, self._claim_call(worker_id, *then_claim, busy_field, now)))
        return (recorded, (fetched[0].decode(), fetched[1]) if fetched else None,
                _claimed(then_claim[0], then_claim[1], claim))

    def release(self, mail_id, task, queue, worker_id, busy_field):
        """Give a fetched but unfinished task back to its queue, to be fetched next."""
        keys = self.keys
        return self.scripts.release(
            keys=[keys.inflight(worker_id), keys.busy(worker_id), keys.queue(queue),
                  keys.wake(queue), keys.record(mail_id), keys.ahead(worker_id)],
            args=[task, busy_field])

    def move_due(self, now=None, limit=CHUNK):
        """Put due scheduled and retrying mails on their queues. Returns how many."""
        now = now or time.time()
        moved = 0
        for key in (self.keys.schedule, self.keys.retry, self.keys.held):
            tasks = self.redis.zrangebyscore(key, '-inf', now, start=0, num=limit)
            if tasks:
                keys = [key, self.keys.events]
                for task in tasks:
                    queue = task_queue(task) or self.worker_config.default_queue
                    keys += [self.keys.record(task_mail_id(task) or '-'),
                             self.keys.queue(queue), self.keys.wake(queue)]
                moved += self.scripts.due(keys=keys, args=tasks)
        return moved

    def trim(self, now=None):
        """Bound the dead set (dead_max, dead_max_days) and the outbox (outbox_max); take one
        sweep step through the search indexes and the suppression list's ended entries."""
        cfg = self.worker_config
        now = now or time.time()
        trimmed = (self.dead.trim(cfg.dead_max, now - cfg.dead_max_days * 86400)
                   + self.outbox.trim(self.outbox_max))
        self.index.sweep()
        self.suppressions.expire_step(now)
        return trimmed

    def requeue_worker(self, worker_id, now=None):
        """Return a stopped or dead worker's in-flight tasks to their queues (a mail
        interrupted MAX_INTERRUPTIONS times goes dead), then forget the worker.
        Returns the number requeued."""
        keys = self.keys
        count = 0
        while True:
            tasks = self.redis.lrange(keys.inflight(worker_id), 0, CHUNK - 1)
            events = self.events
            script_keys = [keys.inflight(worker_id), keys.busy(worker_id),
                           keys.worker(worker_id), keys.workers, keys.dead, *events.streams]
            args = [worker_id, MAX_INTERRUPTIONS, now or time.time(), len(events.streams),
                    *events.subscriptions]
            for task in tasks:
                mail_id = task_mail_id(task) or '-'
                queue = task_queue(task) or self.worker_config.default_queue
                script_keys += [keys.record(mail_id), keys.log(mail_id),
                                keys.attempts(mail_id), keys.queue(queue), keys.wake(queue)]
                args += [task, mail_id]
            script_keys.append(keys.ahead(worker_id))
            requeued, left = self.scripts.requeue(keys=script_keys, args=args)
            count += requeued
            if not left or not tasks:
                return count

    # -- reads

    def get(self, mail_id, with_raw=False):
        """The MailRecord of `mail_id`, or None."""
        pipe = self.redis.pipeline(transaction=False)
        pipe.hgetall(self.keys.record(mail_id))
        pipe.lrange(self.keys.log(mail_id), 0, -1)
        pipe.get(self.keys.attempts(mail_id))
        (pipe.get if with_raw else pipe.exists)(self.keys.body(mail_id))
        record, log, attempts, stored = pipe.execute()
        return MailRecord.from_redis(record, log + (attempts or b'').splitlines(), stored,
                                     with_raw)

    def note_release(self, mail_id, copy_id, recipients, at):
        """Note on a caught mail that a copy of it was released (one field per release)."""
        pipe = self.redis.pipeline(transaction=False)
        pipe.hset(self.keys.record(mail_id), f'released:{copy_id}',
                  json.dumps({'id': copy_id, 'to': recipients, 'at': at}))
        pipe.publish(self.keys.events, json.dumps({'type': 'mail', 'id': mail_id,
                                                   'status': 'released', 'copy': copy_id}))
        pipe.execute()

    def status(self, mail_id):
        value = self.redis.hget(self.keys.record(mail_id), 'status')
        return value.decode() if value is not None else None

    def raw(self, mail_id):
        """The message as it is sent, or None (no such mail, or its body has expired)."""
        pipe = self.redis.pipeline(transaction=False)
        pipe.get(self.keys.body(mail_id))
        pipe.hget(self.keys.record(mail_id), 'raw')     # a record of the older layout
        stored, inline = pipe.execute()
        return body.unpack(stored) if stored is not None else inline

    def counts(self):
        """Totals for the summary bar and /api/stats, in two round trips."""
        keys = self.keys
        queues = self.known_queues()
        pipe = self.redis.pipeline(transaction=False)
        pipe.get(keys.stat('processed'))
        pipe.get(keys.stat('failed'))
        pipe.zcard(keys.schedule)
        pipe.zcard(keys.retry)
        pipe.zcard(keys.dead)
        pipe.zcard(keys.held)
        pipe.zrange(keys.workers, 0, -1)
        for name in queues:
            pipe.llen(keys.queue(name))
        processed, failed, scheduled, retrying, dead, held, workers, *sizes = pipe.execute()
        busy = self.workers.busy_count([w.decode() for w in workers])
        return {
            'processed': int(processed or 0), 'failed': int(failed or 0),
            'enqueued': sum(sizes), 'scheduled': scheduled, 'retrying': retrying,
            'dead': dead, 'held': held, 'busy': busy, 'queues': dict(zip(queues, sizes)),
        }

    def queue_latencies(self, names, now=None):
        """{queue: (size, latency seconds)}: the one reading behind the Queues tab and
        /metrics."""
        return latencies(self.redis, self.keys, names, now or time.time())

    def paused_queues(self):
        return {name.decode() for name in self.redis.smembers(self.keys.paused)}

    def set_paused(self, name, paused):
        (self.redis.sadd if paused else self.redis.srem)(self.keys.paused, name)

    def server_info(self, section=None):
        """Redis's INFO (of one section), for the Redis box and /healthz."""
        return self.redis.info(section) if section else self.redis.info()

    # -- state changes by hand (dashboard and admin API)

    def cancel(self, mail_id, now=None):
        """'ok', 'missing', or the status that forbids cancelling."""
        keys = self.keys
        for _ in range(10):
            queue = (self.redis.hget(keys.record(mail_id), 'queue') or b'').decode()
            events = self.events
            reply = self.scripts.cancel(
                keys=[keys.record(mail_id), keys.log(mail_id), keys.queue(queue),
                      keys.schedule, keys.retry, keys.dead, keys.outbox, keys.held,
                      keys.events, keys.body(mail_id), keys.attempts(mail_id), *events.streams],
                args=[now or time.time(), self.worker_config.keep_sent_days * 86400,
                      mail_id, queue, ' '.join(['', *NOT_CANCELLABLE, '']),
                      len(events.streams), *events.subscriptions]).decode()
            if reply != 'moved':
                return reply
        return 'moved'

    def _queues_of(self, ids):
        pipe = self.redis.pipeline(transaction=False)
        for mail_id in ids:
            pipe.hget(self.keys.record(mail_id), 'queue')
        return [(q or b'').decode() for q in pipe.execute()]

    def erase(self, status, ids):
        """Delete mails still in `status` for good. Returns the ids erased."""
        keys = self.keys
        script_keys = [keys.schedule, keys.retry, keys.dead, keys.outbox, keys.held,
                       keys.events]
        args = [status]
        for mail_id, queue, (indexes, fields) in zip(ids, self._queues_of(ids),
                                                     indexes_of_records(self.redis, keys, ids)):
            script_keys += [keys.record(mail_id), keys.log(mail_id), keys.attempts(mail_id),
                            keys.body(mail_id), keys.queue(queue), *indexes]
            args += [mail_id, queue, len(fields), *fields]
        return [i.decode() for i in self.scripts.admin_delete(keys=script_keys, args=args)]

    def kill(self, ids, now=None):
        """Move retrying mails to dead now. Returns the ids killed."""
        now = now or time.time()
        events = self.events
        keys = [self.keys.retry, self.keys.dead, self.keys.events, *events.streams] + \
            [self.keys.record(i) for i in ids]
        killed = [i.decode() for i in self.scripts.admin_kill(
            keys=keys, args=[now, len(events.streams), *events.subscriptions, *ids])]
        self.trim(now)
        return killed

    def enqueue_now(self, status, ids, new_task, now=None):
        """Put mails still in `status` on their queue with a fresh task from
        `new_task(mail_id, queue)`. Returns the ids moved."""
        keys = self.keys
        script_keys = [keys.schedule, keys.retry, keys.dead, keys.events]
        args = [status, now or time.time()]
        for mail_id, queue in zip(ids, self._queues_of(ids)):
            if queue:
                script_keys += [keys.record(mail_id), keys.queue(queue), keys.wake(queue)]
                args += [mail_id, queue, new_task(mail_id, queue)]
        return [i.decode() for i in self.scripts.admin_enqueue(keys=script_keys, args=args)]


def batch_call(calls):
    """The KEYS and ARGV of accept_batch.lua for the (KEYS, ARGV) of accept.lua of each
    mail."""
    keys, counts, args = [], [len(calls)], []
    for mail_keys, mail_args in calls:
        keys += mail_keys
        args += mail_args
        counts += (len(mail_keys), len(mail_args))
    return keys, counts + args


def reused_key(key, used_by):
    return Conflict(f'idempotency key {key!r} was already used for {used_by} with a '
                    f'different request')


def accepted(reply):
    """The Accepted of an accept.lua reply."""
    suppressed = reply[2] if len(reply) > 2 else b''
    return Accepted(reply[1].decode() if isinstance(reply[1], bytes) else reply[1],
                    int(reply[0]) == 1, tuple(json.loads(suppressed)) if suppressed else (),
                    len(reply) > 3 and int(reply[3]) == 1)


def _claimed(queue, task, reply):
    """The (queue, task, claim) of a claim.lua reply, or None (stale, or held)."""
    if not reply or len(reply) == 3:      # stale, or {'held', ready, limiter}
        return None
    sender, rcpts, raw, attempts, suppressed, *relay = reply
    return queue, task, (sender.decode(), json.loads(rcpts), body.unpack(raw), int(attempts),
                         json.loads(suppressed) if suppressed else [],
                         relay[0].decode() if relay else '')
