"""Enqueue throughput: mailq.send(), POST /api/mails (8 keep-alive clients),
POST /api/mails/batch (1,000 a request), and plain Huey task() calls."""
import json
import time

import mailq

from . import mails
from .env import tree_cpu
from .httpload import post_many


def python_send(env, count):
    env.flush()
    started = time.perf_counter()
    for n in range(count):
        mailq.send(**mails.request(n))
    return _rate(count, time.perf_counter() - started)


def http_single(env, count, clients=8, web=None):
    """Also the CPU per request of the web processes, Redis and this load client
    (they share the cores, so the sum bounds the rate)."""
    env.flush()
    body = json.dumps(mails.request(1)).encode()
    post_many(env.web_port, '/api/mails', body, 200, clients)      # warm up
    before = _cpu(env, web)
    seconds, statuses = post_many(env.web_port, '/api/mails', body, count, clients)
    used = [(b - a) / count * 1e6 for a, b in zip(before, _cpu(env, web))]
    return {**_rate(count, seconds), 'statuses': statuses,
            'cpu_us_per_request': dict(zip(('web', 'redis', 'client'), map(round, used)))}


def _cpu(env, web):
    return (tree_cpu(web.pid) if web else 0.0, tree_cpu(env.redis.proc.pid), time.process_time())


def http_batch(env, requests, per_request=1000):
    env.flush()
    body = json.dumps({'mails': [mails.request(n) for n in range(per_request)]}).encode()
    post_many(env.web_port, '/api/mails/batch', body, 1, 1)         # warm up
    seconds, statuses = post_many(env.web_port, '/api/mails/batch', body, requests, 1)
    return {**_rate(requests * per_request, seconds), 'statuses': statuses}


def huey_baseline(env, rt, count):
    from .plain_huey import send_mail
    env.flush()
    sample = mails.sample_mail(rt)
    before = env.client().info('memory')['used_memory']
    started = time.perf_counter()
    for _ in range(count):
        send_mail(sample.sender, sample.recipients, sample.raw)
    result = _rate(count, time.perf_counter() - started)
    per_task = (env.client().info('memory')['used_memory'] - before) / count
    return {**result, 'overhead_bytes': round(per_task - len(sample.raw))}


def _rate(count, seconds):
    return {'count': count, 'seconds': round(seconds, 3), 'rate': round(count / seconds, 1)}
