"""Keeps a worker, web or submission process's threads on one CPU: the least busy one,
chosen again as load moves.

A Python process runs Python on one core at a time (the GIL). Left to the kernel, a
threaded worker's threads spread over every core, and each hand-over of the GIL
wakes a thread on another core. On a 2-core box that cost the worker about half its
CPU per mail, and waitress about 40 % of its CPU per request (docs/benchmark.md, "One
core a worker process" and "The web and submission processes on one core"). Kept on
one core, the threads hand the GIL over there, and Redis and the rest have the other
cores.

The core is the least busy of those the process may use (its affinity mask, which a
container's cpuset narrows), counted from /proc/stat over the last interval with
this process's own use left out. It is chosen again every INTERVAL seconds (with
jitter), so processes that cannot see each other (in separate containers, say) spread
out, and a core another program takes over is left. Nothing is done with
`cpu_affinity = none` ([worker] or [web]), a one-core mask, or without sched_setaffinity.
"""
import logging
import os
import random
import threading

FIRST = 0.25            # seconds of /proc/stat the first choice is made on
INTERVAL = 10.0
MARGIN = 0.15           # move only to a core this share of a core less busy
TICKS = os.sysconf('SC_CLK_TCK') if hasattr(os, 'sysconf') else 100
# The mask this process started with, before any Placer narrowed it.
START_MASK = frozenset(os.sched_getaffinity(0)) if hasattr(os, 'sched_getaffinity') else None


def release():
    """In a child forked from a placed worker (the webhook dispatcher): the start mask
    again, for the kernel to place it."""
    if START_MASK:
        os.sched_setaffinity(0, START_MASK)


def cpu_busy():
    """{cpu number: busy clock ticks since boot} from /proc/stat."""
    busy = {}
    with open('/proc/stat') as fh:
        for line in fh:
            name, *values = line.split()
            if name.startswith('cpu') and name[3:].isdigit():
                user, nice, system, _idle, _iowait, irq, softirq, steal = (
                    int(v) for v in values[:8])
                busy[int(name[3:])] = user + nice + system + irq + softirq + steal
    return busy


def own_ticks():
    """This process's CPU (all its threads) in clock ticks."""
    with open('/proc/self/stat') as fh:
        fields = fh.read().rsplit(')', 1)[1].split()
    return int(fields[11]) + int(fields[12])


def choose(others, current, seconds):
    """The core to be on: the least busy by others' use in `seconds`, unless the current
    one is within MARGIN of it. A first choice among near-equals goes by pid, so that
    workers started together are likely to take different cores (a swarm's members
    take theirs by index: Placer.member)."""
    least = min(others.values())
    if current in others and others[current] - least <= MARGIN * seconds * TICKS:
        return current
    near = sorted(c for c, busy in others.items() if busy - least <= MARGIN * seconds * TICKS)
    if current is None:
        return near[os.getpid() % len(near)]
    return min(near, key=others.get)


class Placer:
    """The thread that keeps this process on its chosen core (start/stop). `role` is the
    config section and logger name: 'worker' or 'web'."""

    def __init__(self, setting, member=None, role='worker'):
        self.allowed = sorted(START_MASK or ())
        self.on = setting == 'auto' and len(self.allowed) > 1
        self.member = member        # a swarm member's index: its first core, one each
        self.role = role
        self.log = logging.getLogger(f'mailq.{role}')
        self.cpu = None
        self.stopping = threading.Event()

    def start(self):
        if self.on:
            threading.Thread(target=self._run, name='cpu-placer', daemon=True).start()
        return self

    def stop(self):
        self.stopping.set()

    def _run(self):
        try:
            if self.member is not None:     # members start together: they would choose alike
                self._place(self.allowed[self.member % len(self.allowed)])
            before, own, wait = cpu_busy(), own_ticks(), FIRST
            while not self.stopping.wait(wait):
                after, own_now = cpu_busy(), own_ticks()
                others = {c: after.get(c, 0) - before.get(c, 0) for c in self.allowed}
                if self.cpu in others:      # all of our own use was on our own core
                    others[self.cpu] = max(0, others[self.cpu] - (own_now - own))
                self._place(choose(others, self.cpu, wait))
                before, own = after, own_now
                wait = INTERVAL * random.uniform(0.8, 1.2)
        except OSError as exc:              # no /proc, or a mask we may not set
            self.log.warning('%s: cannot choose a CPU (%s); the kernel places its threads',
                             self.role, exc)

    def _place(self, cpu):
        """Every thread onto `cpu` (affinity is per thread; new ones inherit it)."""
        for tid in os.listdir('/proc/self/task'):
            try:
                os.sched_setaffinity(int(tid), {cpu})
            except ProcessLookupError:      # a thread that has just ended
                pass
        if cpu != self.cpu:
            (self.log.info if self.cpu is None else self.log.debug)(
                '%s: its threads run on CPU %d of %s (the GIL runs one at a time; '
                '[%s] cpu_affinity = none leaves this to the kernel)',
                self.role, cpu, ','.join(map(str, self.allowed)), self.role)
        self.cpu = cpu
