"""What can be done with mails: the one set of functions behind the HTTP API,
the CLI, the dashboard and `mailq.send()`.

Each function takes a Runtime and plain data and returns plain data (JSON-able
dicts). Errors are raised as mailq.errors exceptions; Redis errors are turned
into Unavailable so every surface can answer "Redis is down" the same way.
"""
import contextlib
import datetime
import time

import redis

from .compose import compose
from .errors import Conflict, NotFound, Unavailable, ValidationError
from .redisconn import is_outage, outage_text, persistence_warning


@contextlib.contextmanager
def redis_errors():
    """Turn a lost Redis (or one refusing writes for now: OOM, MISCONF, READONLY...)
    into Unavailable, with the reason."""
    try:
        yield
    except redis.RedisError as exc:
        if not is_outage(exc):
            raise
        raise Unavailable(outage_text(exc)) from None


def iso(ts):
    if ts in (None, '', b''):
        return None
    return datetime.datetime.fromtimestamp(float(ts), datetime.timezone.utc).isoformat(
        timespec='milliseconds').replace('+00:00', 'Z')


def send(rt, data, idempotency_key=None):
    """Validate, render and enqueue one mail. Returns {id, status, queue, send_at}."""
    mail = compose(data, config=rt.config, templates=rt.templates,
                   idempotency_key=idempotency_key)
    with redis_errors():
        reply = rt.store.accept(mail, rt.new_task(mail.id, mail.queue))
    return _accepted(mail, reply)


def send_batch(rt, items, max_batch=None):
    """All mails valid, then all enqueued in one MULTI/EXEC; or none at all."""
    max_batch = max_batch or rt.config.limits.max_batch
    if not isinstance(items, list) or not items:
        raise ValidationError('mails', 'must be a non-empty list')
    if len(items) > max_batch:
        raise ValidationError('mails', f'at most {max_batch} mails per batch')
    mails = []
    for i, data in enumerate(items):
        try:
            mails.append(compose(data, config=rt.config, templates=rt.templates))
        except ValidationError as exc:
            raise ValidationError(f'mails[{i}].{exc.field}', exc.message) from None
    with redis_errors():
        pipe = rt.redis.pipeline(transaction=True)
        for mail in mails:
            rt.store.accept(mail, rt.new_task(mail.id, mail.queue), pipe=pipe)
        replies = pipe.execute()
    return [_accepted(mail, reply) for mail, reply in zip(mails, replies)]


def _accepted(mail, reply):
    if int(reply[0]) == 0:   # idempotency key seen before: the earlier mail
        existing_id, status, queue, send_at = (v.decode() for v in reply[1:5])
        return {'id': existing_id, 'status': status, 'queue': queue,
                'send_at': iso(send_at), 'duplicate': True}
    scheduled = mail.send_at is not None and mail.send_at > time.time()
    return {'id': mail.id, 'status': 'scheduled' if scheduled else 'queued',
            'queue': mail.queue, 'send_at': iso(mail.send_at)}


def get_mail(rt, mail_id, with_raw=False):
    with redis_errors():
        record = rt.store.get(mail_id, with_raw=with_raw)
    if record is None:
        raise NotFound(f'no mail {mail_id!r}')
    return public_view(record)


def public_view(record):
    attempts = [{'at': iso(a.get('at')), 'worker': a.get('worker'), 'outcome': a.get('outcome'),
                 'code': a.get('code') or None, 'reply': a.get('reply'),
                 'duration': a.get('duration'), 'refused': a.get('refused', {})}
                for a in record['attempt_log']]
    view = {
        'id': record.get('id'), 'status': record.get('status'), 'queue': record.get('queue'),
        'attempts': int(record.get('attempts') or 0), 'created_at': iso(record.get('created_at')),
        'send_at': iso(record.get('send_at')), 'sent_at': iso(record.get('sent_at')),
        'next_attempt_at': iso(record.get('next_at')) if record.get('status') == 'retrying'
        else None,
        'message_id': record.get('message_id'), 'last_error': record.get('last_error') or None,
        'from': record.get('from'), 'to': record.get('to'), 'subject': record.get('subject'),
        'template': record.get('template') or None, 'history': attempts,
    }
    if 'raw' in record:
        view['raw'] = record['raw']
    return view


def cancel(rt, mail_id):
    with redis_errors():
        result = rt.store.cancel(mail_id)
    if result == 'missing':
        raise NotFound(f'no mail {mail_id!r}')
    if result in ('sent', 'sending'):
        raise Conflict(f'mail {mail_id} is already {result}')
    return {'id': mail_id, 'status': 'cancelled'}


def stats(rt):
    with redis_errors():
        return rt.store.counts()


def health(rt):
    """(ok, details) for /healthz and `mailq check`."""
    try:
        info = rt.redis.info('server')
        warning = persistence_warning(rt.redis)
    except redis.RedisError as exc:
        if not is_outage(exc):
            raise
        return False, {'redis': 'unreachable', 'reason': str(exc)}
    details = {'redis': 'ok', 'redis_version': info.get('redis_version'),
               'persistence': warning is None}
    if warning:
        details['warning'] = warning
    return True, details
