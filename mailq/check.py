"""`mailq check` and `/healthz`: is this configuration ready to run, and is it running?

The config itself was already validated by loading it; here we reach Redis
(version, persistence), SMTP (connect, EHLO, TLS and AUTH as configured;
nothing is sent), render every mail template and validate the cron jobs.
`mailq check` exits 1 when anything fails, for a container health check.
/healthz answers 503 only when a check this instance cannot work without
fails (Redis, templates): a relay outage is reported but is what the queue
rides out, and a restart would not fix it. /healthz needs no login: with [web]
credentials set, an anonymous caller sees only ok per check; the texts (which
name the config file, hosts, ports, templates) are for a logged-in caller, or
for every caller of a loopback-only mailq without credentials. Either way no
text here may carry a password: URLs are shown redacted, and every text is
scrubbed of the configured secrets, since exception texts can quote them.
"""
import dataclasses
import smtplib
import time
import weakref
from dataclasses import dataclass, field
from pathlib import Path

from .redisconn import redacted_url
from .cron.validate import check_report as check_cron
from .logs import redact
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
        return Result('redis', False, f'unreachable at {redacted_url(rt.config.redis.url)}: '
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


def check_staging(config):
    """[smtp] allow_recipients / redirect_to: not a failure, but never a surprise."""
    smtp = config.smtp
    relay = smtp.release_relay()
    release = (f'; releases go through {relay.host}:{relay.port}' if relay
               else '; no relay for releases')
    if smtp.transport == 'outbox':
        return Result('staging', True, smtp.staging_text + ' (but transport = outbox keeps '
                      'every mail anyway)' + release, False)
    return Result('staging', True, smtp.staging_text + release, False)


def check_templates(rt):
    """Fails only on errors every mail would hit; a render that may just need the
    caller's variables (`{{ n + 1 }}`) is a warning, or /healthz would be 503 for good."""
    names = rt.templates.names()
    if not names:
        return Result('templates', False, f'no templates in {rt.templates.path}')
    found = [rt.templates.check(name) for name in names]
    errors = [e for errs, _ in found for e in errs]
    warnings = [w for _, warns in found for w in warns]
    text = '; '.join(errors) if errors else f'{len(names)} rendered: {", ".join(names)}'
    if warnings:
        text += (f'; {len(warnings)} warning(s), may work with the caller\'s context: '
                 + '; '.join(warnings))
    return Result('templates', not errors, text)


def check_config(config, defaults=True):
    """No config file found fails unless `defaults` (`mailq check --defaults`) accepts
    the built-in ones: a fresh directory would otherwise pass with transport = outbox."""
    if not config.file_found:
        return Result('config', defaults, f'no file at {Path(config.source).resolve()}: '
                      'built-in defaults and MAILQ_* environment variables'
                      + ('' if defaults else ' (pass --defaults to accept them)'))
    return Result('config', True, f'{config.source} ok')


def check_limits(config):
    """The limits as configured ([smtp] and each [throttle:NAME]); never fails."""
    from .store.limits import limiters_of
    found = limiters_of(config)
    if not found:
        return Result('limits', True, 'none: mail goes out as fast as the workers send it',
                      required=False)
    parts = []
    for lim in found:
        conf = lim.configured()
        items = [f'rate {conf["rate"]}/s burst {conf["burst"]}' if conf['rate'] else '',
                 (f'max_connections {conf["concurrency"]}' if lim.name == 'relay'
                  else f'concurrency {conf["concurrency"]}') if conf['concurrency'] else '',
                 f'daily_quota {conf["daily_quota"]}' if conf['daily_quota'] else '',
                 f'greeting_pause {conf["greeting_pause"]}s' if conf['greeting_pause'] else '']
        where = '' if lim.name == 'relay' else f' ({", ".join(lim.domains)})'
        parts.append(f'{lim.name}{where}: ' + ', '.join(i for i in items if i))
    return Result('limits', True, '; '.join(parts), required=False)


def results(rt, smtp=None, defaults=True):
    """Every check, in order, scrubbed of secrets. `smtp` replaces the SMTP check (a
    cached one); `defaults=False` fails the config check when no file was found."""
    found = [check_config(rt.config, defaults), check_redis(rt),
             smtp or check_smtp(rt.config), check_templates(rt),
             Result('cron', *check_cron(rt), required=False)]
    if rt.config.smtp.staging:
        found.append(check_staging(rt.config))
    return [_scrubbed(r, rt.config.secrets()) for r in found]


def _scrubbed(result, secrets):
    """The result with every secret in its texts replaced by ***."""
    details = {key: redact(value, secrets) if isinstance(value, str) else value
               for key, value in result.details.items()}
    return dataclasses.replace(result, text=redact(result.text, secrets), details=details)


def run_checks(config, out=print, defaults=False):
    found = results(Runtime(config), defaults=defaults) + [check_limits(config)]
    for r in found:
        out(f'{r.name:10} {"ok  " if r.ok else "FAIL"} {r.text}')
    return 0 if all(r.ok for r in found) else 1


_smtp_cache = weakref.WeakKeyDictionary()


def healthz(rt, now=None, detailed=True):
    """(ok, body) for /healthz: per-check results; ok unless a required check fails.
    Without `detailed` (an anonymous caller while [web] has credentials) the body is
    only {ok, checks: {name: ok}}: the texts name files, hosts, ports and templates."""
    now = now or time.monotonic()
    cached = _smtp_cache.get(rt)
    if cached is None or now - cached[0] > HEALTHZ_SMTP_EVERY:
        cached = _smtp_cache[rt] = (now, check_smtp(rt.config, HEALTHZ_SMTP_TIMEOUT))
    found = results(rt, smtp=cached[1])
    ok = all(r.ok for r in found if r.required)
    if not detailed:
        return ok, {'ok': ok, 'checks': {r.name: r.ok for r in found}}
    redis_details = next(r.details for r in found if r.name == 'redis')
    return ok, {'ok': ok, **redis_details,
                'checks': {r.name: {'ok': r.ok, 'detail': r.text} for r in found}}
