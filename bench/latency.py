"""Latency at a steady rate, and punctuality of scheduled mails, through a running
`mailq.py worker -w 25`.

Times come from the records: created_at (set at enqueue), send_at, and sent_at,
which the worker sets right after the sink's 250 reply to the final ".", so each
figure is an upper bound on enqueue-to-accept.
"""
import time

import mailq
from mailq import service

from . import mails


def paced(rate, seconds):
    """0, 1, ... `rate * seconds`, each at its time (an open loop: a slow step is not
    waited for by the next ones' schedule)."""
    started = time.monotonic()
    for n in range(int(rate * seconds)):
        pause = started + n / rate - time.monotonic()
        if pause > 0:
            time.sleep(pause)
        yield n


def steady(env, rt, rate, seconds):
    """Enqueue `rate` mails/s with mailq.send() for `seconds`; enqueue-to-sent times."""
    ids = [mailq.send(**mails.request(n))['id'] for n in paced(rate, seconds)]
    records = wait_sent(rt, ids, timeout=seconds + 60)
    return summary([r['sent_at'] - r['created_at'] for r in records])


def punctual(env, rt, count, spread, lead=2.0):
    """`count` mails with send_at spread evenly over `spread` seconds; how late each went."""
    items = [mails.request(n, delay=lead + spread * n / count) for n in range(count)]
    ids = []
    for start in range(0, count, 1000):
        ids += [m['id'] for m in service.send_batch(rt, items[start:start + 1000])]
    records = wait_sent(rt, ids, timeout=lead + spread + 60)
    return summary([r['sent_at'] - r['send_at'] for r in records])


def wait_sent(rt, ids, timeout):
    deadline = time.monotonic() + timeout
    while True:
        pipe = rt.redis.pipeline(transaction=False)
        for mail_id in ids:
            pipe.hmget(rt.keys.record(mail_id), 'status', 'created_at', 'send_at', 'sent_at')
        rows = pipe.execute()
        if all(row[0] == b'sent' for row in rows):
            return [{'created_at': float(c), 'send_at': float(s or 0), 'sent_at': float(t)}
                    for _, c, s, t in rows]
        if time.monotonic() > deadline:
            raise TimeoutError(f'{sum(r[0] != b"sent" for r in rows)} mails not sent in time')
        time.sleep(0.25)


def summary(values):
    values = sorted(values)
    pick = lambda q: values[min(len(values) - 1, int(q * len(values)))]   # noqa: E731
    return {'count': len(values), 'p50_ms': round(pick(0.50) * 1000, 1),
            'p99_ms': round(pick(0.99) * 1000, 1), 'max_ms': round(values[-1] * 1000, 1)}
