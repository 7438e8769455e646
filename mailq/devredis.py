"""For `make run`: find the configured Redis, or start a private one under ./var.

A clear message instead of a hang or a stack trace when there is no Redis.
"""
import shutil
import subprocess
import sys
import time
from pathlib import Path
from urllib.parse import urlparse

import redis

from .errors import Unavailable
from .config import redacted_url
from .redisconn import connection_pool

VAR = Path('var')


def redis_answers(url):
    try:
        return redis.Redis(connection_pool=connection_pool(url)).ping()
    except (redis.ConnectionError, redis.TimeoutError):
        return False
    except redis.ResponseError:
        return True   # it answers (e.g. asks for a password)


def ensure_redis(url):
    if redis_answers(url):
        return
    parsed = urlparse(url)
    binary = shutil.which('redis-server')
    if parsed.scheme != 'redis' or parsed.hostname not in ('127.0.0.1', 'localhost') \
            or not binary:
        raise Unavailable(f'no Redis answers at {redacted_url(url)}; start one (redis-server) or set '
                          '[redis] url / MAILQ_REDIS_URL')
    VAR.mkdir(exist_ok=True)
    port = parsed.port or 6379
    print(f'mailq: no Redis at {redacted_url(url)}; starting a private one with appendonly yes in '
          f'{VAR.resolve()}', file=sys.stderr)
    subprocess.run([binary, '--port', str(port), '--bind', '127.0.0.1', '--dir', str(VAR.resolve()),
                    '--appendonly', 'yes', '--daemonize', 'yes',
                    '--logfile', str((VAR / 'redis.log').resolve()),
                    '--pidfile', str((VAR / 'redis.pid').resolve())], check=False)
    for _ in range(50):
        if redis_answers(url):
            return
        time.sleep(0.1)
    raise Unavailable(f'started redis-server on port {port}, but it does not answer; '
                      f'see {VAR / "redis.log"}')
