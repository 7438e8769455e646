"""Enqueue throughput: mailq.send(), POST /api/mails (8 keep-alive clients),
POST /api/mails/batch (1,000 a request), and plain Huey task() calls.

Each figure also says where its time went: Redis's own time a call (INFO
commandstats: the script, or Huey's LPUSH) and the caller's CPU. `accept_alone`
is the floor under send(): its one accept.lua call with the mail already composed
and the call's arguments already built."""
import json
import time

import mailq

from . import mails
from .env import redis_usec, tree_cpu
from .httpload import post_many


def python_send(env, count):
    env.flush()
    def sends():
        for n in range(count):
            mailq.send(**mails.request(n))
    return _timed(env, 'evalsha', count, sends)[0]


def accept_alone(env, rt, count):
    """accept.lua for the mails python_send() sends, each composed and its (KEYS, ARGV)
    built beforehand: what send() would cost if those took no time."""
    env.flush()
    calls = []
    for n in range(count):
        mail = mails.sample_mail(rt, n)
        calls.append(rt.store.accept_call(mail, rt.new_task(mail.id, mail.queue), ''))
    accept = rt.store.scripts.accept
    def accepts():
        for keys, args in calls:
            accept(keys=keys, args=args)
    return _timed(env, 'evalsha', count, accepts)[0]


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


def http_batch(env, requests, per_request=1000, web=None):
    """Also Redis's time (its one MULTI/EXEC a request) and the web process's CPU, a mail."""
    env.flush()
    body = json.dumps({'mails': [mails.request(n) for n in range(per_request)]}).encode()
    post_many(env.web_port, '/api/mails/batch', body, 1, 1)         # warm up
    mails_sent = requests * per_request
    web_before = tree_cpu(web.pid) if web else 0.0
    figures, (_, statuses) = _timed(env, 'exec', mails_sent, lambda: post_many(
        env.web_port, '/api/mails/batch', body, requests, 1))
    web_us = (tree_cpu(web.pid) - web_before) / mails_sent * 1e6 if web else 0
    return {**figures, 'statuses': statuses, 'web_cpu_us': round(web_us, 1)}


def huey_baseline(env, rt, count):
    from .plain_huey import send_mail
    env.flush()
    sample = mails.sample_mail(rt)
    before = env.client().info('memory')['used_memory']
    def tasks():
        for _ in range(count):
            send_mail(sample.sender, sample.recipients, sample.raw)
    figures = _timed(env, 'lpush', count, tasks)[0]
    per_task = (env.client().info('memory')['used_memory'] - before) / count
    return {**figures, 'overhead_bytes': round(per_task - len(sample.raw))}


def _timed(env, command, count, work):
    """(figures, work's result): the rate of `count` calls made by work(), Redis's own
    time a call of `command` (env.redis_usec) and this process's CPU a call."""
    before, cpu, started = redis_usec(env, command), time.process_time(), time.perf_counter()
    result = work()
    seconds, cpu = time.perf_counter() - started, time.process_time() - cpu
    return {**_rate(count, seconds),
            'redis_us': round((redis_usec(env, command) - before) / count, 1),
            'client_cpu_us': round(cpu / count * 1e6, 1)}, result


def _rate(count, seconds):
    return {'count': count, 'seconds': round(seconds, 3), 'rate': round(count / seconds, 1)}
