"""Shared set-up of the cron tests: ini files with [cron:NAME] jobs, and a clock."""
from datetime import datetime
from pathlib import Path
from zoneinfo import ZoneInfo

from support.ini import write_ini

TICK_TEMPLATE = {'tick.subject': 'tick {{ fired_at }}',
                 'tick.txt': 'Fired at {{ fired_at }} for {{ team|default("nobody") }}.'}
FIXTURES = Path(__file__).resolve().parent


def write_templates(folder):
    folder.mkdir(exist_ok=True)
    for name, text in TICK_TEMPLATE.items():
        (folder / name).write_text(text)
    return folder


def cron_ini(tmp_path, redis_url, jobs, smtp_port=None, name='mailq.ini', **sections):
    """An ini with `jobs` ({name: {key: value}}) as [cron:NAME] sections.

    Mails go to the SMTP server on `smtp_port`, or to the outbox without one.
    """
    smtp = {'transport': 'outbox', 'from': 'mailq@example.com'}
    if smtp_port:
        smtp = {'transport': 'smtp', 'host': '127.0.0.1', 'port': str(smtp_port),
                'security': 'none', 'timeout': '5', 'from': 'mailq@example.com'}
    config = {
        'redis': {'url': redis_url},
        'worker': {'concurrency': '2', 'queues': 'mailers, default',
                   'heartbeat_interval': '0.2'},
        'smtp': smtp,
        'templates': {'path': str(write_templates(tmp_path / 'templates'))},
        **sections,
    }
    for job, values in jobs.items():
        config[f'cron:{job}'] = values
    return Path(write_ini(tmp_path / name, config))


def tick_job(schedule='* * * * *', **extra):
    return {'schedule': schedule, 'template': 'tick', 'to': 'ops@example.com', **extra}


class Clock:
    """An injected clock: call it for the time, set `now` to move it."""

    def __init__(self, now):
        self.now = float(now)

    def __call__(self):
        return self.now


def at(text, tz='UTC'):
    """Epoch seconds of a wall time: at('2030-01-07 08:00', 'Europe/Berlin')."""
    return datetime.fromisoformat(text).replace(tzinfo=ZoneInfo(tz)).timestamp()
