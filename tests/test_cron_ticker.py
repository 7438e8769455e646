"""The cron ticker on a real Redis, driven by an injected clock: exactly once per fire
time, catch-up and skip, pause across restarts, failing callables, DST, crash recovery."""
import os
import subprocess
import threading
import time

import pytest

from cron_fixtures import digest
from cron_fixtures.helpers import FIXTURES, Clock, at, cron_ini, tick_job
from mailq.config import load
from mailq.cron import definitions, jobs
from mailq.cron.run import enqueue
from mailq.cron.ticker import LEASE, CronTicker, run_key
from mailq.runtime import Runtime
from mailq.store.containers import task_mail_id
from support.procs import PYTHON
from support.redis_server import RedisServer


def runtime(ini):
    return Runtime(load(str(ini), environ={}))


def queued(rt, queue='mailers'):
    """Subjects of the mails waiting in `queue`, oldest first."""
    tasks = rt.redis.lrange(rt.keys.queue(queue), 0, -1)[::-1]
    return [rt.store.get(task_mail_id(task)).fields['subject'] for task in tasks]


def history(rt, name):
    return jobs.get_job(rt, name)['history']


COUNTED = {'schedule': '* * * * *', 'callable': 'cron_fixtures.digest:counted',
           'catch_up': '7200'}


def calls_per_fire_time(rt):
    """{calls: how many fire times had that many callable calls}."""
    counts = [int(rt.redis.get(key)) for key in rt.redis.keys('test:calls:*')]
    return {n: counts.count(n) for n in set(counts)}


@pytest.fixture
def clock():
    return Clock(at('2030-01-07 07:59:00'))


def test_fires_once_per_fire_time_and_records_each_run(tmp_path, redis_url, clock):
    rt = runtime(cron_ini(tmp_path, redis_url, {'tick': tick_job('*/5 * * * *')}))
    ticker = CronTicker(rt, 'w1', clock=clock)
    for now in ('07:59:00', '07:59:59', '08:00:00.4', '08:00:01.4', '08:04:59', '08:05:00.2'):
        clock.now = at(f'2030-01-07 {now}')
        ticker.tick()
    assert queued(rt) == ['tick 2030-01-07T08:00:00+00:00', 'tick 2030-01-07T08:05:00+00:00']
    runs = history(rt, 'tick')
    assert [(r['fire_time'], r['outcome'], r['worker']) for r in runs] == [
        ('2030-01-07T08:05:00.000Z', 'ok', 'w1'), ('2030-01-07T08:00:00.000Z', 'ok', 'w1')]
    assert all(len(r['mail_ids']) == 1 and r['error'] is None for r in runs)
    assert runs[0]['enqueued_at'] == '2030-01-07T08:05:00.200Z'   # the injected clock
    mail = rt.store.get(runs[0]['mail_ids'][0]).fields
    assert mail['to'] == 'ops@example.com' and mail['queue'] == 'mailers'


def test_a_new_job_starts_now_without_catching_up(tmp_path, redis_url):
    rt = runtime(cron_ini(tmp_path, redis_url, {'tick': tick_job('0 * * * *')}))
    CronTicker(rt, 'w1').tick(at('2030-01-07 08:30:00'))
    assert queued(rt) == [] and history(rt, 'tick') == []


