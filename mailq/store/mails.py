"""The mail records in Redis, and every state change of a mail.

A mail is a hash `<prefix>:m:<id>` of JSON-safe fields (never a pickle) plus a
list `<prefix>:m:<id>:log` with one JSON entry per delivery attempt. Its Huey
task (which carries only the mail id) sits in exactly one place at a time: a
queue list, the schedule or retry set, or a worker's in-flight list. Each state
change is one Lua script, so a crash between two steps cannot lose a mail.
"""
import datetime
import json
import time
from importlib import resources

from .keys import Keys  # noqa: F401  (re-exported)

# Upper bounds (seconds) of the delivery duration histogram that /metrics exposes.
DURATION_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60)


# A mail whose worker stopped (killed, crashed, shut down past its timeout) while
# sending it this many times is dead: it may be what kills the workers.
MAX_INTERRUPTIONS = 10


def _load_script(client, name):
    source = resources.files('mailq.store').joinpath('scripts', f'{name}.lua').read_text()
    return client.register_script(source)


def delivery_metric_fields(attempt):
    """(outcome:code class, histogram bucket, seconds) of one attempt, for finish.lua."""
    code = int(attempt.get('code') or 0)
    code_class = f'{code // 100}xx' if 200 <= code < 600 else 'none'
    duration = float(attempt.get('duration') or 0)
    le = next((str(b) for b in DURATION_BUCKETS if duration <= b), '+Inf')
    return f"{attempt['outcome']}:{code_class}", le, duration


def today(now=None):
    return datetime.datetime.fromtimestamp(now or time.time(), datetime.timezone.utc).strftime('%Y-%m-%d')


