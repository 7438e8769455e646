"""Cron job checks that fail at start-up, naming section and key, instead of at 08:00.

`check_static` needs only the config and runs in startup.validate_startup(), which
every role calls after config.load().
`check_runtime` needs the mail templates and the user's code, so it runs where a
Runtime exists: worker start, web start and `mailq check`.
"""
import re
import time

from ..compose import compose
from ..errors import ConfigError, ValidationError
from .definitions import jobs
from .imports import SPEC, import_modules, resolve
from .run import template_mail
from .schedule import CronError, Schedule, validate_timezone

JOB_NAME = re.compile(r'^[A-Za-z0-9_.-]{1,64}$')
JOB_KEYS = ('to', 'template', 'context', 'queue')


def check_static(config):
    """Syntax, timezones, template-or-callable, queues. Raises ConfigError."""
    try:
        validate_timezone(config.cron.timezone)
    except CronError as exc:
        raise config.error(str(exc), 'cron', 'timezone') from None
    seen = set()
    for job in config.cron_jobs:
        _check_job(config, job, seen)


def _check_job(config, job, seen):
    def fail(message, key=None):
        raise ConfigError(message, config.source, f'cron:{job.name}', key)

    if not JOB_NAME.match(job.name):
        fail('bad job name (1 to 64 letters, digits, _ . -)')
    if job.name in seen:
        fail('job defined twice')
    seen.add(job.name)
    if not job.schedule:
        fail('is required, e.g. "0 8 * * mon-fri" or "@daily"', 'schedule')
    try:
        Schedule(job.schedule, 'UTC')
    except CronError as exc:
        fail(str(exc), 'schedule')
    try:
        validate_timezone(job.timezone or 'UTC')
    except CronError as exc:
        fail(str(exc), 'timezone')
    if job.template and job.callable:
        fail('give template or callable, not both', 'callable')
    if not job.template and not job.callable:
        fail('give template (with to) or callable', 'template')
    if job.template and not job.to:
        fail('is required for a template job', 'to')
    if job.callable:
        if not SPEC.match(job.callable):
            fail('must look like package.module:function', 'callable')
        for key in ('to', 'context'):
            if getattr(job, key):
                fail('only used with template: the callable returns complete mails', key)
    if job.catch_up > config.limits.idempotency_ttl:
        fail(f'must be at most [limits] idempotency_ttl ({config.limits.idempotency_ttl}): '
             'a run redone after a crash relies on its idempotency keys', 'catch_up')
    if job.queue and job.queue not in config.worker.queue_names:
        fail(f'unknown queue {job.queue!r} (known: {", ".join(config.worker.queue_names)})',
             'queue')


def check_runtime(rt):
    """Imports, callables, and one dry render of every template job. Raises ConfigError."""
    config = rt.config
    try:
        import_modules(config)
    except ImportError as exc:
        raise ConfigError(str(exc), config.source, 'mailq', 'imports') from None
    for job in jobs(config).values():
        if job.kind == 'callable':
            try:
                resolve(job.config.callable, config)
            except (ImportError, TypeError) as exc:
                raise ConfigError(str(exc), config.source, job.section, 'callable') from None
        else:
            _dry_render(rt, job)


def _dry_render(rt, job):
    """Compose the job's mail as its next run would, without enqueueing it."""
    data = template_mail(job, job.local(time.time()))
    try:
        compose(data, config=rt.config, templates=rt.templates)
    except ValidationError as exc:
        key = re.split(r'[\[.]', exc.field)[0]
        raise ConfigError(exc.message, rt.config.source, job.section,
                          key if key in JOB_KEYS else 'template') from None


def check_report(rt):
    """(ok, text) for `mailq check`: every job checked as at worker start."""
    try:
        check_runtime(rt)
    except ConfigError as exc:
        return False, str(exc)
    found = jobs(rt.config)
    if not found:
        return True, 'no jobs'
    return True, f'{len(found)} ok: ' + '; '.join(
        f'{name} {job.schedule.describe()}' for name, job in found.items())
