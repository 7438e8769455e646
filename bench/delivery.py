"""Delivery throughput: N queued mails drained into smtp-sink, timed at the sink.

mailq runs as `mailq.py worker` (threads, -k process, or two processes); the
baseline is `huey_consumer -w 25 -k thread` running bench/plain_huey.py. Each
mailq run is checked afterwards: every mail sent, one attempt logged, nothing
left in flight.
"""
import dataclasses
import os
import statistics
import time

from . import mails
from .env import PYTHON, REPO, redis_usec, start_process, tree_cpu, tree_rss

THREADS = 25


def mailq_run(env, rt, count, worker_args, processes=1, timeout=600, worker_env=None,
              template=None):
    env.flush()
    ids = mails.fill_queued(rt, count, template=template)
    start = env.sink.mark()
    redis_cpu = tree_cpu(env.redis.proc.pid)
    scripts_usec = redis_usec(env, 'evalsha')   # the worker's fetch, claim and outcome
    workers = [env.mailq('worker', *worker_args, env=worker_env) for _ in range(processes)]
    try:
        first, last = env.sink.wait_for(start, count, timeout)
        rss = sum(tree_rss(w.pid) for w in workers)
        _wait_recorded(rt, count)
        cpu = sum(tree_cpu(w.pid) for w in workers) + tree_cpu(env.redis.proc.pid) - redis_cpu
        scripts_usec = redis_usec(env, 'evalsha') - scripts_usec
    finally:
        for w in workers:
            env.stop(w)
    problems = check_records(rt, ids)
    return {'mails': count, 'seconds': round(last - first, 3),
            'rate': round((count - 1) / (last - first), 1), 'worker_rss': rss,
            'cpu_us_per_mail': round(cpu / count * 1e6),
            'redis_scripts_us_per_mail': round(scripts_usec / count, 1), 'problems': problems}


def alternating(rounds, plain, changed):
    """`plain()` and `changed()` (each a delivery run) in turn, `rounds` times, so both
    meet the same machine load; the figure is the median of the pairs' ratios, which
    one run disturbed either way (a shared box, seconds-long runs on 2 cores) cannot
    pick. The medians of each side's rates and CPU are kept too."""
    pairs = [(plain(), changed()) for _ in range(rounds)]
    median = statistics.median
    return {'without': median(a['rate'] for a, _ in pairs),
            'with': median(b['rate'] for _, b in pairs),
            'ratio': round(median(b['rate'] / a['rate'] for a, b in pairs), 3),
            'pair_ratios': [round(b['rate'] / a['rate'], 3) for a, b in pairs],
            'cpu_us_per_mail': {'without': median(a['cpu_us_per_mail'] for a, _ in pairs),
                                'with': median(b['cpu_us_per_mail'] for _, b in pairs)},
            'problems': [p for a, b in pairs for p in a['problems'] + b['problems']]}


SLOW_GROUP = '\n[throttle:slow]\ndomains = slow.example\nrate = 2\n'


def others_run(env, rt, count, slow=20, throttled=False, timeout=600):
    """`count` mails of which `slow`, spread evenly, go to slow.example; with
    `throttled`, a [throttle:slow] group sends those at 2/s. The rate of the others,
    from their records' sent_at (the sink cannot tell them apart), first to last: a slow
    destination must not hold them back. The worker stops once they are all sent."""
    env.flush()
    others = mails.fill_queued(rt, count - slow, chunk=2000)
    slow_mail = dataclasses.replace(mails.sample_mail(rt), recipients=['s@slow.example'])
    slow_ids = mails.fill_queued(rt, slow, template=slow_mail)
    _interleave(rt, slow)
    plain_ini = env.ini.read_text()
    if throttled:
        env.ini.write_text(plain_ini + SLOW_GROUP)
    redis_cpu = tree_cpu(env.redis.proc.pid)
    worker = env.mailq('worker', '-w', str(THREADS))
    try:
        sent = _wait_all_sent(rt, others, timeout)
        cpu = tree_cpu(worker.pid) + tree_cpu(env.redis.proc.pid) - redis_cpu
        slow_sent = len(_sent_times(rt, slow_ids))
    finally:
        env.stop(worker)
        env.ini.write_text(plain_ini)
    problems = [] if len(sent) == len(others) else [f'{len(sent)} of {len(others)} sent']
    span = max(sent) - min(sent)
    if throttled and slow_sent > 3 + 2 * span:    # the bucket's 2, then 2/s
        problems.append(f'{slow_sent} slow.example mails sent in {span:.1f} s: not held')
    return {'mails': len(others), 'rate': round((len(sent) - 1) / span, 1),
            'cpu_us_per_mail': round(cpu / len(others) * 1e6), 'problems': problems}


