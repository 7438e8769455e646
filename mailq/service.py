"""What can be done with mails: the one set of functions behind the HTTP API,
the CLI, the dashboard and `mailq.send()`.

Each function takes a Runtime and plain data and returns plain data (JSON-able
dicts). Errors are raised as mailq.errors exceptions; Redis errors are turned
into Unavailable so every surface can answer "Redis is down" the same way.
"""
import contextlib
import hashlib
import json
import logging
import time

import redis

from .compose import compose, release_copy
from .compose_raw import compose_message
from .errors import Conflict, NotFound, Unavailable, ValidationError
from .redisconn import is_outage, outage_text, persistence_warning
from .store.mails import reused_key
from .store.record import body_gone, iso
from .store.states import CANCELLED, QUEUED, SCHEDULED, SENDING, SENT, SUPPRESSED

log = logging.getLogger('mailq.service')


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


def send(rt, data, idempotency_key=None, check_request=True):
    """Validate, render and enqueue one mail. Returns {id, status, queue, send_at}, plus
    duplicate: true for an idempotency key seen before. With `check_request`, the same
    key with a different request is a Conflict (Stripe's rule); cron's re-runs, whose
    callables may render anew, pass False."""
    mail = compose(data, config=rt.config, templates=rt.templates,
                   idempotency_key=idempotency_key)
    request_hash = fingerprint(data) if check_request and mail.idempotency_key else ''
    with redis_errors():
        result = rt.store.accept(mail, rt.new_task(mail.id, mail.queue), request_hash)
        return _accepted(rt, mail, result, request_hash)


def send_message(rt, raw, sender, recipients, *, source='', client='', user=''):
    """Enqueue a finished RFC 5322 message with its envelope (SMTP submission, sendmail,
    Django): compose_raw validates it, then the same accept script as send(). Returns
    send()'s dict; a repeated idempotency key (X-Mailq-Idempotency-Key) names the
    earlier mail, or is a Conflict for a different message."""
    item = prepare_message(rt, raw, sender, recipients, source=source, client=client,
                           user=user)
    with redis_errors():
        return message_accepted(rt, item, rt.store.accept(*item))


def prepare_message(rt, raw, sender, recipients, *, source='', client='', user=''):
    """send_message's checks, without Redis: the (mail, task, request hash) that
    Store.accept (or Store.accept_each, several in one round trip) stores."""
    mail, request_hash = compose_message(raw, sender, recipients, config=rt.config,
                                         source=source, client=client, user=user)
    return mail, rt.new_task(mail.id, mail.queue), request_hash


def message_accepted(rt, item, result):
    """send_message's dict for an item of prepare_message, once stored: `result` is the
    Accepted, or the exception of its script (a lost Redis becomes Unavailable)."""
    mail, _, request_hash = item
    with redis_errors():
        if isinstance(result, Exception):
            raise result
        return _accepted(rt, mail, result, request_hash)


def send_batch(rt, items, max_batch=None, check_request=True):
    """All mails valid, then all enqueued in one MULTI/EXEC; or none at all."""
    max_batch = max_batch or rt.config.limits.max_batch
    if not isinstance(items, list) or not items:
        raise ValidationError('mails', 'must be a non-empty list')
    if len(items) > max_batch:
        raise ValidationError('mails', f'at most {max_batch} mails per batch')
    mails = []
    for i, data in enumerate(items):
        try:
            mail = compose(data, config=rt.config, templates=rt.templates)
        except ValidationError as exc:
            raise ValidationError(f'mails[{i}].{exc.field}', exc.message) from None
        mails.append((mail, rt.new_task(mail.id, mail.queue),
                      fingerprint(data) if check_request and mail.idempotency_key else ''))
    with redis_errors():
        results = rt.store.accept_all(mails)
        return [_accepted(rt, mail, result, request_hash)
                for (mail, _, request_hash), result in zip(mails, results)]


