"""`mailq cron [list | run NAME | pause NAME | resume NAME] [--json]` (flags in mailq/cli.py)."""
import json
from datetime import datetime
from zoneinfo import ZoneInfo

from ..errors import ValidationError
from ..runtime import Runtime
from . import jobs
from .validate import check_runtime

COLUMNS = ('NAME', 'SCHEDULE', 'TIMEZONE', 'PAUSED', 'LAST RUN', 'NEXT RUN')


def cmd_cron(config, args, out=print):
    rt = Runtime(config)
    if args.action == 'list':
        found = jobs.list_jobs(rt)
        out(json.dumps(found, indent=2) if args.json else table(found))
        return 0
    if not args.name:
        raise ValidationError('name', f'cron {args.action} needs a job name')
    if args.action == 'run':
        check_runtime(rt)           # imports the job's callable module like a worker
        run = jobs.run_now(rt, args.name)
        out(json.dumps(run, indent=2) if args.json else _run_line(run))
        return 0 if run['outcome'] == 'ok' else 1
    job = getattr(jobs, args.action)(rt, args.name)
    out(json.dumps(job, indent=2) if args.json else
        f'{job["name"]}: {"paused" if job["paused"] else "active"}, next run '
        f'{_local(job["next_run"], job["timezone"])}')
    return 0


def table(found):
    if not found:
        return 'no cron jobs (add a [cron:NAME] section to the config)'
    rows = [COLUMNS] + [(
        job['name'], job['expression'], job['timezone'], 'yes' if job['paused'] else 'no',
        _last(job['last_run'], job['timezone']), _local(job['next_run'], job['timezone']))
        for job in found]
    widths = [max(len(row[i]) for row in rows) for i in range(len(COLUMNS))]
    return '\n'.join('  '.join(cell.ljust(w) for cell, w in zip(row, widths)).rstrip()
                     for row in rows)


def _local(text, timezone):
    """An ISO UTC time from the API as the job's wall time, e.g. 2026-06-01 08:00 CEST."""
    if not text:
        return '-'
    when = datetime.fromisoformat(text.replace('Z', '+00:00')).astimezone(ZoneInfo(timezone))
    return when.strftime('%Y-%m-%d %H:%M:%S %Z')


def _last(run, timezone):
    if not run:
        return '-'
    mails = len(run['mail_ids'])
    detail = f'{mails} mail{"s" if mails != 1 else ""}' if run['outcome'] == 'ok' else \
        f'{run.get("skipped", 1)} skipped' if run['outcome'] == 'skipped' else \
        _short(run['error'] or '')
    return f'{_local(run["fire_time"], timezone)} {run["outcome"]} ({detail})'


def _short(text, width=40):
    return text if len(text) <= width else text[:width - 1] + '…'


def _run_line(run):
    if run['outcome'] != 'ok':
        return f'{run["outcome"]}: {run["error"]}'
    return '\n'.join(run['mail_ids']) or 'ok: the job made no mails'
