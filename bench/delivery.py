"""Delivery throughput: N queued mails drained into smtp-sink, timed at the sink.

mailq runs as `mailq.py worker` (threads, -k process, or two processes); the
baseline is `huey_consumer -w 25 -k thread` running bench/plain_huey.py. Each
mailq run is checked afterwards: every mail sent, one attempt logged, nothing
left in flight.
"""
import time

from . import mails
from .env import PYTHON, REPO, start_process, tree_cpu, tree_rss

THREADS = 25


def mailq_run(env, rt, count, worker_args, processes=1, timeout=600, worker_env=None,
              template=None):
    env.flush()
    ids = mails.fill_queued(rt, count, template=template)
    start = env.sink.mark()
    redis_cpu = tree_cpu(env.redis.proc.pid)
    workers = [env.mailq('worker', *worker_args, env=worker_env) for _ in range(processes)]
    try:
        first, last = env.sink.wait_for(start, count, timeout)
        rss = sum(tree_rss(w.pid) for w in workers)
        _wait_recorded(rt, count)
        cpu = sum(tree_cpu(w.pid) for w in workers) + tree_cpu(env.redis.proc.pid) - redis_cpu
    finally:
        for w in workers:
            env.stop(w)
    problems = check_records(rt, ids)
    return {'mails': count, 'seconds': round(last - first, 3),
            'rate': round((count - 1) / (last - first), 1), 'worker_rss': rss,
            'cpu_us_per_mail': round(cpu / count * 1e6), 'problems': problems}


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
            pipe.llen(rt.keys.log(mail_id))
        replies = pipe.execute()
        for status, log_len in zip(replies[::2], replies[1::2]):
            statuses[status] = statuses.get(status, 0) + 1
            logs += log_len
    problems = []
    if statuses != {b'sent': len(ids)}:
        problems.append(f'statuses {statuses}')
    if logs != len(ids):
        problems.append(f'{logs} attempts logged for {len(ids)} mails')
    left = [k for k in rt.redis.scan_iter(rt.keys.prefix + 'inflight:*') if rt.redis.llen(k)]
    if left:
        problems.append(f'tasks left in flight: {left}')
    return problems


def baseline_run(env, rt, count, timeout=600):
    """Plain Huey: pickled task with the same bytes, one SMTP connection per mail."""
    from .plain_huey import send_mail    # reads BENCH_REDIS_URL, set by BenchEnv
    env.flush()
    sample = mails.sample_mail(rt)
    for _ in range(count):
        send_mail(sample.sender, sample.recipients, sample.raw)
    start = env.sink.mark()
    redis_cpu = tree_cpu(env.redis.proc.pid)
    consumer = start_process([PYTHON, '-m', 'huey.bin.huey_consumer', 'bench.plain_huey.huey',
                              '-w', str(THREADS), '-k', 'thread'], env={'PYTHONPATH': str(REPO)})
    try:
        first, last = env.sink.wait_for(start, count, timeout)
        rss = tree_rss(consumer.pid)
        cpu = tree_cpu(consumer.pid) + tree_cpu(env.redis.proc.pid) - redis_cpu
    finally:
        env.stop(consumer)
    return {'mails': count, 'seconds': round(last - first, 3),
            'rate': round((count - 1) / (last - first), 1), 'worker_rss': rss,
            'cpu_us_per_mail': round(cpu / count * 1e6)}
