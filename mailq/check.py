"""`mailq check` and `/healthz`: is this configuration ready to run, and is it running?

The config itself was already validated by loading it; here we reach Redis
(version, persistence), SMTP (connect, EHLO, TLS and AUTH as configured;
nothing is sent), render every mail template and validate the cron jobs.
`mailq check` exits 1 when anything fails, for a container health check.
/healthz answers 503 only when a check this instance cannot work without
fails (Redis, templates): a relay outage is reported but is what the queue
rides out, and a restart would not fix it.
"""
import dataclasses
import smtplib
import time
import weakref
from dataclasses import dataclass, field
from pathlib import Path

from .cron.validate import check_report as check_cron
from .runtime import Runtime
from .service import health
from .transport import SMTPTransport

HEALTHZ_SMTP_TIMEOUT = 5.0
HEALTHZ_SMTP_EVERY = 30.0     # seconds a /healthz SMTP result is reused: probes are frequent


@dataclass
class Result:
    name: str
    ok: bool
    text: str
    required: bool = True     # this instance cannot do its job without it
    details: dict = field(default_factory=dict)


def check_redis(rt):
    ok, details = health(rt)
    if not ok:
        return Result('redis', False, f'unreachable at {rt.config.redis.url}: '
                      f'{details["reason"]}', details=details)
    text = f'ok, version {details["redis_version"]}'
    if not details['persistence']:
        text += '; WARNING: ' + details['warning']
    else:
        text += ', persistence on'
    return Result('redis', True, text, details=details)


def check_smtp(config, timeout=None):
    smtp = config.smtp
    if smtp.transport != 'smtp':
        return Result('smtp', True, f'transport = {smtp.transport} (nothing is sent)', False)
    if timeout is not None:
        smtp = dataclasses.replace(smtp, timeout=min(smtp.timeout, timeout))
    try:
        conn = SMTPTransport(smtp)._open()
    except smtplib.SMTPAuthenticationError as exc:
        return Result('smtp', False, f'authentication refused: {exc.smtp_code}', False)
    except (OSError, smtplib.SMTPException) as exc:
        return Result('smtp', False, f'cannot reach {smtp.host}:{smtp.port}: {exc}', False)
    conn.quit()
    return Result('smtp', True, f'ok, {smtp.host}:{smtp.port} ({smtp.security})', False)


def check_templates(rt):
    names = rt.templates.names()
    if not names:
        return Result('templates', False, f'no templates in {rt.templates.path}')
    errors = [e for name in names for e in rt.templates.check(name)]
    if errors:
        return Result('templates', False, '; '.join(errors))
    return Result('templates', True, f'{len(names)} rendered: {", ".join(names)}')


def check_config(config):
    if not Path(config.source).exists():
        return Result('config', True, f'no file at {config.source}: defaults and '
                                      'MAILQ_* environment variables')
    return Result('config', True, f'{config.source} ok')


def results(rt, smtp=None):
    """Every check, in order. `smtp` replaces the SMTP check (a cached one)."""
    return [check_config(rt.config), check_redis(rt),
            smtp or check_smtp(rt.config), check_templates(rt),
            Result('cron', *check_cron(rt), required=False)]


def run_checks(config, out=print):
    found = results(Runtime(config))
    for r in found:
        out(f'{r.name:10} {"ok  " if r.ok else "FAIL"} {r.text}')
    return 0 if all(r.ok for r in found) else 1


_smtp_cache = weakref.WeakKeyDictionary()


def healthz(rt, now=None):
    """(ok, body) for /healthz: per-check results; ok unless a required check fails."""
    now = now or time.monotonic()
    cached = _smtp_cache.get(rt)
    if cached is None or now - cached[0] > HEALTHZ_SMTP_EVERY:
        cached = _smtp_cache[rt] = (now, check_smtp(rt.config, HEALTHZ_SMTP_TIMEOUT))
    found = results(rt, smtp=cached[1])
    ok = all(r.ok for r in found if r.required)
    redis_details = next(r.details for r in found if r.name == 'redis')
    return ok, {'ok': ok, **redis_details,
                'checks': {r.name: {'ok': r.ok, 'detail': r.text} for r in found}}
