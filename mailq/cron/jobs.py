"""What can be done with cron jobs: the functions behind `mailq cron`, /api/cron
and the dashboard's Cron tab. Each takes a Runtime and returns JSON-able dicts.

A job dict:

    name         the NAME of its [cron:NAME] section
    expression   the cron expression as written, e.g. "0 8 * * mon-fri"
    description  the expression in words, e.g. "at 08:00 on Monday through Friday (Europe/Berlin)"
    timezone     the timezone it is evaluated in
    kind         "template" or "callable"
    template, to, context    for template jobs ("" / {} otherwise)
    callable     "module:function" for callable jobs ("" otherwise)
    queue        the queue its mails go to ("" for the default queue)
    catch_up     seconds within which a missed fire time is still run
    paused       true while paused (pausing is stored in Redis and survives restarts)
    last_run     the most recently recorded run, or null (see below)
    next_run     ISO 8601 UTC time of the next fire time, or null while paused

A run dict (`last_run`, the items of `history`, and what `run_now` returns):

    fire_time    ISO 8601 UTC: the fire time (for `run_now`: the time it was asked for)
    enqueued_at  ISO 8601 UTC when its mails were enqueued, or null (failed, skipped)
    outcome      "ok", "failed" or "skipped"
    mail_ids     ids of the enqueued mails (GET /api/mails/<id>)
    error        why it failed or was skipped, or null
    manual       true for runs made by `run_now`
    worker       id of the worker that ran it ("" for `run_now`)
    skipped      (skipped runs only) how many fire times were skipped; fire_time is
                 the newest of them and first_fire_time the oldest
"""
import secrets
import time

from ..errors import NotFound
from ..service import iso, redis_errors
from .definitions import jobs
from .run import run_once
from ..store.cron import HISTORY


def _job(rt, name):
    job = jobs(rt.config).get(name)
    if job is None:
        raise NotFound(f'no cron job {name!r}')
    return job


def public_run(run):
    if run is None:
        return None
    view = dict(run, fire_time=iso(run['fire_time']), enqueued_at=iso(run.get('enqueued_at')))
    if 'first_fire_time' in run:
        view['first_fire_time'] = iso(run['first_fire_time'])
    return view


def _view(job, paused, last_run, now):
    cfg = job.config
    next_run = None if paused else job.schedule.next_after(job.local(now)).timestamp()
    return {
        'name': job.name, 'expression': job.schedule.expression,
        'description': job.schedule.describe(), 'timezone': job.schedule.timezone,
        'kind': job.kind, 'template': cfg.template, 'to': cfg.to, 'context': cfg.context,
        'callable': cfg.callable, 'queue': cfg.queue, 'catch_up': cfg.catch_up,
        'paused': paused, 'last_run': public_run(last_run), 'next_run': iso(next_run),
    }


def list_jobs(rt):
    """Every configured job (file order) as a job dict."""
    defined = jobs(rt.config)
    state = rt.store.cron
    with redis_errors():
        paused = state.paused()
        last = state.last_runs(list(defined))
    now = time.time()
    return [_view(job, name in paused, last[name], now) for name, job in defined.items()]


def get_job(rt, name):
    """One job dict plus `history`: its last 50 runs, newest first. NotFound if unknown."""
    return _one(rt, name, with_history=True)


def _one(rt, name, with_history=False):
    job = _job(rt, name)
    state = rt.store.cron
    with redis_errors():
        paused = name in state.paused()
        history = state.history(name, HISTORY if with_history else 1)
    view = _view(job, paused, history[0] if history else None, time.time())
    if with_history:
        view['history'] = [public_run(run) for run in history]
    return view


def run_now(rt, name):
    """Enqueue the job's mails now, outside its schedule (also when paused).
    Returns the run dict; a failing template or callable gives outcome "failed"."""
    job = _job(rt, name)
    now = time.time()
    key = f'cron:{name}:manual:{secrets.token_hex(8)}'
    with redis_errors():
        run = run_once(rt, rt.store.cron, job, now, key, manual=True)
    return public_run(run)


def pause(rt, name):
    """Stop the job's scheduled runs until resumed. Returns the job dict."""
    _job(rt, name)
    with redis_errors():
        rt.store.cron.pause(name)
    return _one(rt, name)


def resume(rt, name):
    """Start the job's scheduled runs again from now; fire times missed while paused
    are not caught up. Returns the job dict."""
    _job(rt, name)
    with redis_errors():
        rt.store.cron.resume(name, time.time())
    return _one(rt, name)
