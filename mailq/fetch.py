"""Huey storage with named queues and reliable fetch.

Huey's RedisStorage pops with BRPOP: a task popped by a worker that is then
killed is gone. Here a fetch moves the task into the worker's in-flight list
and then claims its mail (store.take), and the task leaves that list only
together with the recording of its outcome. In-flight tasks of a dead worker go
back to their queue (see heartbeat.py). Queues are tried in strict order
(`-q a -q b`) or in weighted random order (`-q a,3 -q b,1`), as in Sidekiq.

A mail costs one Redis round trip while its queue is longer than every worker's
threads together: each outcome fetches the thread's task after next ahead (noted
in the worker's ahead hash, so the orphan sweep leaves it) and claims the one
fetched before, in one write. With a shorter queue nothing is fetched ahead (an
idle thread would wait for it): the outcome fetches the next task and the next
dequeue claims it, two round trips.
"""
import os
import random
import threading
import time

from huey.storage import RedisStorage

from .store.containers import task_mail_id
from .store.mails import NO_SLOT

# Seconds between two trims of the tick (the dead set, the outbox, a search index sweep
# step): a bound and a sweep need no more, and a step reads up to 1,024 records.
TRIM_EVERY = 1.0


_BUSY_FIELDS = {}      # thread ident -> busy field; twice a mail, and getpid is a syscall
os.register_at_fork(after_in_child=_BUSY_FIELDS.clear)


def busy_field():
    """This thread's field in the worker's busy hash."""
    ident = threading.get_ident()
    field = _BUSY_FIELDS.get(ident)
    if field is None:
        field = _BUSY_FIELDS[ident] = f'{os.getpid()}:{ident}'
    return field


def queue_order(queues, rng=random):
    """The order to try queues in for one fetch. `queues` is [(name, weight)]."""
    if not any(weight for _, weight in queues):
        return [name for name, _ in queues]
    names = [name for name, weight in queues for _ in range(max(weight, 1))]
    rng.shuffle(names)
    return list(dict.fromkeys(names))


