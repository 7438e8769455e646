"""The two ceilings every figure is divided by, measured in the same run:

* HTTP enqueue: bench/ceiling.py, one LPUSH per POST under mailq's own server and
  options, loaded like POST /api/mails (8 keep-alive clients);
* delivery: Postfix's smtp-source against the same smtp-sink, sessions reused (-d),
  as many sessions as the worker has threads, counted at the sink like every
  delivery run.
"""
import shutil

from . import mails
from .enqueue import http_single
from .env import PYTHON, start_process, wait_until
from .submission import listening

SMTP_SOURCE = shutil.which('smtp-source') or '/usr/sbin/smtp-source'


def http(env, count):
    """Requests/s of the minimal app, and its CPU per request."""
    env.flush()
    app = start_process([PYTHON, '-m', 'bench.ceiling', env.ini])
    try:
        wait_until(lambda: listening(env.web_port), 30)
        result = http_single(env, count, web=app)
    finally:
        env.stop(app)
    result['stored'] = env.client().llen('bench:ceiling')
    return result


def smtp(env, rt, count, sessions):
    """Mails/s that smtp-source alone gets through smtp-sink."""
    import subprocess
    size = len(mails.sample_mail(rt).raw)
    start = env.sink.mark()
    source = subprocess.Popen([SMTP_SOURCE, '-d', '-s', str(sessions), '-m', str(count),
                               '-l', str(size), '-f', 'bench@example.com',
                               '-t', 'to@example.com', f'127.0.0.1:{env.sink.port}'],
                              stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        first, last = env.sink.wait_for(start, count, timeout=600, sender=source)
    finally:
        source.wait(60)
    return {'mails': count, 'sessions': sessions, 'seconds': round(last - first, 3),
            'rate': round((count - 1) / (last - first), 1)}
