"""Huey storage with named queues and reliable fetch.

Huey's RedisStorage pops with BRPOP: a task popped by a worker that is then
killed is gone. Here a fetch moves the task into the worker's in-flight list
and claims its mail (one Lua call, take.lua), and the task leaves that list only
together with the recording of its outcome. In-flight tasks of a dead worker go back to
their queue (see heartbeat.py). Queues are tried in strict order (`-q a -q b`) or in weighted
random order (`-q a,3 -q b,1`), as in Sidekiq.
"""
import json
import os
import random
import threading
import time

from huey.storage import RedisStorage


def busy_field():
    """This thread's field in the worker's busy hash."""
    return f'{os.getpid()}:{threading.get_ident()}'


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
        self.keys = store.keys
        self.queues = list(queues)
        self.worker_id = None
        self.quiet = threading.Event()
        self._local = threading.local()

    # -- queue API used by Huey

    def enqueue(self, data, priority=None):
        queue = json.loads(data).get('kwargs', {}).get('queue') or self.queues[0][0]
        pipe = self.conn.pipeline()
        pipe.lpush(self.keys.queue(queue), data)
        pipe.lpush(self.keys.wake(queue), '1')
        pipe.ltrim(self.keys.wake(queue), 0, 99)
        pipe.execute()

    def dequeue(self):
        """Fetch and claim one task (store.take); block up to read_timeout when idle."""
        if self.worker_id is None:
            raise RuntimeError('bind_worker() must be called before dequeue()')
        if self.quiet.is_set():
            time.sleep(self.read_timeout)
            return None
        order = queue_order(self.queues)
        busy = busy_field()
        self._local.item = None
        item = self.store.take(self.worker_id, order, busy)
        if item is None:
            # Wait for a wake token pushed with every task, then try once more.
            self.conn.blpop([self.keys.wake(q) for q in order], timeout=self.read_timeout)
            item = self.store.take(self.worker_id, order, busy)
        self._local.item = item
        return item[1] if item else None

    def current(self):
        """(queue, task bytes, claim) of the task this thread took last."""
        return getattr(self._local, 'item', None)

    def bind_worker(self, worker_id, queues=None):
        self.worker_id = worker_id
        if queues:
            self.queues = list(queues)

    def queue_size(self):
        return sum(self.store.queue_sizes([q for q, _ in self.queues]).values())

    def enqueued_items(self, limit=None):
        items = []
        for queue, _ in self.queues:
            items += self.conn.lrange(self.keys.queue(queue), 0, (limit or 0) - 1)[::-1]
        return items[:limit] if limit else items

    def flush_queue(self):
        self.conn.delete(*[self.keys.queue(q) for q, _ in self.queues])

    # -- schedule API used by Huey's scheduler

    def add_to_schedule(self, data, ts, utc=True):
        self.conn.zadd(self.keys.schedule, {data: self.convert_ts(ts)})

    def read_schedule(self, ts):
        """Move due tasks onto their queues inside Redis; Huey has nothing left to enqueue."""
        self.store.move_due()
        return []

    def schedule_size(self):
        return self.conn.zcard(self.keys.schedule) + self.conn.zcard(self.keys.retry)

    def scheduled_items(self, limit=None):
        return self.conn.zrange(self.keys.schedule, 0, (limit or 0) - 1)

    def flush_schedule(self):
        self.conn.delete(self.keys.schedule)