class MailStorage(RedisStorage):
    """One Redis list per named queue; Huey's schedule replaced by our sets."""

    def __init__(self, store, connection_pool, queues, read_timeout=1):
        super().__init__(name=store.keys.prefix.rstrip(':'), connection_pool=connection_pool,
                         read_timeout=read_timeout)
        self.store = store
        self.queues = list(queues)
        self.worker_id = None
        self.quiet = threading.Event()
        self._local = threading.local()
        self.on_no_slot = lambda: None   # the worker closes this thread's SMTP session
        # A thread fetches ahead only from a queue longer than this (every worker's
        # threads, refreshed each TRIM_EVERY); None until known: no fetch ahead.
        self.ahead_min = None
        self._next_trim = 0.0

    # -- queue API used by Huey

    def enqueue(self, data, priority=None):
        raise RuntimeError('mailq enqueues through store.accept (a task needs its record); '
                           'use mailq.send() or the HTTP API')

    def dequeue(self):
        """The mail claimed with the last outcome; else claim the task fetched with it
        (fetching the next one ahead in the same round trip while the queue is long), or
        fetch and claim one (store.take); block up to read_timeout when idle."""
        if self.worker_id is None:
            raise RuntimeError('bind_worker() must be called before dequeue()')
        local = self._local
        claimed, upcoming = getattr(local, 'claimed', None), getattr(local, 'upcoming', None)
        local.claimed = local.upcoming = local.item = None
        local.from_memory = False
        if self.quiet.is_set():
            busy = busy_field()
            for held in (claimed, upcoming):
                if held:
                    self.store.release(task_mail_id(held[1]) or '-', held[1], held[0],
                                       self.worker_id, busy)
            time.sleep(self.read_timeout)
            return None
        busy = busy_field()
        item = claimed
        local.from_memory = bool(claimed)
        while not item and upcoming:
            item, upcoming = self._claim(upcoming, busy)
        local.upcoming = upcoming
        if not item:
            order = queue_order(self.queues)
            item = self.store.take(self.worker_id, order, busy)
            if item is None:
                # Wait for a wake token pushed with every task, then try once more.
                self.store.wait_for_work(order, self.read_timeout)
                item = self.store.take(self.worker_id, order, busy)
            if item == NO_SLOT:
                # Every session the relay allows is another thread's: this thread keeps
                # no session of its own, and waits (holding no mail) for a slot.
                self.on_no_slot()
                self.store.throttle.wait_for_slot(self.read_timeout)
                item = None
        local.item = item
        return item[1] if item else None

    def _claim(self, upcoming, busy):
        """(claimed item or None, task fetched ahead or None) for a fetched task."""
        if not self.ahead_min:
            return self.store.claim(self.worker_id, *upcoming, busy), None
        return self.store.claim_fetching_ahead(self.worker_id, *upcoming, busy,
                                               queue_order(self.queues), self.ahead_min)

    def after_outcome(self):
        """(queues to fetch from, fetch_min, task to claim) for the outcome of this
        thread's current mail: with a task fetched ahead, the outcome claims it and
        fetches the next ahead from a long queue; else it fetches the next task. Nothing
        once the worker is quiet (the task fetched ahead goes back at the next dequeue)."""
        if self.quiet.is_set():
            return (), 0, None
        upcoming, self._local.upcoming = getattr(self._local, 'upcoming', None), None
        if upcoming:
            return (queue_order(self.queues) if self.ahead_min else ()), self.ahead_min or 0, \
                upcoming
        return queue_order(self.queues), 0, None

    def keep(self, upcoming, claimed=None):
        """Hold what an outcome fetched ((queue, task) or None) and claimed ((queue,
        task, claim) or None) for the next dequeue of this thread."""
        self._local.upcoming = upcoming
        self._local.claimed = claimed

    def from_memory(self):
        """True when this thread's last dequeue was answered without Redis (the mail
        claimed with the last outcome): it tells nothing of whether Redis is back."""
        return getattr(self._local, 'from_memory', False)

    def current(self):
        """(queue, task bytes, claim) of the task this thread took last."""
        return getattr(self._local, 'item', None)

    def bind_worker(self, worker_id, queues=None):
        self.worker_id = worker_id
        if queues:
            self.queues = list(queues)

    def queue_size(self):
        return sum(self.store.queue(q).size() for q, _ in self.queues)

    def enqueued_items(self, limit=None):
        items = []
        for queue, _ in self.queues:
            items += [task for task, _ in self.store.queue(queue).page(0, -1)][::-1]
        return items[:limit] if limit else items

    def flush_queue(self):
        raise RuntimeError('clear a queue through the dashboard or /api/queues/<name>/clear, '
                           'which erases its mails too')

    # -- schedule API used by Huey's scheduler

    def add_to_schedule(self, data, ts, utc=True):
        raise RuntimeError('mailq schedules through store.accept (a task needs its record)')

    def read_schedule(self, ts):
        """Move due tasks onto their queues inside Redis (every tick) and, once every
        TRIM_EVERY seconds, bound the dead set and the outbox, sweep the search indexes
        and count every worker's threads (ahead_min); Huey has nothing left to enqueue."""
        self.store.move_due()
        now = time.monotonic()
        if now >= self._next_trim:
            self._next_trim = now + TRIM_EVERY
            self.store.trim()
            # Not with [smtp] max_connections: the outcome's fetch asks for the thread's
            # session slot, and a claim sent in the same write would go on without one.
            self.ahead_min = None if self.store.throttle.max_connections else \
                self.store.workers.threads() or None
        return []

    def schedule_size(self):
        return self.store.schedule.size() + self.store.retries.size()

    def scheduled_items(self, limit=None):
        return [task for task, _ in self.store.schedule.page(0, (limit or 0) - 1)]

    def flush_schedule(self):
        raise RuntimeError('delete scheduled mails through the dashboard or /api/scheduled')
