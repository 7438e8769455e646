"""For `make run`: find the configured Redis, or start a private one under ./var.

A clear message instead of a hang or a stack trace when there is no Redis. A
private redis-server is ours: it runs only as long as the `mailq run` that
started it (stopped on exit; a SIGKILLed mailq takes it down too, via the
kernel's parent-death signal). Its data stays in ./var (appendonly yes).
"""
import ctypes
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path
from urllib.parse import urlparse

from .errors import Unavailable
from .redisconn import answers as redis_answers, redacted_url

VAR = Path('var')
PR_SET_PDEATHSIG = 1


class PrivateRedis:
    """The redis-server that ensure_redis started; stop() ends it and waits."""

    def __init__(self, proc, port):
        self.proc, self.port = proc, port

    def stop(self, timeout=10):
        if self.proc.poll() is not None:
            return
        self.proc.terminate()            # redis-server flushes its AOF on SIGTERM
        try:
            self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait(5)
        print(f'mailq: stopped the private redis-server on port {self.port}', file=sys.stderr)


def _own_session_and_die_with_parent():
    """Its own session, so a Ctrl-C meant for mailq does not stop Redis before the worker
    has handed its mails back; SIGTERM when mailq dies without cleaning up."""
    import os
    os.setsid()
    try:
        ctypes.CDLL('libc.so.6', use_errno=True).prctl(PR_SET_PDEATHSIG, signal.SIGTERM)
    except OSError:
        pass


def ensure_redis(url):
    """None when a Redis answers at `url`; else the PrivateRedis started for it."""
    if redis_answers(url):
        return None
    parsed = urlparse(url)
    binary = shutil.which('redis-server')
    if parsed.scheme != 'redis' or parsed.hostname not in ('127.0.0.1', 'localhost') \
            or not binary:
        raise Unavailable(f'no Redis answers at {redacted_url(url)}; start one (redis-server) '
                          'or set [redis] url / MAILQ_REDIS_URL')
    VAR.mkdir(exist_ok=True)
    port = parsed.port or 6379
    print(f'mailq: no Redis at {redacted_url(url)}; starting a private one with appendonly yes '
          f'in {VAR.resolve()} (it stops when mailq does)', file=sys.stderr)
    log = open(VAR / 'redis.log', 'ab')
    proc = subprocess.Popen([binary, '--port', str(port), '--bind', '127.0.0.1',
                             '--dir', str(VAR.resolve()), '--appendonly', 'yes',
                             '--daemonize', 'no'],
                            stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT,
                            preexec_fn=_own_session_and_die_with_parent)
    log.close()
    private = PrivateRedis(proc, port)
    for _ in range(50):
        if redis_answers(url):
            return private
        if proc.poll() is not None:
            break
        time.sleep(0.1)
    private.stop()
    raise Unavailable(f'started redis-server on port {port}, but it does not answer; '
                      f'see {VAR / "redis.log"}')
