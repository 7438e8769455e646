"""The worker role: a Huey consumer that delivers mail, with graceful stop.

SIGTERM and SIGINT both stop taking work and let in-flight mails finish for
up to `[worker] shutdown_timeout` seconds; whatever is still in flight then
goes back to its queue. A second signal stops at once (and the in-flight mails
still go back). Redis outages are logged once and retried with backoff.
"""
import logging
import os
import signal
import socket
import threading
import time

import redis
from huey.consumer import Consumer, Scheduler, Worker

from .affinity import Placer
from .cron.ticker import start_ticker
from .cron.validate import check_runtime
from .heartbeat import Heartbeat, reap, worker_identity, worker_info
from .processor import Processor
from .redisconn import is_outage, outage_text, persistence_warning
from .runtime import Runtime
from .swarm import Swarm, shares
from .transport import Staging, create_release_transport, create_transport
from .webhooks import DispatcherProcess, run_dispatcher

log = logging.getLogger('mailq.worker')


class MailWorker(Worker):
    """Huey's worker loop, with a one-line log and backoff while Redis is down."""
    redis_down = False              # shared by the threads: one log line per outage, not 25
    _outage = threading.Lock()

    def loop(self, now=None):
        try:
            task = self.huey.dequeue()
        except Exception as exc:     # this thread must live on, whatever the fetch met
            if not is_outage(exc):
                log.exception('fetching a task failed; retrying with backoff')
            elif _flip(MailWorker, True):
                log.error('%s; retrying with backoff up to %ss', outage_text(exc),
                          self.max_delay)
            self.sleep()
            return
        if MailWorker.redis_down and not self.huey.storage.from_memory() and \
                _flip(MailWorker, False):
            log.warning('Redis is reachable again; fetching resumes')
        self.delay = self.default_delay
        if task is not None:
            try:
                self.huey.execute(task, now)
            except Exception:
                log.exception('unhandled error while delivering task %s', task.id)


class DueScheduler(Scheduler):
    """Moves due scheduled and retrying mails to their queues every `interval` seconds
    (sub-second; Huey's own scheduler allows 1 s at the least)."""

    def __init__(self, huey, stop_flag, interval, periodic):
        super().__init__(huey, stop_flag, 1, False)
        self.interval = interval
        self.failing = False

    def loop(self, now=None):
        start = time.monotonic()
        try:
            self.huey.storage.read_schedule(None)
            self.failing = False
        except Exception as exc:
            if not is_outage(exc):
                log.exception('moving due mails failed')
            self.failing = True     # an outage is logged by the worker loop
        self.sleep_for_interval(start, self.interval if not self.failing else 1.0)


class EarlySignals:
    """A SIGTERM or SIGINT that comes while the worker starts (`run` already serves the
    web then) is kept and handed to the consumer once it exists, so it still stops
    gracefully; a second one stops at once."""
    received = []

    @classmethod
    def catch(cls):
        for sig in (signal.SIGTERM, signal.SIGINT):
            signal.signal(sig, cls._keep)

    @classmethod
    def _keep(cls, signum, frame):
        cls.received.append(signum)
        signal.signal(signum, signal.SIG_DFL)

    @classmethod
    def hand_to(cls, consumer):
        while cls.received:
            consumer._handle_signal(cls.received.pop(0), None)


class MailConsumer(Consumer):
    worker_class = MailWorker
    scheduler_class = DueScheduler

    def __init__(self, huey, scheduler_interval, **options):
        self._mailq_interval = scheduler_interval
        super().__init__(huey, periodic=False, initial_delay=0.1, backoff=2, max_delay=10,
                         **options)
        both_graceful = (False, True)
        self._signal_actions = {signal.SIGTERM: both_graceful, signal.SIGINT: both_graceful}
        # Now, not in run(): a signal between the start-up log line and run() is not lost.
        self._set_signal_handlers()
        EarlySignals.hand_to(self)

    def _create_scheduler(self):
        return DueScheduler(self.huey, self.stop_flag, self._mailq_interval, False)

    def stop(self, graceful=False):
        """Huey's stop, with the one line that says why (huey's own is at INFO, muted)."""
        why = signal.Signals(self._signum).name if self._signum else 'an interrupt'
        log.info('received %s: taking no new mails; in-flight ones get up to %ss to finish '
                 '(a second signal stops at once)', why, self.shutdown_timeout)
        # Outcomes from now on claim and fetch nothing ahead (fetch.py): a mail claimed
        # but never started would go back counted as interrupted.
        self.huey.storage.quiet.set()
        super().stop(graceful)


def _flip(cls, down):
    """Set the shared outage flag; True for the one thread that changed it."""
    with cls._outage:
        changed, cls.redis_down = cls.redis_down != down, down
    return changed


