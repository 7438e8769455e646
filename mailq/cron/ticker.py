"""The cron ticker: a thread in every worker process that enqueues due cron runs.

Every worker runs one, so jobs keep running while any worker is up, and a Redis
claim per (job, fire time) lets exactly one of them enqueue each run. A tick
looks at each job's fire times since its cursor in Redis (or since this
ticker's previous tick): those within the job's catch-up window are claimed
and run, older ones are recorded as one skipped run. At worker start that is
the catch-up; afterwards it is the fire time that just came due.

A claimed run whose worker died before recording it is taken over by another
worker and redone with the same idempotency keys, so its mails are not sent
twice.
"""
import logging
import secrets
import threading
import time
from datetime import UTC, datetime, timedelta

from .definitions import jobs
from .run import redis_outage, run_once
from .schedule import MAX_FIRE_TIMES
from .validate import check_runtime

log = logging.getLogger('mailq.cron')
LEASE = 10          # a claim this old whose worker is gone (or is us) is redone
MAX_LEASE = 300     # a claim this old is redone whoever holds it
RECOVER_EVERY = 5
REMEMBER = 3600     # claims are kept this long past the catch-up window (clock skew)
TINY = timedelta(microseconds=1)


def run_key(job, fire):
    """The idempotency key of the run of `job` at fire time `fire`."""
    return f'cron:{job.name}:{fire}'


def utc(epoch):
    return datetime.fromtimestamp(epoch, UTC)


class CronTicker(threading.Thread):
    def __init__(self, rt, worker_id, clock=time.time, interval=1.0):
        super().__init__(name='mailq-cron', daemon=True)
        self.rt = rt
        self.worker_id = worker_id
        self.clock = clock
        self.interval = interval
        self.jobs = jobs(rt.config)
        self.state = rt.store.cron
        self.checked = {}            # job -> time of this ticker's last complete tick
        self.last_recovery = None
        self.stopping = threading.Event()
        self.redis_down = False

    def start(self):
        if self.jobs:
            super().start()

    def stop(self, timeout=5.0):
        """Stop ticking; give a run in progress `timeout` seconds to be recorded."""
        self.stopping.set()
        if self.is_alive() and threading.current_thread() is not self:
            self.join(timeout)

    def run(self):
        while not self.stopping.is_set():
            try:
                self.tick()
            except Exception:     # a bug of ours must not end cron for this worker
                log.exception('cron tick failed')
            self.stopping.wait(self.interval)

    def tick(self, now=None):
        """Handle every job once: skip, claim and run what is due at `now`."""
        now = self.clock() if now is None else now
        try:
            paused = self.state.paused()
            for job in self.jobs.values():
                self._guarded(self.tick_job, job, now, job.name in paused)
            if self.last_recovery is None or now - self.last_recovery >= RECOVER_EVERY:
                for job in self.jobs.values():
                    self._guarded(self.recover, job, now)
                self.last_recovery = now
        except Exception as exc:
            if not redis_outage(exc):
                raise
            self._redis_down(exc)
            return
        if self.redis_down:
            log.warning('cron: Redis is reachable again')
            self.redis_down = False

    def _guarded(self, step, *args):
        """One job's error must not stop the others; Redis outages stop the tick."""
        try:
            step(*args)
        except Exception as exc:
            if redis_outage(exc):
                raise
            log.exception('cron job %s: tick failed', args[0].name)

    def _redis_down(self, exc):
        if not self.redis_down:
            log.error('cron: Redis unreachable (%s); due runs wait until it is back', exc)
        self.redis_down = True

    def tick_job(self, job, now, paused=False):
        if paused:
            self.checked[job.name] = now
            return
        cursor = self.state.cursor(job.name, now)
        start = utc(max(self.checked.get(job.name, 0), cursor.start))
        boundary = utc(now - job.window) - TINY      # fire times before it are too late
        if start < boundary:
            self._skip(job, cursor, start, boundary)
            start = boundary
        while True:
            due = job.schedule.fire_times(start, utc(now))
            for fire in due:
                self.fire(job, int(fire.timestamp()), now)
            if len(due) < MAX_FIRE_TIMES:
                break
            start = due[-1]
        self.checked[job.name] = now

    def _skip(self, job, cursor, start, boundary):
        missed = job.schedule.fire_times(start, boundary)
        if not missed:
            return
        newest = missed[-1]
        if len(missed) == MAX_FIRE_TIMES:
            newest = job.schedule.latest_at_or_before(boundary) or newest
        count = len(missed) if len(missed) < MAX_FIRE_TIMES else f'{MAX_FIRE_TIMES} or more'
        run = {'fire_time': int(newest.timestamp()), 'enqueued_at': None, 'outcome': 'skipped',
               'mail_ids': [], 'manual': False, 'worker': self.worker_id,
               'skipped': len(missed), 'first_fire_time': int(missed[0].timestamp()),
               'error': f'{count} run(s) missed (no worker running, or Redis unreachable) '
                        f'and found more than catch_up ({job.config.catch_up} s) late'}
        if self.state.skip(cursor, job.name, run['fire_time'], run):
            log.warning('cron job %s: skipped %s run(s) from %s to %s (past catch_up)', job.name,
                        count, job.local(run['first_fire_time']).isoformat(),
                        job.local(run['fire_time']).isoformat())

    def fire(self, job, fire, now):
        """Claim the run at `fire` and, if it is ours, run it."""
        token = secrets.token_hex(8)
        remember = job.window + MAX_LEASE + REMEMBER
        if self.state.claim(job.name, fire, now, token, self.worker_id, remember) != 'ok':
            return None
        return run_once(self.rt, self.state, job, fire, run_key(job, fire), token=token,
                        worker=self.worker_id, clock=self.clock)

    def recover(self, job, now):
        """Redo claimed runs whose worker died before recording them."""
        for fire, (raw, claim) in self.state.pending(job.name).items():
            age = now - claim['claimed_at']
            ours = claim['worker'] == self.worker_id
            if age < LEASE or (age < MAX_LEASE and not ours and self._alive(claim['worker'], now)):
                continue
            token = secrets.token_hex(8)
            if not self.state.reclaim(job.name, fire, raw, token, self.worker_id, now):
                continue
            log.warning('cron job %s: redoing the run of %s claimed by %s', job.name,
                        job.local(fire).isoformat(), claim['worker'])
            if now - fire <= job.window + MAX_LEASE:
                run_once(self.rt, self.state, job, fire, run_key(job, fire), token=token,
                         worker=self.worker_id, clock=self.clock)
            else:
                self.state.finish(job.name, fire, token, {
                    'fire_time': fire, 'enqueued_at': None, 'outcome': 'skipped',
                    'mail_ids': [], 'manual': False, 'worker': self.worker_id,
                    'error': f'claimed by {claim["worker"]}, which stopped before enqueueing; '
                             'found past the catch-up window'})

    def _alive(self, worker, now):
        beat = self.rt.store.workers.beat_of(worker)
        return beat is not None and beat >= now - self.rt.config.worker.heartbeat_timeout


def start_ticker(rt, worker_id):
    """Check the cron jobs (ConfigError stops the worker's start) and build the ticker."""
    check_runtime(rt)
    return CronTicker(rt, worker_id)
