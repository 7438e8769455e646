"""`mailq check`: is this configuration ready to run? Exit 0 when it is, 1 when not.

The config itself was already validated by loading it; here we reach Redis
and SMTP (connect, EHLO, TLS and AUTH as configured; nothing is sent) and
render every mail template.
"""
import smtplib

from .runtime import Runtime
from .service import health
from .transport import SMTPTransport


def check_redis(rt):
    ok, details = health(rt)
    if not ok:
        return False, f'unreachable at {rt.config.redis.url}: {details["reason"]}'
    text = f'ok, version {details["redis_version"]}'
    if not details['persistence']:
        return True, text + '; WARNING: ' + details['warning']
    return True, text + ', persistence on'


def check_smtp(config):
    if config.smtp.transport != 'smtp':
        return True, f'transport = {config.smtp.transport} (nothing is sent)'
    transport = SMTPTransport(config.smtp)
    try:
        conn = transport._open()
    except smtplib.SMTPAuthenticationError as exc:
        return False, f'authentication refused: {exc.smtp_code}'
    except (OSError, smtplib.SMTPException) as exc:
        return False, f'cannot reach {config.smtp.host}:{config.smtp.port}: {exc}'
    conn.quit()
    return True, f'ok, {config.smtp.host}:{config.smtp.port} ({config.smtp.security})'


def check_templates(rt):
    names = rt.templates.names()
    if not names:
        return False, f'no templates in {rt.config.templates.path}'
    errors = [e for name in names for e in rt.templates.check(name)]
    if errors:
        return False, '; '.join(errors)
    return True, f'{len(names)} rendered: {", ".join(names)}'


def run_checks(config, out=print):
    rt = Runtime(config)
    results = [('config', (True, f'{config.source} ok')), ('redis', check_redis(rt)),
               ('smtp', check_smtp(config)), ('templates', check_templates(rt))]
    for name, (ok, text) in results:
        out(f'{name:10} {"ok  " if ok else "FAIL"} {text}')
    return 0 if all(ok for _, (ok, _) in results) else 1