def _interleave(rt, slow):
    """Spread the last `slow` mails queued through the queue, as an app would queue them."""
    queue = rt.keys.queue(rt.config.worker.queue_names[0])
    tasks = rt.redis.lrange(queue, 0, -1)[::-1]        # in fetch order: the slow ones last
    others, late = tasks[:-slow], tasks[-slow:]
    every, mixed = len(others) // slow, []
    for n, task in enumerate(others):
        if n % every == 0 and late:
            mixed.append(late.pop())
        mixed.append(task)
    pipe = rt.redis.pipeline()
    pipe.delete(queue)
    pipe.lpush(queue, *mixed + late)                 # RPOP takes mixed[0] first
    pipe.execute()


def _wait_all_sent(rt, ids, timeout):
    """The sent_at of each of `ids`, once every one is sent (or at the timeout)."""
    deadline = time.monotonic() + timeout
    while True:
        done = int(rt.redis.get(rt.keys.stat('processed')) or 0) >= len(ids)
        if done or time.monotonic() > deadline:
            sent = _sent_times(rt, ids)
            if len(sent) == len(ids) or time.monotonic() > deadline:
                return sent
        time.sleep(0.1)


def _sent_times(rt, ids):
    times = []
    for start in range(0, len(ids), 5000):
        pipe = rt.redis.pipeline(transaction=False)
        for mail_id in ids[start:start + 5000]:
            pipe.hmget(rt.keys.record(mail_id), 'status', 'sent_at')
        times += [float(at) for status, at in pipe.execute() if status == b'sent']
    return times


def _wait_recorded(rt, count, timeout=60):
    deadline = time.monotonic() + timeout
    while int(rt.redis.get(rt.keys.stat('processed')) or 0) < count:
        if time.monotonic() > deadline:
            return
        time.sleep(0.05)


def check_records(rt, ids):
    """Every mail sent once, with one attempt in its log; no task left anywhere."""
    statuses, logs = {}, 0
    for start in range(0, len(ids), 5000):
        pipe = rt.redis.pipeline(transaction=False)
        for mail_id in ids[start:start + 5000]:
            pipe.hget(rt.keys.record(mail_id), 'status')
            pipe.get(rt.keys.attempts(mail_id))
        replies = pipe.execute()
        for status, attempts in zip(replies[::2], replies[1::2]):
            statuses[status] = statuses.get(status, 0) + 1
            logs += (attempts or b'').count(b'\n')
    problems = []
    if statuses != {b'sent': len(ids)}:
        problems.append(f'statuses {statuses}')
    if logs != len(ids):
        problems.append(f'{logs} attempts logged for {len(ids)} mails')
    left = [k for k in rt.redis.scan_iter(rt.keys.prefix + 'inflight:*') if rt.redis.llen(k)]
    if left:
        problems.append(f'tasks left in flight: {left}')
    return problems


def baseline_run(env, rt, count, timeout=600, one_cpu=False):
    """Plain Huey: pickled task with the same bytes, one SMTP connection per mail. With
    `one_cpu`, its consumer is kept on one CPU (`taskset`), as mailq's worker keeps
    itself by default ([worker] cpu_affinity): what that placement alone is worth."""
    from .plain_huey import send_mail    # reads BENCH_REDIS_URL, set by BenchEnv
    env.flush()
    sample = mails.sample_mail(rt)
    for _ in range(count):
        send_mail(sample.sender, sample.recipients, sample.raw)
    start = env.sink.mark()
    redis_cpu = tree_cpu(env.redis.proc.pid)
    pin = ['taskset', '-c', str(min(os.sched_getaffinity(0)))] if one_cpu else []
    consumer = start_process([*pin, PYTHON, '-m', 'huey.bin.huey_consumer',
                              'bench.plain_huey.huey', '-w', str(THREADS), '-k', 'thread'],
                             env={'PYTHONPATH': str(REPO)})
    try:
        first, last = env.sink.wait_for(start, count, timeout)
        rss = tree_rss(consumer.pid)
        cpu = tree_cpu(consumer.pid) + tree_cpu(env.redis.proc.pid) - redis_cpu
    finally:
        env.stop(consumer)
    return {'mails': count, 'seconds': round(last - first, 3),
            'rate': round((count - 1) / (last - first), 1), 'worker_rss': rss,
            'cpu_us_per_mail': round(cpu / count * 1e6)}