def fingerprint(data):
    """What an idempotency key's request is compared by: its JSON, key order and the
    key itself (a header or a field) aside."""
    data = {k: v for k, v in data.items() if k != 'idempotency_key'}
    text = json.dumps(data, sort_keys=True, separators=(',', ':'), ensure_ascii=False)
    return hashlib.sha256(text.encode('utf-8', 'surrogatepass')).hexdigest()[:32]


def _accepted(rt, mail, result, request_hash):
    if not result.new:      # idempotency key seen before: the earlier mail
        earlier = rt.store.earlier(result.id)
        if request_hash and earlier.request_hash and earlier.request_hash != request_hash:
            raise reused_key(mail.idempotency_key, f'mail {earlier.id}')
        return {'id': earlier.id, 'status': earlier.status, 'queue': earlier.queue,
                'send_at': iso(earlier.send_at), 'duplicate': True}
    scheduled = mail.send_at is not None and mail.send_at > time.time()
    status = SCHEDULED if scheduled else QUEUED
    if result.all_suppressed:
        status = SUPPRESSED         # every recipient is suppressed: stored, never sent
    return {'id': mail.id, 'status': status, 'queue': mail.queue,
            'send_at': iso(mail.send_at), 'suppressed': list(dict.fromkeys(result.suppressed))}


def release(rt, mail_id, to):
    """Release a caught mail (one in the outbox) to `to` through the real relay: a new
    mail with its own record, accepted like any other, whose worker sends it through
    [smtp] release_host (or the main relay). The caught mail stays as it is."""
    smtp = rt.config.smtp
    if smtp.release_relay() is None:
        raise Conflict('no relay to release through: set [smtp] release_host (or '
                       'transport = smtp)')
    if isinstance(to, str):
        to = [to]
    with redis_errors():
        original = rt.store.get(mail_id, with_raw=True)
        if original is None:
            raise NotFound(f'no mail {mail_id!r}')
        if not rt.store.outbox.contains(mail_id):
            raise Conflict(f'mail {mail_id} is not in the outbox (it is {original.status})')
    mail = release_copy(original, to, config=rt.config)
    if smtp.allow_recipients:
        from .transport import Staging
        refused = [r for r in mail.recipients if not Staging(smtp).allowed(r)]
        if refused:
            raise ValidationError('to', f'{", ".join(refused)} not in [smtp] allow_recipients '
                                        f'({", ".join(smtp.allow_recipients)})')
    with redis_errors():
        rt.store.accept(mail, rt.new_task(mail.id, mail.queue))
        rt.store.note_release(mail_id, mail.id, mail.recipients, mail.created_at)
    log.info('released mail %s to %s as mail %s', mail_id, ', '.join(mail.recipients), mail.id,
             extra={'fields': {'event': 'release', 'mail': mail_id, 'copy': mail.id,
                               'to': mail.recipients}})
    return {'id': mail.id, 'status': QUEUED, 'released_from': mail_id, 'to': mail.recipients}


def get_mail(rt, mail_id):
    """GET /api/mails/<id>: the record's API view."""
    with redis_errors():
        record = rt.store.get(mail_id)
    if record is None:
        raise NotFound(f'no mail {mail_id!r}')
    view = record.view()
    if not record.body_kept:
        view['body_note'] = body_gone(rt.config.worker)
    return view


def cancel(rt, mail_id):
    with redis_errors():
        result = rt.store.cancel(mail_id)
    if result == 'missing':
        raise NotFound(f'no mail {mail_id!r}')
    if result in (SENT, SENDING, SUPPRESSED):
        raise Conflict(f'mail {mail_id} is already {result}')
    return {'id': mail_id, 'status': CANCELLED}


def stats(rt):
    with redis_errors():
        return rt.store.counts()


def health(rt):
    """(ok, details) for /healthz and `mailq check`."""
    try:
        info = rt.store.server_info('server')
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
