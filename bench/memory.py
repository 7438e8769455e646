"""Redis memory per mail: queued (the 2 KB mail and the 20 KB HTML receipt), and the
receipt once sent, while its body is kept and after keep_sent_bodies. Each mail has a
Message-ID and a recipient of its own, so its search index entries are its own too.

A fresh redis-server keeps 300-400 KB more after its first thousand mails, whatever
comes after (measured on 7.0: the same after 1,000 or 5,000 mails, and FLUSHALL does not
return it), and loads each script once: fixed costs, which the bench's 1,000 mails
would count as 300-400 B a mail. So each Redis is warmed up first (a thousand mails
accepted and sent, then flushed), and the figures are what mails cost beyond that."""
import time

from mailq.store import body
from mailq.store.containers import task_mail_id

from . import mails


WARM_UP = 1000
_warm = set()


def queued_overhead(env, rt, count, template=None):
    """Growth of used_memory per queued mail. `overhead_bytes` is beyond the message as
    composed (the figure of earlier runs: a compressed body can make it negative);
    `structure_bytes` is beyond the body as stored (keys, record, task, allocator)."""
    _warm_up(env, rt)
    template = template or mails.sample_mail(rt)
    per_mail = _growth(env, lambda: mails.fill_queued(rt, count, template=template,
                                                        distinct=True), count)
    raw, stored = len(template.raw), len(body.pack(template.raw))
    return {'mails': count, 'bytes_per_mail': round(per_mail), 'message_bytes': raw,
            'stored_body_bytes': stored, 'overhead_bytes': round(per_mail - raw),
            'structure_bytes': round(per_mail - stored)}


def sent_html(env, rt, count):
    """The 20 KB receipt queued, then sent (take and finish, as a worker thread records a
    250), then after its body expired (the body keys deleted, as Redis's expiry does).
    Each figure is used_memory per mail over an empty Redis, counters included."""
    _warm_up(env, rt)
    template = mails.html_mail(rt)
    client = env.client()
    empty = client.info('memory')['used_memory']
    ids = mails.fill_queued(rt, count, template=template, distinct=True)
    queued = client.info('memory')['used_memory']
    _send_all(rt, count)
    kept = client.info('memory')['used_memory']
    assert all(client.pttl(rt.keys.body(i)) > 0 for i in ids[:10]), 'no body expiry set'
    pipe = client.pipeline(transaction=False)
    for mail_id in ids:
        pipe.delete(rt.keys.body(mail_id))
    pipe.execute()
    gone = client.info('memory')['used_memory']
    raw = len(template.raw)
    return {'mails': count, 'message_bytes': raw, 'stored_body_bytes': len(body.pack(template.raw)),
            'queued_per_mail': round((queued - empty) / count),
            'sent_per_mail': round((kept - empty) / count),
            'sent_share': round((kept - empty) / count / raw, 3),
            'after_body_per_mail': round((gone - empty) / count)}


def _warm_up(env, rt):
    """Pay a fresh Redis's fixed costs (see above) once, then empty it."""
    if env.redis.url not in _warm:
        mails.fill_queued(rt, WARM_UP, template=mails.html_mail(rt), distinct=True)
        _send_all(rt, WARM_UP)
        _warm.add(env.redis.url)
    env.flush()


def _send_all(rt, count):
    store = rt.store
    for _ in range(count):
        queue, task, claim = store.take('bench:1:mem', ['mailers'], 't1')
        mail_id = task_mail_id(task)
        attempt = {'at': time.time(), 'worker': 'bench:1:mem', 'outcome': 'sent', 'code': 250,
                   'reply': '2.0.0 Ok: queued as 4XyZ1', 'duration': 0.002}
        store.finish(mail_id, task, 'bench:1:mem', 't1', 'sent', attempt)


def _growth(env, fill, count):
    client = env.client()
    before = client.info('memory')['used_memory']
    fill()
    return (client.info('memory')['used_memory'] - before) / count
