"""Cron state in Redis: claims, runs in progress, run history and pause flags.

Keys, under the configured prefix (`mailq:`):

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
import weakref
from dataclasses import dataclass

from ..store import _load_script

HISTORY = 50
SCRIPTS = ('cron_claim', 'cron_finish', 'cron_skip', 'cron_reclaim', 'cron_resume')


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
    def __init__(self, client, prefix):
        self.redis = client
        self.prefix = prefix + ':cron:'
        self.scripts = {name: _load_script(client, name) for name in SCRIPTS}

    def key(self, job, part=None):
        return f'{self.prefix}{job}' + (f':{part}' if part else '')

    @property
    def paused_key(self):
        return self.prefix + 'paused'

    # -- the ticker's steps

    def cursor(self, job, now):
        """The job's Cursor; a job seen for the first time starts now (nothing to catch up)."""
        pipe = self.redis.pipeline(transaction=False)
        pipe.hsetnx(self.key(job), 'since', now)
        pipe.hmget(self.key(job), 'since', 'last_fire', 'skip_mark')
        since, last_fire, skip_mark = pipe.execute()[1]
        return Cursor(float(since), float(last_fire or 0), (skip_mark or b'').decode())

    def claim(self, job, fire, now, token, worker, remember):
        """'ok' when this caller owns the run; else 'taken', 'paused' or 'skipped'."""
        pending = json.dumps({'token': token, 'worker': worker, 'claimed_at': now})
        reply = self.scripts['cron_claim'](
            keys=[self.key(job), self.key(job, 'fired'), self.key(job, 'pending'),
                  self.paused_key], args=[job, fire, now, remember, pending])
        return reply.decode()

    def finish(self, job, fire, token, run):
        """Record the run (and release the claim holding `token`). False if not ours."""
        return bool(self.scripts['cron_finish'](
            keys=[self.key(job, 'pending'), self.key(job, 'runs')],
            args=[fire, token, json.dumps(run), HISTORY]))

    def skip(self, cursor, job, new_mark, run):
        """Record a skipped run unless another worker moved skip_mark first."""
        return bool(self.scripts['cron_skip'](
            keys=[self.key(job), self.key(job, 'runs')],
            args=[cursor.skip_mark, new_mark, json.dumps(run), HISTORY]))

    def pending(self, job):
        """{fire time: (raw json, claim dict)} of claimed runs not yet recorded."""
        raw = self.redis.hgetall(self.key(job, 'pending'))
        return {int(fire): (value, json.loads(value)) for fire, value in raw.items()}

    def reclaim(self, job, fire, raw, token, worker, now):
        pending = json.dumps({'token': token, 'worker': worker, 'claimed_at': now})
        return bool(self.scripts['cron_reclaim'](
            keys=[self.key(job, 'pending')], args=[fire, raw, pending]))

    # -- reads and admin

    def history(self, job, limit=HISTORY):
        return [json.loads(run) for run in self.redis.lrange(self.key(job, 'runs'), 0, limit - 1)]

    def last_runs(self, jobs):
        """{job: its newest run or None}, in one round trip."""
        pipe = self.redis.pipeline(transaction=False)
        for job in jobs:
            pipe.lindex(self.key(job, 'runs'), 0)
        return {job: json.loads(run) if run else None for job, run in zip(jobs, pipe.execute())}

    def paused(self):
        return {name.decode() for name in self.redis.smembers(self.paused_key)}

    def pause(self, job):
        self.redis.sadd(self.paused_key, job)

    def resume(self, job, now):
        """Unpause; fire times missed while paused are never caught up."""
        self.scripts['cron_resume'](keys=[self.paused_key, self.key(job)], args=[job, now])


_states = weakref.WeakKeyDictionary()


def state_for(rt):
    """The CronState of a Runtime, built once."""
    if rt not in _states:
        _states[rt] = CronState(rt.redis, rt.config.redis.prefix)
    return _states[rt]
