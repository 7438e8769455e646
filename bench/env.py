"""The bench's private world: a redis-server on a free port in a temp dir, an
smtp-sink, a mailq.ini wired to both, and helpers to run mailq's own processes.

The process and Redis helpers are the test suite's (tests/support), reused.
"""
import os
import shutil
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / 'tests'))

from support.ini import write_ini                                     # noqa: E402
from support.procs import free_port, start_process, stop_process, wait_http   # noqa: E402
from support.redis_server import RedisServer                          # noqa: E402

from .sink import SMTPSink                                            # noqa: E402

PYTHON = sys.executable


class BenchEnv:
    def __init__(self):
        self.dir = Path(tempfile.mkdtemp(prefix='mailq-bench-'))
        self.redis = RedisServer(tmpdir=self.dir, appendonly=False)
        self.sink = SMTPSink(free_port())
        self.web_port = free_port()
        self.submission_port = free_port()
        self.ini = self.dir / 'mailq.ini'

    def start(self):
        self.redis.start()
        self.sink.start()
        write_ini(self.ini, {
            'redis': {'url': self.redis.url},
            'smtp': {'transport': 'smtp', 'host': '127.0.0.1', 'port': self.sink.port,
                     'from': 'bench@example.com', 'timeout': 30},
            'web': {'host': '127.0.0.1', 'port': self.web_port},
            'templates': {'path': REPO / 'templates' / 'mail'},
            'limits': {'max_batch': 1000},
            'submission': {'host': '127.0.0.1', 'port': self.submission_port},
        })
        os.environ.update(MAILQ_CONFIG=str(self.ini), BENCH_REDIS_URL=self.redis.url,
                          BENCH_SINK_PORT=str(self.sink.port))
        return self

    def client(self):
        return self.redis.client()

    def flush(self):
        self.client().flushall()

    def mailq(self, *args, env=None):
        """Start `python mailq.py -c <ini> ARGS` in its own process group."""
        command, *rest = args
        return start_process([PYTHON, REPO / 'mailq.py', command, '-c', self.ini, *rest],
                             env=env)

    def web(self, processes=1):
        proc = self.mailq('web', env={'MAILQ_WEB_PROCESSES': str(processes)})
        wait_http(f'http://127.0.0.1:{self.web_port}/healthz', timeout=30)
        return proc

    def wait_worker(self, rt, timeout=30):
        """Until a worker has sent its first heartbeat (it is fetching by then)."""
        wait_until(lambda: rt.redis.zcard(rt.keys.workers) > 0, timeout)
        time.sleep(0.5)

    def stop(self, proc, timeout=30):
        return stop_process(proc, timeout=timeout)

    def close(self):
        self.sink.stop()
        self.redis.stop()
        shutil.rmtree(self.dir, ignore_errors=True)


def tree_rss(pid):
    """Resident memory of a process and its children, in bytes."""
    total = 0
    for p in [pid] + children(pid):
        try:
            with open(f'/proc/{p}/status') as fh:
                for line in fh:
                    if line.startswith('VmRSS:'):
                        total += int(line.split()[1]) * 1024
        except OSError:
            pass
    return total


def redis_usec(env, command):
    """Redis's own time so far in `command`, in us (INFO commandstats; a script's time
    includes the commands it runs)."""
    stats = env.client().info('commandstats')
    return stats.get(f'cmdstat_{command.lower()}', {}).get('usec', 0)


def tree_cpu(pid):
    """CPU seconds (user + system) used so far by a process and its children."""
    ticks = os.sysconf('SC_CLK_TCK')
    total = 0.0
    for p in [pid] + children(pid):
        try:
            with open(f'/proc/{p}/stat') as fh:
                fields = fh.read().rsplit(')', 1)[1].split()
            total += (int(fields[11]) + int(fields[12])) / ticks
        except OSError:
            pass
    return total


def children(pid):
    found = []
    try:
        with open(f'/proc/{pid}/task/{pid}/children') as fh:
            kids = [int(k) for k in fh.read().split()]
    except OSError:
        return found
    for kid in kids:
        found += [kid] + children(kid)
    return found


def wait_until(predicate, timeout, interval=0.05):
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            raise TimeoutError('condition not met in time')
        time.sleep(interval)
