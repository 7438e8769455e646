"""Cron state in Redis: claims, runs in progress, run history and pause flags.

Keys (keys.py), under the configured prefix (`mailq:`):

    cron:<job>           hash: since (first seen or resumed), last_fire, skip_mark
    cron:<job>:fired     zset of claimed fire times (epoch), forgotten after the
                         catch-up window has long passed
    cron:<job>:pending   hash fire time -> {token, worker, claimed_at}: claimed, not
                         yet recorded
    cron:<job>:runs      list of run JSON, newest first, the last HISTORY runs
    cron:paused          set of paused job names

A run is {fire_time, enqueued_at, outcome: ok|failed|skipped, mail_ids, error,
manual, worker} with times as epoch seconds; a skipped run adds `skipped`
(how many fire times) and `first_fire_time`.
"""
import json
from dataclasses import dataclass

HISTORY = 50


@dataclass(frozen=True)
class Cursor:
    """Where a job stands: fire times at or before `start` are accounted for."""
    since: float
    last_fire: float
    skip_mark: str        # as stored ('' when none): the skip script compares it as read

    @property
    def start(self):
        return max(self.since, self.last_fire, float(self.skip_mark or 0))


class CronState:
    def __init__(self, client, keys, scripts):
        self.redis, self.keys, self.scripts = client, keys, scripts

    # -- the ticker's steps

    def cursor(self, job, now):
        """The job's Cursor; a job seen for the first time starts now (nothing to catch up)."""
        pipe = self.redis.pipeline(transaction=False)
        pipe.hsetnx(self.keys.cron_job(job), 'since', now)
        pipe.hmget(self.keys.cron_job(job), 'since', 'last_fire', 'skip_mark')
        since, last_fire, skip_mark = pipe.execute()[1]
        return Cursor(float(since), float(last_fire or 0), (skip_mark or b'').decode())

    def claim(self, job, fire, now, token, worker, remember):
        """'ok' when this caller owns the run; else 'taken', 'paused' or 'skipped'."""
        pending = json.dumps({'token': token, 'worker': worker, 'claimed_at': now})
        reply = self.scripts.cron_claim(
            keys=[self.keys.cron_job(job), self.keys.cron_fired(job),
                  self.keys.cron_pending(job), self.keys.cron_paused],
            args=[job, fire, now, remember, pending])
        return reply.decode()

    def finish(self, job, fire, token, run):
        """Record the run (and release the claim holding `token`). False if not ours."""
        return bool(self.scripts.cron_finish(
            keys=[self.keys.cron_pending(job), self.keys.cron_runs(job)],
            args=[fire, token, json.dumps(run), HISTORY]))

    def skip(self, cursor, job, new_mark, run):
        """Record a skipped run unless another worker moved skip_mark first."""
        return bool(self.scripts.cron_skip(
            keys=[self.keys.cron_job(job), self.keys.cron_runs(job)],
            args=[cursor.skip_mark, new_mark, json.dumps(run), HISTORY]))

    def pending(self, job):
        """{fire time: (raw json, claim dict)} of claimed runs not yet recorded."""
        raw = self.redis.hgetall(self.keys.cron_pending(job))
        return {int(fire): (value, json.loads(value)) for fire, value in raw.items()}

    def reclaim(self, job, fire, raw, token, worker, now):
        pending = json.dumps({'token': token, 'worker': worker, 'claimed_at': now})
        return bool(self.scripts.cron_reclaim(
            keys=[self.keys.cron_pending(job)], args=[fire, raw, pending]))

    # -- reads and admin

    def history(self, job, limit=HISTORY):
        runs = self.redis.lrange(self.keys.cron_runs(job), 0, limit - 1)
        return [json.loads(run) for run in runs]

    def last_runs(self, jobs):
        """{job: its newest run or None}, in one round trip."""
        pipe = self.redis.pipeline(transaction=False)
        for job in jobs:
            pipe.lindex(self.keys.cron_runs(job), 0)
        return {job: json.loads(run) if run else None for job, run in zip(jobs, pipe.execute())}

    def paused(self):
        return {name.decode() for name in self.redis.smembers(self.keys.cron_paused)}

    def pause(self, job):
        self.redis.sadd(self.keys.cron_paused, job)

    def resume(self, job, now):
        """Unpause; fire times missed while paused are never caught up."""
        self.scripts.cron_resume(keys=[self.keys.cron_paused, self.keys.cron_job(job)],
                                 args=[job, now])

    def all_runs(self, jobs):
        """(paused job names, {job: its kept runs, newest first}), in one round trip."""
        pipe = self.redis.pipeline(transaction=False)
        pipe.smembers(self.keys.cron_paused)
        for job in jobs:
            pipe.lrange(self.keys.cron_runs(job), 0, -1)
        paused, *histories = pipe.execute()
        return ({name.decode() for name in paused},
                {job: [json.loads(run) for run in runs] for job, runs in zip(jobs, histories)})
