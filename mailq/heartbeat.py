"""Worker liveness: heartbeats, commands from the dashboard, and reaping the dead.

Every worker process beats once per `heartbeat_interval` into Redis (a hash
with its details and a score in the `workers` set, both in Redis's own clock so
hosts need not agree on the time). Any live worker returns the in-flight tasks
of a worker whose beat is older than `heartbeat_timeout` to their queues, but
only once its own beats have gone through for that long: after a Redis outage
every worker gets the time to beat again before anyone judges it dead. On
start, a worker also reaps workers of its own host and PID namespace whose
process is gone, so a restart after `kill -9` recovers at once.
"""
import json
import logging
import os
import secrets
import signal
import socket
import threading
import time

from .redisconn import is_outage, outage_text
from .store.containers import task_mail_id, task_queue

log = logging.getLogger('mailq.worker')


def worker_identity():
    return f'{socket.gethostname()}:{os.getpid()}:{secrets.token_hex(3)}'


def pid_namespace():
    """Which PID namespace this process sees ('' where unknown): two containers may
    share a hostname while their pids mean different processes."""
    try:
        return os.readlink('/proc/self/ns/pid')
    except OSError:
        return ''


def pid_alive(pid):
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def rss_bytes():
    try:
        with open('/proc/self/status') as f:
            for line in f:
                if line.startswith('VmRSS:'):
                    return int(line.split()[1]) * 1024
    except OSError:
        pass
    return 0


def reap(store, now=None, timeout=None, local_host=None):
    """Requeue the in-flight tasks of dead workers: those whose beat is older than
    `timeout` seconds at `now` (Redis time), and with `local_host` those of this host
    and PID namespace whose process is gone. Returns {worker_id: tasks requeued}."""
    dead = []
    if timeout is not None:
        now = now or store.workers.redis_time()
        dead = store.workers.silent_since(now - timeout)
    if local_host:
        dead += [wid for wid in _gone_on_this_host(store, local_host) if wid not in dead]
    reaped = {}
    for wid in dead:
        reaped[wid] = store.requeue_worker(wid)
        log.warning('worker %s is gone: %d in-flight mail(s) returned to their queues',
                    wid, reaped[wid])
    return reaped


def release_orphans(store, worker_id, suspects):
    """Return in-flight tasks that no thread of this worker holds (the reply to their
    fetch or claim was lost, e.g. to a Redis restart). A task counts as orphaned when
    it was unclaimed at two sweeps in a row. A thread holds a busy entry for the task it
    claimed and an ahead entry for the one it fetched to claim next, so a task with
    neither has no thread on it.
    Returns the tasks that are suspects now."""
    tasks, held, ahead = store.workers.in_flight(worker_id)
    unclaimed = set()
    for task in tasks:
        mail_id = task_mail_id(task)
        if mail_id in held or task in ahead:
            continue
        if task in suspects:
            queue = task_queue(task) or store.worker_config.default_queue
            if store.release(mail_id or '-', task, queue, worker_id, ''):
                log.warning('mail %s was in flight with no thread on it; returned to %s',
                            mail_id, queue)
        else:
            unclaimed.add(task)
    return unclaimed


def _gone_on_this_host(store, host):
    """Workers registered by this host, in our PID namespace, whose process is gone.
    A worker whose namespace cannot be told is left to the heartbeat timeout."""
    ours, gone = pid_namespace(), []
    for wid in store.workers.ids():
        wid_host, _, rest = wid.rpartition(':')[0].rpartition(':')
        pid = int(rest) if rest.isdigit() else None
        if wid_host != host or not pid or pid == os.getpid() or pid_alive(pid):
            continue
        theirs = store.workers.pid_namespace(wid)
        if ours and theirs is not None and theirs == ours:
            gone.append(wid)
    return gone


class Heartbeat(threading.Thread):
    """Beats, runs commands (quiet, stop) and reaps, until stopped."""

    def __init__(self, store, worker_id, info, cfg, on_quiet, on_stop=None):
        super().__init__(name='mailq-heartbeat', daemon=True)
        self.store = store
        self.worker_id = worker_id
        self.info = info
        self.cfg = cfg
        self.on_quiet = on_quiet
        self.on_stop = on_stop or (lambda: os.kill(os.getpid(), signal.SIGTERM))
        self.stopping = threading.Event()
        self.redis_down = False
        self.quiet = False
        self.suspects = set()
        self.beating_since = None    # Redis time of the first beat since start or outage

    def beat(self, now=None):
        """Beat once (and run a command waiting for us); returns the Redis time used."""
        workers = self.store.workers
        now = now or workers.redis_time()
        command = workers.beat(self.worker_id, {**self.info, 'rss': rss_bytes(),
                                                'quiet': int(self.quiet)},
                               max(60, int(self.cfg.heartbeat_timeout * 4)), now)
        if command:
            self.run_command(command)
        return now

    def run_command(self, command):
        log.warning('worker %s received command %r', self.worker_id, command)
        if command == 'quiet':
            self.quiet = True
            self.on_quiet()
        elif command == 'stop':
            self.on_stop()

    def run(self):
        while not self.stopping.wait(self.cfg.heartbeat_interval):
            self.tick()

    def tick(self):
        """Beat; then, once our own beats have gone through for `heartbeat_timeout`,
        reap the dead; then release orphaned tasks of our own."""
        try:
            now = self.beat()
            self.beating_since = self.beating_since or now
            if now - self.beating_since >= self.cfg.heartbeat_timeout:
                reap(self.store, now=now, timeout=self.cfg.heartbeat_timeout)
            self.suspects = release_orphans(self.store, self.worker_id, self.suspects)
            if self.store.throttle.slot_keys:     # limiter slots: renew our leases
                _, sending, _ = self.store.workers.in_flight(self.worker_id)
                self.store.throttle.renew(self.worker_id, sorted(sending), now)
            if self.redis_down:
                log.warning('Redis is reachable again')
            self.redis_down = False
        except Exception as exc:
            self.beating_since = None
            if not is_outage(exc):
                log.exception('heartbeat failed')
            elif not self.redis_down:
                log.error('%s; retrying every %ss', outage_text(exc),
                          self.cfg.heartbeat_interval)
                self.redis_down = True

    def stop(self):
        self.stopping.set()


def worker_info(host, concurrency, queues, worker_type):
    return {'host': host, 'pid': os.getpid(), 'pidns': pid_namespace(),
            'concurrency': concurrency, 'queues': json.dumps(queues),
            'worker_type': worker_type, 'started': time.time()}
