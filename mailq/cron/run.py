"""One run of a cron job: build its mails, enqueue them, record the outcome.

Mails go through `service.send` / `service.send_batch`, the same path as the
HTTP API. Each mail's idempotency key is derived from (job, fire time), so a
run redone after its worker died between claim and enqueue finds the mails
already queued instead of sending them twice.
"""
import hashlib
import logging
import time

from .. import service
from ..errors import Unavailable, ValidationError
from ..redisconn import is_outage
from .imports import resolve

log = logging.getLogger('mailq.cron')
MAX_ERROR = 500


def template_mail(job, fired_at):
    """The API request for a template job's mail fired at `fired_at` (local datetime)."""
    cfg = job.config
    data = {'to': cfg.to, 'template': cfg.template,
            'context': dict(cfg.context, fired_at=fired_at.isoformat())}
    if cfg.queue:
        data['queue'] = cfg.queue
    return data


def callable_mails(rt, job, fired_at, key):
    """The callable's mails, each with an idempotency key under `key`."""
    produced = resolve(job.config.callable, rt.config)(fired_at)
    if isinstance(produced, (dict, str, bytes)) or not hasattr(produced, '__iter__'):
        raise ValidationError('mails', f'{job.config.callable} must return a list of mails, '
                                       f'not {type(produced).__name__}')
    mails = []
    for i, item in enumerate(produced):
        if not isinstance(item, dict):
            raise ValidationError(f'mails[{i}]', 'must be a dict like the HTTP API takes')
        own = item.get('idempotency_key')
        suffix = hashlib.sha256(str(own).encode()).hexdigest()[:16] if own else str(i)
        mail = dict(item, idempotency_key=f'{key}:{suffix}')
        if job.config.queue:
            mail.setdefault('queue', job.config.queue)
        mails.append(mail)
    return mails


def enqueue(rt, job, fired_at, key):
    """Enqueue the run's mails; returns what the service accepted."""
    if job.kind == 'template':
        return [service.send(rt, template_mail(job, fired_at), idempotency_key=key,
                         check_request=False)]
    mails = callable_mails(rt, job, fired_at, key)
    if not mails:
        return []
    return service.send_batch(rt, mails, max_batch=len(mails), check_request=False)


def redis_outage(exc):
    """Redis gone or refusing for now (OOM, READONLY...): the run waits for it."""
    return isinstance(exc, Unavailable) or is_outage(exc)


def run_once(rt, state, job, fire, key, *, token='', worker='', manual=False, clock=time.time):
    """Run `job` for fire time `fire` (epoch) and record the run. Returns the run.

    A failing template or callable is a failed run; Redis errors propagate, so the
    claim stays pending and the run is redone (see ticker.py).
    """
    run = {'fire_time': fire, 'enqueued_at': None, 'outcome': 'ok', 'mail_ids': [],
           'error': None, 'manual': manual, 'worker': worker}
    try:
        accepted = enqueue(rt, job, job.local(fire), key)
        run['mail_ids'] = [mail['id'] for mail in accepted]
        run['enqueued_at'] = clock()
    except Exception as exc:
        if redis_outage(exc):
            raise
        if isinstance(exc, ValidationError):
            run.update(outcome='failed', error=str(exc)[:MAX_ERROR])
        else:
            log.exception('cron job %s failed (fire time %s)', job.name, job.local(fire))
            run.update(outcome='failed', error=f'{type(exc).__name__}: {exc}'[:MAX_ERROR])
    with service.redis_errors():
        state.finish(job.name, fire, token, run)
    level = logging.INFO if run['outcome'] == 'ok' else logging.WARNING
    log.log(level, 'cron job=%s fire_time=%s outcome=%s mails=%d%s', job.name,
            job.local(fire).isoformat(), run['outcome'], len(run['mail_ids']),
            f' error="{run["error"]}"' if run['error'] else '')
    return run
