"""Huey storage with named queues and reliable fetch.

Huey's RedisStorage pops with BRPOP: a task popped by a worker that is then
killed is gone. Here a fetch moves the task into the worker's in-flight list
and then claims its mail (store.take), and the task leaves that list only
together with the recording of its outcome. In-flight tasks of a dead worker go
back to their queue (see heartbeat.py). Queues are tried in strict order
(`-q a -q b`) or in weighted random order (`-q a,3 -q b,1`), as in Sidekiq.
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
        self._next_trim = 0.0

    # -- queue API used by Huey

    def enqueue(self, data, priority=None):
        raise RuntimeError('mailq enqueues through store.accept (a task needs its record); '
                           'use mailq.send() or the HTTP API')

    def dequeue(self):
        """Claim the task fetched with the last outcome, or fetch and claim one
        (store.take); block up to read_timeout when idle."""
        if self.worker_id is None:
            raise RuntimeError('bind_worker() must be called before dequeue()')
        upcoming, self._local.upcoming = getattr(self._local, 'upcoming', None), None
        self._local.item = None
        if self.quiet.is_set():
            if upcoming:
                self.store.release(task_mail_id(upcoming[1]) or '-', upcoming[1], upcoming[0],
                                   self.worker_id, '')
            time.sleep(self.read_timeout)
            return None
        busy = busy_field()
        item = upcoming and self.store.claim(self.worker_id, *upcoming, busy)
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
        self._local.item = item
        return item[1] if item else None

    def next_order(self):
        """The queues to fetch this thread's next task from, together with the outcome
        of its current one; none once the worker is quiet."""
        return () if self.quiet.is_set() else queue_order(self.queues)

    def keep(self, upcoming):
        """Hold a task fetched with an outcome ((queue, task) or None) for the next
        dequeue of this thread."""
        self._local.upcoming = upcoming

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
        TRIM_EVERY seconds, bound the dead set and the outbox and sweep the search
        indexes; Huey has nothing left to enqueue."""
        self.store.move_due()
        now = time.monotonic()
        if now >= self._next_trim:
            self._next_trim = now + TRIM_EVERY
            self.store.trim()
        return []

    def schedule_size(self):
        return self.store.schedule.size() + self.store.retries.size()

    def scheduled_items(self, limit=None):
        return [task for task, _ in self.store.schedule.page(0, (limit or 0) - 1)]

    def flush_schedule(self):
        raise RuntimeError('delete scheduled mails through the dashboard or /api/scheduled')
