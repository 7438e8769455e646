"""`python -m bench [--quick]`: run every measurement, print one table, write
bench/results.json. Full: about 11 to 18 minutes on 2 cores (the search row stores a
million mails); --quick: about 2 minutes."""
import argparse
import json
import platform
import sys
import time
from pathlib import Path

from mailq.config import load
from mailq.runtime import Runtime

from . import (ceilings, delivery, enqueue, latency, mails, memory, pairs, reads, search,
               submission, webhooks)
from .env import BenchEnv
from .report import exit_status, table
from .steal import StealLog

FULL = {'deliver': 20000, 'ceiling_smtp': 20000, 'send': 5000, 'http': 10000, 'batches': 20,
        'steady_seconds': 20, 'punctual': 1000, 'spread': 30,
        'per_state': 100000, 'memory': 20000, 'memory_html': 5000, 'search': 1000000,
        'webhooks': 10000, 'rounds': 3}
QUICK = {'deliver': 2000, 'ceiling_smtp': 10000, 'send': 1000, 'http': 2000, 'batches': 3,
         'steady_seconds': 3, 'punctual': 200, 'spread': 5, 'per_state': 5000,
         'memory': 2000, 'memory_html': 1000, 'search': 20000, 'webhooks': 2000,
         'rounds': 2}
NEVER_BINDING = {'MAILQ_SMTP_RATE': '1000000'}
RESULTS = Path(__file__).with_name('results.json')