def test_one_claim_wins_per_fire_time(tmp_path, redis_url):
    rt = runtime(cron_ini(tmp_path, redis_url, {'tick': tick_job()}))
    fire = int(at('2030-01-07 08:00:00'))
    barrier = threading.Barrier(16)
    replies = []

    def claim(i):
        state = runtime(rt.config.source).store.cron
        barrier.wait()
        replies.append(state.claim('tick', fire, fire + 0.1, f't{i}', f'w{i}', 7200))

    threads = [threading.Thread(target=claim, args=(i,)) for i in range(16)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(30)
    assert sorted(replies) == ['ok'] + ['taken'] * 15


def test_exactly_once_from_many_threads(tmp_path, redis_url):
    """Six tickers (each with its own Runtime, as six workers) start together after an
    hour of downtime, all catch up the same 60 missed minutes, then tick on for an hour
    at the same instants."""
    ini = cron_ini(tmp_path, redis_url, {'tick': COUNTED})
    digest.redis_url = redis_url
    start = at('2030-01-07 08:00:00')
    CronTicker(runtime(ini), 'first').tick(start - 1)       # the job's cursor starts here
    tickers = [CronTicker(runtime(ini), f'w{i}') for i in range(6)]
    instants = [start + 3600 + 10 * i for i in range(6 * 60 + 1)]
    barrier = threading.Barrier(len(tickers))

    def drive(ticker):
        for now in instants:
            barrier.wait()
            ticker.tick(now)

    threads = [threading.Thread(target=drive, args=(t,)) for t in tickers]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(120)
    rt = runtime(ini)
    subjects = sorted(queued(rt))
    assert len(subjects) == 121 == len(set(subjects))       # 08:00 ... 10:00 inclusive
    assert subjects[0] == 'count 2030-01-07T08:00:00+00:00'
    assert subjects[-1] == 'count 2030-01-07T10:00:00+00:00'
    assert calls_per_fire_time(rt) == {1: 121}              # the claim, not just idempotency
    assert all(r['outcome'] == 'ok' for r in history(rt, 'tick'))


def test_exactly_once_from_three_processes(tmp_path, redis_url):
    """Three processes start together after an hour of downtime, catch up, and tick on
    through the same simulated hour (at 1200 times real speed)."""
    ini = cron_ini(tmp_path, redis_url, {'tick': COUNTED})
    start = at('2030-01-07 08:00:00')
    CronTicker(runtime(ini), 'first').tick(start - 1)
    wall_start = time.time() + 1.5
    procs = [subprocess.Popen([PYTHON, str(FIXTURES / 'drive.py'), str(ini), f'p{i}',
                               str(wall_start), str(start + 3600), str(start + 2 * 3600), '1200'],
                              env=dict(os.environ, PYTHONPATH=str(FIXTURES.parent)),
                              stderr=subprocess.PIPE, text=True) for i in range(3)]
    for proc in procs:
        assert proc.wait(120) == 0, proc.stderr.read()
    subjects = queued(runtime(ini))
    assert len(subjects) == 121 == len(set(subjects))       # every minute for 2 h, inclusive
    assert calls_per_fire_time(runtime(ini)) == {1: 121}
    workers = {r['worker'] for r in history(runtime(ini), 'tick')}
    assert workers <= {'p0', 'p1', 'p2'}


def test_catch_up_after_downtime_once_and_skip_past_the_window(tmp_path, redis_url):
    ini = cron_ini(tmp_path, redis_url,
                   {'tick': tick_job('*/10 * * * *', catch_up='3600')})
    rt = runtime(ini)
    before = CronTicker(rt, 'before')
    before.tick(at('2030-01-07 07:59:00'))
    before.tick(at('2030-01-07 08:00:00.5'))
    assert len(queued(rt)) == 1
    # Every worker is down until 09:35; three start at once.
    restart = at('2030-01-07 09:35:00.5')
    tickers = [CronTicker(runtime(ini), f'w{i}') for i in range(3)]
    barrier = threading.Barrier(3)

    def start(ticker):
        barrier.wait()
        ticker.tick(restart)

    threads = [threading.Thread(target=start, args=(t,)) for t in tickers]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(30)
    subjects = queued(rt)
    caught_up = ['08:40', '08:50', '09:00', '09:10', '09:20', '09:30']
    assert sorted(subjects[1:]) == [f'tick 2030-01-07T{t}:00+00:00' for t in caught_up]
    runs = history(rt, 'tick')
    skipped = [r for r in runs if r['outcome'] == 'skipped']
    assert len(skipped) == 1
    assert skipped[0]['skipped'] == 3        # 08:10, 08:20, 08:30: more than 1 h late
    assert skipped[0]['first_fire_time'] == '2030-01-07T08:10:00.000Z'
    assert skipped[0]['fire_time'] == '2030-01-07T08:30:00.000Z'
    assert 'catch_up (3600 s)' in skipped[0]['error']
    # A worker starting later finds nothing left to do, and the next fire time runs once.
    late = CronTicker(runtime(ini), 'late')
    late.tick(at('2030-01-07 09:36:00'))
    for ticker in tickers + [late]:
        ticker.tick(at('2030-01-07 09:40:00.3'))
    assert queued(rt)[7:] == ['tick 2030-01-07T09:40:00+00:00']
    assert len(history(rt, 'tick')) == 1 + 6 + 1 + 1


def test_catch_up_zero_skips_missed_runs_but_not_slightly_late_ones(tmp_path, redis_url):
    ini = cron_ini(tmp_path, redis_url, {'tick': tick_job('*/10 * * * *', catch_up='0')})
    rt = runtime(ini)
    before = CronTicker(rt, 'before')
    before.tick(at('2030-01-07 07:59:00'))
    before.tick(at('2030-01-07 08:00:00.5'))
    CronTicker(rt, 'after').tick(at('2030-01-07 08:30:40'))   # 08:30 is 40 s late: on time
    assert queued(rt)[1:] == ['tick 2030-01-07T08:30:00+00:00']
    [ok, skipped, first] = history(rt, 'tick')
    assert skipped['outcome'] == 'skipped' and skipped['skipped'] == 2   # 08:10, 08:20


def test_a_month_of_downtime_is_one_skipped_run_and_the_last_hour_is_caught_up(
        tmp_path, redis_url):
    ini = cron_ini(tmp_path, redis_url, {'tick': tick_job(catch_up='600')})
    rt = runtime(ini)
    CronTicker(rt, 'before').tick(at('2030-01-01 00:00:00'))
    CronTicker(rt, 'after').tick(at('2030-01-31 00:00:30'))
    subjects = queued(rt)
    assert len(subjects) == 10 and subjects[-1] == 'tick 2030-01-31T00:00:00+00:00'
    [skipped] = [r for r in history(rt, 'tick') if r['outcome'] == 'skipped']
    assert skipped['error'].startswith('10000 or more run(s) missed')
    assert skipped['first_fire_time'] == '2030-01-01T00:01:00.000Z'
    assert skipped['fire_time'] == '2030-01-30T23:50:00.000Z'    # the newest one skipped


def test_pause_survives_a_restart_and_resume_does_not_catch_up(tmp_path, redis_url):
    ini = cron_ini(tmp_path, redis_url, {'tick': tick_job('*/10 * * * *')})
    rt = runtime(ini)
    ticker = CronTicker(rt, 'w1')
    ticker.tick(at('2030-01-07 07:59:00'))
    ticker.tick(at('2030-01-07 08:00:00.5'))
    assert jobs.pause(rt, 'tick')['paused'] is True
    ticker.tick(at('2030-01-07 08:10:00.5'))
    # The worker restarts (a new process: new Runtime, new ticker); the pause holds.
    rt = runtime(ini)
    assert jobs.get_job(rt, 'tick')['paused'] is True
    assert jobs.get_job(rt, 'tick')['next_run'] is None
    restarted = CronTicker(rt, 'w2')
    for now in ('08:20:00.5', '08:30:00.5', '08:40:00.5'):
        restarted.tick(at(f'2030-01-07 {now}'))
    assert len(queued(rt)) == 1
    jobs.resume(rt, 'tick')      # real time: far before the simulated 2030 fire times
    rt.redis.hset(rt.keys.cron_job('tick'), 'since', at('2030-01-07 08:45:00'))
    # Another restart after the resume: the paused fire times are not caught up.
    CronTicker(runtime(ini), 'w3').tick(at('2030-01-07 08:50:00.5'))
    assert queued(rt)[1:] == ['tick 2030-01-07T08:50:00+00:00']
    assert [r['outcome'] for r in history(rt, 'tick')] == ['ok', 'ok']


def test_a_failing_callable_is_a_failed_run_and_the_next_run_happens(tmp_path, redis_url):
    digest.calls.clear()
    ini = cron_ini(tmp_path, redis_url,
                   {'digest': {'schedule': '0 * * * *',
                               'callable': 'cron_fixtures.digest:fails_once',
                               'queue': 'default'}})
    rt = runtime(ini)
    ticker = CronTicker(rt, 'w1')
    ticker.tick(at('2030-01-07 07:59:00'))
    ticker.tick(at('2030-01-07 08:00:00.5'))
    [failed] = history(rt, 'digest')
    assert failed['outcome'] == 'failed' and failed['mail_ids'] == []
    assert failed['error'] == 'RuntimeError: database is down'
    assert failed['enqueued_at'] is None
    ticker.tick(at('2030-01-07 09:00:00.5'))
    ok = history(rt, 'digest')[0]
    assert ok['outcome'] == 'ok' and len(ok['mail_ids']) == 3
    assert queued(rt, 'default') == [f'Digest 2030-01-07 09:00 for {u}' for u in digest.USERS]
    assert jobs.list_jobs(rt)[0]['last_run']['outcome'] == 'ok'


@pytest.mark.parametrize('func, outcome, error', [
    ('digest', 'ok', None),
    ('nothing', 'ok', None),
    ('not_a_list', 'failed', 'mails: cron_fixtures.digest:not_a_list must return a list'),
    ('bad_mail', 'failed', 'mails[1].to: not a valid address'),
    ('odd_address', 'failed', 'mails[0].cc: not a valid address'),
])
def test_callable_results(tmp_path, redis_url, func, outcome, error):
    ini = cron_ini(tmp_path, redis_url, {'job': {'schedule': '@hourly',
                                                 'callable': f'cron_fixtures.digest:{func}'}})
    rt = runtime(ini)
    run = jobs.run_now(rt, 'job')
    assert run['outcome'] == outcome and run['manual'] is True
    assert (run['error'] or '').startswith(error or '')
    assert len(queued(rt)) == len(run['mail_ids']) == (3 if func == 'digest' else 0)


def test_time_zones_and_dst_through_a_ticking_worker(tmp_path, redis_url):
    """A 02:30 Berlin job over the spring-forward night runs once (at 03:00 CEST);
    a 01:30 New York job over the fall-back night runs once (the first 01:30)."""
    ini = cron_ini(tmp_path, redis_url, {
        'berlin': tick_job('30 2 * * *', timezone='Europe/Berlin'),
        'newyork': tick_job('30 1 * * *'),
    }, cron={'timezone': 'America/New_York'})
    rt = runtime(ini)
    ticker = CronTicker(rt, 'w1')
    for start, tz in (('2030-03-31 00:00', 'Europe/Berlin'),
                      ('2030-11-03 00:00', 'America/New_York')):
        now = at(start, tz)
        for _ in range(4 * 60):
            ticker.tick(now)
            now += 60
    assert queued(rt) == ['tick 2030-03-31T03:00:00+02:00', 'tick 2030-11-03T01:30:00-04:00']
    assert jobs.get_job(rt, 'newyork')['timezone'] == 'America/New_York'


def test_a_run_claimed_by_a_dead_worker_is_redone_without_a_second_mail(tmp_path, redis_url):
    ini = cron_ini(tmp_path, redis_url, {'tick': tick_job()})
    rt = runtime(ini)
    state = rt.store.cron
    job = definitions.jobs(rt.config)['tick']
    first, second = int(at('2030-01-07 08:00:00')), int(at('2030-01-07 08:01:00'))
    claimed_at = second + 0.2
    # Worker "dead" claimed 08:00 and enqueued its mail, then died before recording it.
    assert state.claim('tick', first, claimed_at, 'tok', 'dead', 7200) == 'ok'
    [mail] = enqueue(rt, job, job.local(first), run_key(job, first))
    # Worker "dead2" claimed 08:01 and died before enqueueing anything.
    assert state.claim('tick', second, claimed_at, 'tok2', 'dead2', 7200) == 'ok'
    alive = CronTicker(rt, 'alive')
    alive.tick(claimed_at + LEASE / 2)
    assert history(rt, 'tick') == [] and len(state.pending('tick')) == 2   # still fresh
    alive.tick(claimed_at + LEASE + 1)
    runs = {r['fire_time']: r for r in history(rt, 'tick')}
    assert runs['2030-01-07T08:00:00.000Z']['mail_ids'] == [mail['id']]   # the same mail
    assert runs['2030-01-07T08:01:00.000Z']['outcome'] == 'ok'
    assert {r['worker'] for r in runs.values()} == {'alive'}
    assert queued(rt) == ['tick 2030-01-07T08:00:00+00:00', 'tick 2030-01-07T08:01:00+00:00']
    assert state.pending('tick') == {}
    # The dead worker's late finish (it was only slow) records nothing more.
    assert not state.finish('tick', first, 'tok', {'fire_time': first, 'outcome': 'ok'})
    assert len(history(rt, 'tick')) == 2


def test_runs_due_during_a_redis_outage_are_made_when_it_is_back(tmp_path, caplog):
    (tmp_path / 'redis').mkdir()
    with RedisServer(appendonly=True, appendfsync='always', tmpdir=tmp_path / 'redis') as server:
        rt = runtime(cron_ini(tmp_path, server.url, {'tick': tick_job()}))
        ticker = CronTicker(rt, 'w1')
        ticker.tick(at('2030-01-07 07:59:30'))
        ticker.tick(at('2030-01-07 08:00:00.5'))
        server.kill()
        ticker.tick(at('2030-01-07 08:01:00.5'))
        ticker.tick(at('2030-01-07 08:02:00.5'))
        assert ticker.redis_down
        server.restart()
        ticker.tick(at('2030-01-07 08:02:30'))
        assert not ticker.redis_down
        assert queued(rt) == [f'tick 2030-01-07T08:0{m}:00+00:00' for m in range(3)]
        messages = [r.message for r in caplog.records if r.name == 'mailq.cron']
        assert sum('Redis unreachable' in m for m in messages) == 1
        assert sum('reachable again' in m for m in messages) == 1


def test_redis_down_does_not_kill_the_ticker(tmp_path, redis_url, caplog):
    from support.procs import free_port
    ini = cron_ini(tmp_path, f'redis://127.0.0.1:{free_port()}/0', {'tick': tick_job()})
    ticker = CronTicker(runtime(ini), 'w1')
    ticker.tick(at('2030-01-07 08:00:00'))
    ticker.tick(at('2030-01-07 08:01:00'))
    assert ticker.redis_down
    assert [r.message for r in caplog.records].count(
        next(r.message for r in caplog.records if 'Redis unreachable' in r.message)) == 1
