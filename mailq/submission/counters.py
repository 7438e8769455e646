"""Counts of submissions by result and reply class, kept in memory and added to Redis
about once a second (through the store), so /metrics of any web instance shows every
listener without one more Redis write per mail."""
import collections
import logging
import threading

import redis

log = logging.getLogger('mailq.submission')
FLUSH_INTERVAL = 1.0


class Counters:
    def __init__(self, store):
        self.store = store
        self.pending = collections.Counter()
        self.lock = threading.Lock()

    def count(self, reply):
        """One transaction's outcome: 'accepted:2xx', 'refused:4xx' or 'refused:5xx'."""
        result = 'accepted' if reply.startswith('2') else 'refused'
        with self.lock:
            self.pending[f'{result}:{reply[:1]}xx'] += 1

    def flush(self):
        with self.lock:
            counts, self.pending = self.pending, collections.Counter()
        if not counts:
            return
        try:
            self.store.stats.add_submissions(counts)
        except redis.RedisError:        # Redis down: keep them for the next flush
            with self.lock:
                self.pending.update(counts)
