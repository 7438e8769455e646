"""Enqueue throughput: mailq.send(), POST /api/mails (8 keep-alive clients),
POST /api/mails/batch (1,000 a request), and plain Huey task() calls.

Each figure also says where its time went: Redis's own time a call (INFO
commandstats: the script, or Huey's LPUSH) and the caller's CPU. `accept_alone`
is the floor under send(): its one accept.lua call with the mail already composed
and the call's arguments already built."""
import json
import statistics
import time

import mailq

from . import mails
from .env import tree_cpu
from .httpload import post_many


def against(rounds, baseline, measured):
    """baseline() and measured() in turn, `rounds` times, so both meet the same machine
    load (as delivery.alternating): each side's median run (its whole figure, so that its
    CPU split belongs to its rate), the measured side with the median of the pairs'
    ratios and each pair's."""
    pairs = [(baseline(), measured()) for _ in range(rounds)]
    ratios = [m['rate'] / b['rate'] for b, m in pairs]
    return _median_run([b for b, _ in pairs]), {
        **_median_run([m for _, m in pairs]), 'ratio': round(statistics.median(ratios), 3),
        'pair_ratios': [round(r, 3) for r in ratios]}


def _median_run(runs):
    return sorted(runs, key=lambda run: run['rate'])[len(runs) // 2]


def python_send(env, count):
    env.flush()
    with _costs(env, 'evalsha', count) as cost:
        for n in range(count):
            mailq.send(**mails.request(n))
    return cost.figures


def accept_alone(env, rt, count):
    """accept.lua for the mails python_send() sends, each composed and its (KEYS, ARGV)
    built beforehand: what send() would cost if those took no time."""
    env.flush()
    calls = []
    for n in range(count):
        mail = mails.sample_mail(rt, n)
        calls.append(rt.store.accept_call(mail, rt.new_task(mail.id, mail.queue), ''))
    accept = rt.store.scripts.accept
    with _costs(env, 'evalsha', count) as cost:
        for keys, args in calls:
            accept(keys=keys, args=args)
    return cost.figures


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
    with _costs(env, 'exec', mails_sent) as cost:
        seconds, statuses = post_many(env.web_port, '/api/mails/batch', body, requests, 1)
    web_us = (tree_cpu(web.pid) - web_before) / mails_sent * 1e6 if web else 0
    return {**_rate(mails_sent, seconds), 'statuses': statuses,
            'redis_us': cost.figures['redis_us'], 'web_cpu_us': round(web_us, 1)}


def huey_baseline(env, rt, count):
    from .plain_huey import send_mail
    env.flush()
    sample = mails.sample_mail(rt)
    before = env.client().info('memory')['used_memory']
    with _costs(env, 'lpush', count) as cost:
        for _ in range(count):
            send_mail(sample.sender, sample.recipients, sample.raw)
    per_task = (env.client().info('memory')['used_memory'] - before) / count
    return {**cost.figures, 'overhead_bytes': round(per_task - len(sample.raw))}


class _costs:
    """Times the block: its rate for `count` calls, Redis's own time a call of `command`
    (INFO commandstats; a script's includes the commands it runs), and this process's
    CPU a call."""

    def __init__(self, env, command, count):
        self.redis, self.command, self.count = env.client(), f'cmdstat_{command}', count
        self.figures = None

    def _usec(self):
        return self.redis.info('commandstats').get(self.command, {}).get('usec', 0)

    def __enter__(self):
        self.usec, self.cpu, self.started = self._usec(), time.process_time(), \
            time.perf_counter()
        return self

    def __exit__(self, *exc):
        seconds, cpu = time.perf_counter() - self.started, time.process_time() - self.cpu
        self.figures = {**_rate(self.count, seconds),
                        'redis_us': round((self._usec() - self.usec) / self.count, 1),
                        'client_cpu_us': round(cpu / self.count * 1e6, 1)}


def _rate(count, seconds):
    return {'count': count, 'seconds': round(seconds, 3), 'rate': round(count / seconds, 1)}
