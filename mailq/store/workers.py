"""Live worker processes: their heartbeats, what each thread is sending, their commands.

Beats are in Redis's own clock, so hosts need not agree on the time.
"""
import json

COMMAND_TTL = 60


class Workers:
    def __init__(self, client, keys):
        self.redis, self.keys = client, keys

    def redis_time(self):
        """Seconds since the epoch by the Redis server's clock."""
        seconds, micros = self.redis.time()
        return seconds + micros / 1e6

    def beat(self, worker_id, info, ttl, now):
        """Record a beat at `now` with the worker's details; returns a command waiting
        for it ('quiet', 'stop') or None."""
        keys = self.keys
        pipe = self.redis.pipeline(transaction=False)
        pipe.hset(keys.worker(worker_id), mapping={**info, 'beat': now})
        pipe.expire(keys.worker(worker_id), ttl)
        pipe.zadd(keys.workers, {worker_id: now})
        pipe.lpop(keys.commands(worker_id))
        command = pipe.execute()[-1]
        return command.decode() if command else None

    def ids(self):
        return [w.decode() for w in self.redis.zrange(self.keys.workers, 0, -1)]

    def beats(self):
        """[(worker id, last beat)], oldest beat first."""
        return [(w.decode(), beat) for w, beat in
                self.redis.zrange(self.keys.workers, 0, -1, withscores=True)]

    def beat_of(self, worker_id):
        """The last beat of a worker, or None when it is not registered."""
        return self.redis.zscore(self.keys.workers, worker_id)

    def silent_since(self, cutoff):
        """Workers whose last beat is at or before `cutoff` (Redis time)."""
        return [w.decode() for w in self.redis.zrangebyscore(self.keys.workers, '-inf', cutoff)]

    def pid_namespace(self, worker_id):
        value = self.redis.hget(self.keys.worker(worker_id), 'pidns')
        return value.decode() if value is not None else None

    def in_flight(self, worker_id):
        """(tasks in the worker's in-flight list, ids of the mails its threads hold,
        tasks its threads fetched ahead and hold unclaimed)."""
        pipe = self.redis.pipeline(transaction=False)
        pipe.lrange(self.keys.inflight(worker_id), 0, -1)
        pipe.hvals(self.keys.busy(worker_id))
        pipe.hvals(self.keys.ahead(worker_id))
        tasks, busy, ahead = pipe.execute()
        return tasks, {json.loads(entry)['id'] for entry in busy}, set(ahead)

    def threads(self):
        """Delivery threads of every registered worker together: a thread fetches a task
        ahead only from a queue longer than that (no idle thread then goes without)."""
        pipe = self.redis.pipeline(transaction=False)
        for wid in self.ids():
            pipe.hget(self.keys.worker(wid), 'concurrency')
        return sum(int(n) for n in pipe.execute() if n and n.isdigit())

    def busy_count(self, ids):
        """Threads sending a mail right now, over the given workers."""
        if not ids:
            return 0
        pipe = self.redis.pipeline(transaction=False)
        for wid in ids:
            pipe.hlen(self.keys.busy(wid))
        return sum(pipe.execute())

    def details(self):
        """[(worker id, details hash, busy hash)] of every registered worker."""
        ids = self.ids()
        pipe = self.redis.pipeline(transaction=False)
        for wid in ids:
            pipe.hgetall(self.keys.worker(wid))
            pipe.hgetall(self.keys.busy(wid))
        replies = pipe.execute()
        return list(zip(ids, replies[0::2], replies[1::2]))

    def slots(self, with_beats):
        """[(concurrency, queues json, busy threads)] of the given (id, beat) pairs."""
        pipe = self.redis.pipeline(transaction=False)
        for wid, _ in with_beats:
            pipe.hmget(self.keys.worker(wid), 'concurrency', 'queues')
            pipe.hlen(self.keys.busy(wid))
        replies = pipe.execute()
        return [(info[0], info[1], busy) for info, busy in zip(replies[0::2], replies[1::2])]

    def command(self, worker_id, command):
        """Queue a command for a live worker; False when no such worker beats."""
        if self.redis.zscore(self.keys.workers, worker_id) is None:
            return False
        pipe = self.redis.pipeline(transaction=True)
        pipe.rpush(self.keys.commands(worker_id), command)
        pipe.expire(self.keys.commands(worker_id), COMMAND_TTL)
        pipe.execute()
        return True
