"""The benchmark's mail (about 2 KB on the wire) and fast ways to fill Redis with it.

Queued and scheduled mails go through mailq's own compose() and accept script,
pipelined. Retrying and dead records (which only a worker writes) are written
with the fields the finish script sets, on top of Mail.record_fields().
"""
import dataclasses
import json
import time

from mailq.compose import compose, new_mail_id

WORDS = ('lorem ipsum dolor sit amet consectetur adipiscing elit sed do eiusmod tempor '
         'incididunt ut labore et dolore magna aliqua ').split()


def body_text(size):
    words, length = [], 0
    while length < size:
        word = WORDS[len(words) % len(WORDS)]
        words.append(word)
        length += len(word) + 1
    lines = [' '.join(words[i:i + 10]) for i in range(0, len(words), 10)]
    return '\n'.join(lines) + '\n'


def request(n=0, **extra):
    """The API/send() fields of benchmark mail number n; the body makes it about 2 KB."""
    return {'to': f'user{n}@example.com', 'from': 'Bench <bench@example.com>',
            'subject': f'Your receipt {n}', 'text': TEXT, **extra}


TEXT = body_text(1750)


def sample_mail(rt, n=0):
    return compose(request(n), config=rt.config, templates=rt.templates)


def fill_queued(rt, count, queues=None, chunk=2000, send_at=None):
    """`count` mails through the real accept script, pipelined. Returns their ids."""
    queues = queues or rt.config.worker.queue_names[:1]
    template = sample_mail(rt)
    ids = []
    for start in range(0, count, chunk):
        pipe = rt.redis.pipeline(transaction=False)
        for n in range(start, min(start + chunk, count)):
            mail = dataclasses.replace(template, id=new_mail_id(), queue=queues[n % len(queues)],
                                       send_at=send_at)
            rt.store.accept(mail, rt.new_task(mail.id, mail.queue), pipe=pipe)
            ids.append(mail.id)
        pipe.execute()
    return ids


def fill_finished(rt, count, status, chunk=2000, now=None):
    """`count` mails as the finish script leaves them after one failed attempt:
    'retrying' (task in the retry set) or 'dead' (id in the dead set)."""
    keys, template = rt.keys, sample_mail(rt)
    now = now or time.time()
    for start in range(0, count, chunk):
        pipe = rt.redis.pipeline(transaction=False)
        for n in range(start, min(start + chunk, count)):
            mail = dataclasses.replace(template, id=new_mail_id(), queue=template.queue)
            task = rt.new_task(mail.id, mail.queue)
            fields = mail.record_fields(status=status, task=task)
            error = ('451 4.3.0 try again later' if status == 'retrying'
                     else '550 5.1.1 no such user')
            fields.update(attempts=1, last_error=error, finished_at=now - n)
            attempt = {'at': now - n, 'worker': 'bench:1:aaaaaa', 'outcome': status,
                       'code': int(error[:3]), 'reply': error[4:], 'duration': 0.002}
            if status == 'retrying':
                fields['next_at'] = now + 3600 + n
                pipe.zadd(keys.retry, {task: fields['next_at']})
            else:
                pipe.zadd(keys.dead, {mail.id: now - n})
            pipe.hset(keys.record(mail.id), mapping=fields)
            pipe.rpush(keys.log(mail.id), json.dumps(attempt))
        pipe.execute()