def run_worker(config, concurrency=None, queues=None, worker_type=None, webhooks=True,
               member=None):
    """Run a worker until it is stopped by a signal (or a 'stop' command). With
    `webhooks`, it forks the webhook dispatcher (none without [webhook:NAME]);
    `member` is its index in a swarm (its first CPU, see affinity.Placer)."""
    cfg = config.worker
    concurrency = concurrency or cfg.concurrency
    queues = queues or list(cfg.queues)
    if (worker_type or cfg.worker_type) == 'process':
        return run_swarm(config, concurrency, queues)
    worker_type = 'thread'
    EarlySignals.catch()
    transport = create_transport(config.smtp)
    release = create_release_transport(config.smtp)
    worker_id = worker_identity()
    rt = Runtime(config, lambda rt: Processor(rt.store, transport, cfg, config.log,
                                              rt.new_task, worker_id, config.suppression,
                                              Staging(config.smtp), release))
    rt.huey.storage.bind_worker(worker_id, queues)
    rt.huey.storage.on_no_slot = transport.close   # no session slot: keep no session

    _startup_checks(rt)
    # Forked before this worker starts a thread of its own.
    hooks = DispatcherProcess(config, f'{worker_id}:webhooks') if webhooks else None
    if hooks:
        hooks.start()
    placer = Placer(cfg.cpu_affinity, member).start()
    host = socket.gethostname()
    heartbeat = Heartbeat(rt.store, worker_id, worker_info(host, concurrency, queues, worker_type),
                          cfg, on_quiet=rt.huey.storage.quiet.set)
    consumer = MailConsumer(rt.huey, scheduler_interval=cfg.scheduler_interval,
                            workers=concurrency, worker_type=worker_type,
                            shutdown_timeout=cfg.shutdown_timeout)
    log.info('worker %s: %d %s worker(s), queues %s, transport %s', worker_id, concurrency,
             worker_type, ', '.join(f'{q},{w}' if w else q for q, w in queues),
             config.smtp.transport)
    if config.smtp.staging:
        log.warning('worker %s: %s', worker_id, config.smtp.staging_text)
    cron = start_ticker(rt, worker_id)      # checks the cron jobs: ConfigError stops here
    _beat_once(heartbeat)
    heartbeat.start()
    cron.start()
    try:
        consumer.run()
    finally:
        placer.stop()
        if hooks:
            hooks.stop()
        cron.stop()
        heartbeat.stop()
        _return_in_flight(rt, worker_id)
        transport.close(polite=True)
        if release is not None:
            release.close(polite=True)
        _release_slots(rt, worker_id)
        log.info('worker %s stopped', worker_id)
    return 0


def run_swarm(config, concurrency, queues):
    """-k process: one thread-mode worker per core, each with its share of the threads
    and its own identity, heartbeat and in-flight list; plus one webhook dispatcher
    process for the swarm when [webhook:NAME] sections exist."""
    check_runtime(Runtime(config))   # a bad cron job fails here, not in a restart loop
    counts = shares(concurrency, os.cpu_count() or 1)
    log.info('worker swarm: %d processes x %s threads', len(counts),
             '/'.join(map(str, sorted(set(counts), reverse=True))))
    targets = [lambda i, n=n: run_worker(config, n, queues, 'thread', webhooks=False, member=i)
               for n in counts]
    if config.webhooks:
        targets.append(lambda i: run_dispatcher(config, f'{worker_identity()}:webhooks'))
    return Swarm('worker', targets).run()


def _startup_checks(rt):
    try:
        warning = persistence_warning(rt.redis)
        rt.store.index.mark_start(time.time())
        if warning:
            log.warning(warning)
        # Only the certainly dead here; workers that merely beat late are judged by
        # the heartbeat thread, once our own beats have gone through for the timeout.
        reap(rt.store, local_host=socket.gethostname())
    except redis.RedisError as exc:
        if not is_outage(exc):
            raise
        log.error('%s at start; the worker will keep trying', outage_text(exc))


def _beat_once(heartbeat):
    try:
        heartbeat.beat()
    except redis.RedisError as exc:
        if not is_outage(exc):
            raise


def _return_in_flight(rt, worker_id):
    for attempt in range(5):
        try:
            count = rt.store.requeue_worker(worker_id)
            (log.warning if count else log.info)(
                'returned %d unfinished mail(s) to their queues', count)
            return
        except redis.RedisError as exc:
            if not is_outage(exc):
                raise
            log.error('cannot return in-flight mails yet: %s; a live worker will, '
                      'after the heartbeat timeout', outage_text(exc))
            time.sleep(1)


def _release_slots(rt, worker_id):
    """Free this worker's limiter slots now its sessions are closed (a killed worker's
    are freed when their leases end)."""
    try:
        rt.store.throttle.release(worker_id)
    except redis.RedisError as exc:
        if not is_outage(exc):
            raise