class Store:
    """Reads and state changes of mail records. Knows Redis, not SMTP or HTTP."""

    def __init__(self, client, keys, config):
        self.redis = client
        self.keys = keys
        self.worker_config = config.worker
        self.limits = config.limits
        self.outbox_max = config.smtp.outbox_max
        self.scripts = {name: _load_script(client, name) for name in
                        ('accept', 'take', 'finish', 'due', 'requeue', 'cancel',
                         'release')}

    # -- accept

    def accept(self, mail, task, pipe=None):
        """Store `mail` (a compose.Mail) and its first task. Returns the script's reply."""
        keys = self.keys
        if mail.send_at is not None and mail.send_at > time.time():
            mode, target, score, status = 'schedule', keys.schedule, mail.send_at, 'scheduled'
        else:
            mode, target, score, status = 'queue', keys.queue(mail.queue), 0, 'queued'
        idem = keys.idempotency(mail.idempotency_key) if mail.idempotency_key else ''
        fields = mail.record_fields(status=status, task=task)
        args = [mail.id, self.limits.idempotency_ttl, mode, score, task]
        for name, value in fields.items():
            args += [name, value]
        return self.scripts['accept'](
            keys=[keys.record(mail.id), idem, target, keys.wake(mail.queue)], args=args,
            client=pipe or self.redis)

    # -- worker side

    def take(self, worker_id, queue_order, busy_field, now=None):
        """Reliable fetch and claim in one script (take.lua): (queue, task, claim) or None,
        where claim is (sender, recipients, raw message, attempts)."""
        keys = self.keys
        reply = self.scripts['take'](
            keys=[keys.inflight(worker_id), keys.paused, keys.busy(worker_id)]
            + [keys.queue(q) for q in queue_order],
            args=[worker_id, busy_field, now or time.time(), keys.prefix, *queue_order])
        if not reply:
            return None
        queue, task, sender, rcpts, raw, attempts = reply
        return queue.decode(), task, (sender.decode(), json.loads(rcpts), raw, int(attempts))

    def finish(self, mail_id, task, worker_id, busy_field, outcome, attempt, *, last_error='',
               next_at=0, new_task='', rcpts='', outbox=False, now=None):
        """Record an attempt's outcome and acknowledge the task. `rcpts` (JSON), when
        given, narrows the envelope to the recipients still owed the mail."""
        keys, cfg = self.keys, self.worker_config
        now = now or time.time()
        day = today(now)
        target, score, keep, trim_count, trim_before = '', 0, 0, 0, 0
        if outcome == 'retrying':
            target, score = keys.retry, next_at
        elif outcome == 'dead':
            target, score = keys.dead, now
            trim_count, trim_before = cfg.dead_max, now - cfg.dead_max_days * 86400
        elif outbox:
            target, score, trim_count = keys.outbox, now, self.outbox_max
        else:
            keep = cfg.keep_sent_days * 86400
        return self.scripts['finish'](
            keys=[keys.record(mail_id), keys.log(mail_id), keys.inflight(worker_id),
                  keys.busy(worker_id), keys.stat('processed'), keys.stat('failed'),
                  keys.stat('processed', day), keys.stat('failed', day), target,
                  keys.stat('deliveries'), keys.stat('duration')],
            args=[task, busy_field, outcome, now, json.dumps(attempt), last_error, score,
                  new_task, keep, trim_count, trim_before, keys.record(''),
                  *delivery_metric_fields(attempt), rcpts])

    def release(self, mail_id, task, queue, worker_id, busy_field):
        """Give a fetched but unclaimed task back to the front of its queue."""
        keys = self.keys
        return self.scripts['release'](
            keys=[keys.inflight(worker_id), keys.busy(worker_id), keys.queue(queue),
                  keys.wake(queue), keys.record(mail_id)], args=[task, busy_field])

    def move_due(self, now=None, limit=1000):
        return self.scripts['due'](keys=[self.keys.schedule, self.keys.retry],
                                   args=[now or time.time(), self.keys.prefix, limit])

    def requeue_worker(self, worker_id, now=None):
        """Return a stopped or dead worker's in-flight tasks to their queues (a mail
        interrupted MAX_INTERRUPTIONS times goes dead); the number returned."""
        keys = self.keys
        return self.scripts['requeue'](
            keys=[keys.inflight(worker_id), keys.busy(worker_id), keys.worker(worker_id),
                  keys.workers, keys.dead],
            args=[worker_id, keys.prefix, MAX_INTERRUPTIONS, now or time.time()])

    # -- reads and admin

    def get(self, mail_id, with_raw=False):
        """The record as a dict of str values plus its attempts, or None."""
        pipe = self.redis.pipeline(transaction=False)
        pipe.hgetall(self.keys.record(mail_id))
        pipe.lrange(self.keys.log(mail_id), 0, -1)
        record, log = pipe.execute()
        if not record:
            return None
        raw = record.pop(b'raw', b'')
        mail = {k.decode(): v.decode() for k, v in record.items()}
        mail['attempt_log'] = [json.loads(entry) for entry in log]
        if with_raw:
            mail['raw'] = raw
        return mail

    def cancel(self, mail_id, now=None):
        keys = self.keys
        reply = self.scripts['cancel'](
            keys=[keys.record(mail_id), keys.schedule, keys.retry, keys.dead],
            args=[now or time.time(), keys.prefix, self.worker_config.keep_sent_days * 86400])
        return reply.decode() if isinstance(reply, bytes) else reply

    def queue_sizes(self, names):
        pipe = self.redis.pipeline(transaction=False)
        for name in names:
            pipe.llen(self.keys.queue(name))
        return dict(zip(names, pipe.execute()))

    def known_queues(self):
        return list(self.worker_config.queue_names)

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
        pipe.zrange(keys.workers, 0, -1)
        for name in queues:
            pipe.llen(keys.queue(name))
        processed, failed, scheduled, retrying, dead, workers, *sizes = pipe.execute()
        busy = 0
        if workers:
            pipe = self.redis.pipeline(transaction=False)
            for wid in workers:
                pipe.hlen(keys.busy(wid.decode()))
            busy = sum(pipe.execute())
        return {
            'processed': int(processed or 0), 'failed': int(failed or 0),
            'enqueued': sum(sizes), 'scheduled': scheduled, 'retrying': retrying,
            'dead': dead, 'busy': busy, 'queues': dict(zip(queues, sizes)),
        }