def run(sizes):
    env = BenchEnv().start()
    results = {'sizes': sizes, 'machine': {'python': platform.python_version(),
                                           'cpus': _cpus()}}
    try:
        rt = Runtime(load(str(env.ini)))
        steal = StealLog()
        step = _stepper(steal)
        n = sizes['deliver']
        step('ceiling: smtp-source into smtp-sink, 25 reused sessions')
        results['ceiling_smtp'] = ceilings.smtp(env, rt, sizes['ceiling_smtp'], delivery.THREADS)
        rounds = sizes['rounds']
        step(f'delivery: plain Huey baseline, then mailq -w 25 threads, -w 25 -k process and '
             f'2 processes x 25 threads, in turn, {rounds} rounds')
        results['deliver_baseline'], (results['deliver_thread'], results['deliver_process'],
                                      results['deliver_two']) = pairs.against(
            rounds, lambda: delivery.baseline_run(env, rt, n),
            lambda: delivery.mailq_run(env, rt, n, ['-w', '25']),
            lambda: delivery.mailq_run(env, rt, n, ['-w', '25', '-k', 'process']),
            lambda: delivery.mailq_run(env, rt, n, ['-w', '25'], processes=2))
        step('delivery, for comparison: plain Huey kept on one CPU, and mailq -w 25 placed by '
             'the kernel ([worker] cpu_affinity = none)')
        results['deliver_baseline_one_cpu'] = delivery.baseline_run(env, rt, n, one_cpu=True)
        results['deliver_thread_kernel'] = delivery.mailq_run(
            env, rt, n, ['-w', '25'], worker_env={'MAILQ_WORKER_CPU_AFFINITY': 'none'})
        step(f'delivery: mailq -w 25 (threads) without and with an [smtp] rate too high to '
             f'bind, alternating, {rounds} rounds')
        results['deliver_rate'] = delivery.alternating(
            rounds, lambda: delivery.mailq_run(env, rt, n, ['-w', '25']),
            lambda: delivery.mailq_run(env, rt, n, ['-w', '25'], worker_env=NEVER_BINDING))
        step(f'delivery: the others among 20 mails to a [throttle:slow] group of 2/s, against '
             f'no group, alternating, {rounds} rounds')
        results['deliver_slow_group'] = delivery.alternating(
            rounds, lambda: delivery.others_run(env, rt, n),
            lambda: delivery.others_run(env, rt, n, throttled=True))
        step(f'delivery: mailq -w 25 without and with one webhook endpoint (every event), '
             f'alternating, {rounds} rounds')
        results['deliver_webhooks'] = webhooks.pair(env, rt, webhooks.Receiver(),
                                                    sizes['webhooks'], rounds)

        step(f'enqueue: mailq.send() against plain Huey task() calls, alternating, '
             f'{rounds} rounds')
        results['enqueue_huey'], (results['enqueue_send'],) = pairs.against(
            rounds, lambda: enqueue.huey_baseline(env, rt, sizes['send']),
            lambda: enqueue.python_send(env, sizes['send']))
        step('enqueue, the floor under send(): accept.lua alone, its arguments built before')
        results['enqueue_accept_alone'] = enqueue.accept_alone(env, rt, sizes['send'])
        step(f'enqueue: POST /api/mails against the ceiling (a minimal WSGI app, one LPUSH '
             f'per POST), 8 keep-alive clients, alternating, {rounds} rounds')
        results['ceiling_http'], (results['enqueue_http'],) = pairs.against(
            rounds, lambda: ceilings.http(env, sizes['http']),
            lambda: _with_web(env, lambda web: enqueue.http_single(env, sizes['http'], web=web)))
        step('enqueue: POST /api/mails/batch, 1,000 a request')
        results['enqueue_batch'] = _with_web(
            env, lambda web: enqueue.http_batch(env, sizes['batches'], web=web))
        step('enqueue: POST /api/mails, 8 keep-alive clients, [web] processes = 2')
        results['enqueue_http2'] = _with_web(
            env, lambda web: enqueue.http_single(env, sizes['http'], web=web), processes=2)

        step('enqueue: SMTP submission, smtp-source over 8 sessions')
        results['enqueue_smtp'] = submission.submit(env, rt, sizes['http'])
        step('latency: one SMTP submission on a reused session at 100 /s')
        results['submission_latency'] = submission.latency(env, 100, sizes['steady_seconds'])

        step('memory: Redis bytes per queued mail')
        results['memory'] = memory.queued_overhead(env, rt, sizes['memory'])
        step('memory: the 20 KB HTML receipt queued, sent, and after keep_sent_bodies')
        results['memory_html'] = memory.queued_overhead(env, rt, sizes['memory_html'],
                                                        mails.html_mail(rt))
        results['memory_sent'] = memory.sent_html(env, rt, sizes['memory_html'])

        env.flush()
        worker = env.mailq('worker', '-w', '25')
        try:
            env.wait_worker(rt)
            step('latency at 100 mails/s')
            results['latency'] = latency.steady(env, rt, 100, sizes['steady_seconds'])
            step(f'punctuality: {sizes["punctual"]} mails over {sizes["spread"]} s')
            results['punctuality'] = latency.punctual(env, rt, sizes['punctual'], sizes['spread'])
        finally:
            env.stop(worker)

        step(f'reads: filling {sizes["per_state"]:,} mails in each of 4 states')
        env.flush()
        reads.fill(rt, sizes['per_state'])
        web = env.web()
        try:
            step('reads: timing /api/stats and dashboard pages')
            results['reads'], results['reads_missing'] = reads.time_pages(env)
        finally:
            env.stop(web)
        results['redis_used_memory_filled'] = env.client().info('memory')['used_memory']

        step(f'search: storing {sizes["search"]:,} mails through accept.lua')
        env.flush()
        probes = search.fill(rt, sizes['search'])
        web = env.web()
        try:
            step('search: timing GET /api/mails?recipient=|message_id=|idempotency_key=')
            results['search'] = search.time_lookups(env, *probes)
        finally:
            env.stop(web)
        results['steal'] = steal.finish()
    finally:
        env.close()
    results['total_seconds'] = round(time.monotonic() - START, 1)
    return results


def _with_web(env, measure, processes=1):
    """measure(web) with `mailq web` running, stopped after."""
    web = env.web(processes=processes)
    try:
        return measure(web)
    finally:
        env.stop(web)


def _stepper(steal):
    def step(text):
        steal.begin(text)
        print(f'[{time.monotonic() - START:6.1f}s] {text}', file=sys.stderr, flush=True)
    return step


def _cpus():
    import os
    return os.cpu_count()


START = time.monotonic()


def main(argv=None):
    parser = argparse.ArgumentParser(prog='python -m bench', description=__doc__)
    parser.add_argument('--quick', action='store_true', help="small sizes, about 2 minutes")
    args = parser.parse_args(argv)
    results = run(QUICK if args.quick else FULL)
    results['mode'] = 'quick' if args.quick else 'full'
    RESULTS.write_text(json.dumps(results, indent=2) + '\n')
    print(table(results))
    print(f'\nwrote {RESULTS} in {results["total_seconds"]} s')
    problems = [p for k in ('deliver_thread', 'deliver_thread_kernel', 'deliver_rate',
                            'deliver_slow_group', 'deliver_process', 'deliver_two',
                            'deliver_webhooks', 'enqueue_smtp')
                for p in results[k]['problems']]
    return exit_status(problems)


if __name__ == '__main__':
    sys.exit(main())
