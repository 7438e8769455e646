"""Counters: attempts processed and failed (in all and per UTC day), deliveries by
outcome and code class, and the delivery duration histogram (finish.lua writes them);
SMTP submissions by result and reply class (the listener adds them)."""


class Stats:
    def __init__(self, client, keys):
        self.redis, self.keys = client, keys

    def per_day(self, days):
        """[(processed, failed)] for each of the given 'YYYY-MM-DD' days."""
        keys = self.keys
        values = self.redis.mget([keys.stat('processed', d) for d in days] +
                                 [keys.stat('failed', d) for d in days])
        return [(int(p or 0), int(f or 0)) for p, f in zip(values[:len(days)],
                                                           values[len(days):])]

    def totals(self):
        """Everything /metrics counts: {processed, failed, deliveries, duration,
        scheduled, retrying, dead, outbox, paused}, in one round trip."""
        keys = self.keys
        pipe = self.redis.pipeline(transaction=False)
        pipe.get(keys.stat('processed'))
        pipe.get(keys.stat('failed'))
        pipe.hgetall(keys.stat('deliveries'))
        pipe.hgetall(keys.stat('duration'))
        for key in (keys.schedule, keys.retry, keys.dead, keys.outbox):
            pipe.zcard(key)
        pipe.smembers(keys.paused)
        pipe.hgetall(keys.stat('submissions'))
        processed, failed, deliveries, duration, scheduled, retrying, dead, outbox, \
            paused, submissions = pipe.execute()
        return {
            'processed': int(processed or 0), 'failed': int(failed or 0),
            'deliveries': {k.decode(): int(v) for k, v in deliveries.items()},
            'duration': {k.decode(): float(v) for k, v in duration.items()},
            'scheduled': scheduled, 'retrying': retrying, 'dead': dead, 'outbox': outbox,
            'paused': {p.decode() for p in paused},
            'submissions': {k.decode(): int(v) for k, v in submissions.items()},
        }

    def add_submissions(self, counts):
        """Add the SMTP listener's {'accepted:2xx' | 'refused:4xx' | ...: n} counts."""
        pipe = self.redis.pipeline(transaction=False)
        for field, n in counts.items():
            pipe.hincrby(self.keys.stat('submissions'), field, n)
        pipe.execute()
