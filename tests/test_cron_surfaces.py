"""`mailq cron` and /api/cron: the same jobs.py functions behind both, on a real Redis."""
import json
import os

from cron_fixtures.helpers import FIXTURES, cron_ini, tick_job
from support.mailq_app import WebApp, run_cli

JOBS = {
    'report': tick_job('0 8 * * mon-fri', timezone='Europe/Berlin', context='{"team": "ops"}'),
    'digest': {'schedule': '@hourly', 'callable': 'cron_fixtures.digest:digest',
               'queue': 'default'},
    'broken': {'schedule': '@daily', 'callable': 'cron_fixtures.digest:not_a_list'},
}
ENV = dict(os.environ, PYTHONPATH=str(FIXTURES.parent))


def cli(ini, *args):
    return run_cli(ini, 'cron', *args, env=ENV)


def test_cli_lists_runs_pauses_and_resumes(tmp_path, redis_url, redis_client):
    ini = cron_ini(tmp_path, redis_url, JOBS)
    result = cli(ini)
    assert result.returncode == 0, result.stderr
    header, report, digest, broken = result.stdout.splitlines()
    assert header.split() == ['NAME', 'SCHEDULE', 'TIMEZONE', 'PAUSED', 'LAST', 'RUN', 'NEXT',
                              'RUN']
    assert report.split()[:9] == ['report', '0', '8', '*', '*', 'mon-fri', 'Europe/Berlin',
                                  'no', '-']
    assert report.split()[-1] in ('CET', 'CEST') and ' 08:00:00 ' in report

    result = cli(ini, 'run', 'report')
    assert result.returncode == 0, result.stderr
    mail_id = result.stdout.strip()
    assert redis_client.hget(f'mailq:m:{mail_id}', 'subject').startswith(b'tick ')
    result = cli(ini, 'run', 'digest')
    assert result.returncode == 0 and len(result.stdout.split()) == 3
    assert redis_client.llen('mailq:q:default') == 3
    result = cli(ini, 'run', 'broken')
    assert result.returncode == 1 and result.stdout.startswith('failed: mails: ')

    assert 'report: paused' in cli(ini, 'pause', 'report').stdout
    listing = cli(ini).stdout.splitlines()
    assert listing[1].split()[7] == 'yes' and listing[1].rstrip().endswith(' -')   # no next run
    assert ' ok (1 mail)' in listing[1]
    assert ' ok (3 mails)' in listing[2]
    assert ' failed (mails: cron_fixtures.digest:not_a_list …)' in listing[3]
    assert 'report: active, next run ' in cli(ini, 'resume', 'report').stdout

    jobs = json.loads(cli(ini, '--json').stdout)
    assert [j['name'] for j in jobs] == ['report', 'digest', 'broken']
    assert jobs[0]['last_run']['manual'] is True and jobs[0]['paused'] is False


def test_cli_errors(tmp_path, redis_url):
    ini = cron_ini(tmp_path, redis_url, JOBS)
    result = cli(ini, 'run', 'nope')
    assert result.returncode == 1 and "no cron job 'nope'" in result.stderr
    result = cli(ini, 'pause')
    assert result.returncode == 1 and 'needs a job name' in result.stderr
    result = cli(ini, 'explode', 'report')
    assert result.returncode == 2 and 'invalid choice' in result.stderr
    empty = cron_ini(tmp_path, redis_url, {}, name='empty.ini')
    assert 'no cron jobs' in cli(empty).stdout


def test_api(tmp_path, redis_url, redis_client, monkeypatch):
    monkeypatch.syspath_prepend(str(FIXTURES.parent))
    app = WebApp(cron_ini(tmp_path, redis_url, JOBS))
    try:
        status, _, body = app.get('/api/cron')
        assert status == 200 and [j['name'] for j in body['jobs']] == ['report', 'digest',
                                                                        'broken']
        report = body['jobs'][0]
        assert report['description'] == 'at 08:00 on Monday through Friday (Europe/Berlin)'
        assert report['expression'] == '0 8 * * mon-fri' and report['timezone'] == 'Europe/Berlin'
        assert report['last_run'] is None and report['next_run'].endswith('Z')
        assert report['paused'] is False and report['kind'] == 'template'

        status, _, run = app.post('/api/cron/digest/run')
        assert status == 202 and run['outcome'] == 'ok' and len(run['mail_ids']) == 3
        status, _, mail = app.get(f'/api/mails/{run["mail_ids"][0]}')
        assert status == 200 and mail['queue'] == 'default' and mail['status'] == 'queued'

        status, _, body = app.post('/api/cron/broken/run')
        assert status == 422 and body['error'].startswith('cron job broken failed: mails: ')
        assert body['details']['run']['outcome'] == 'failed'

        status, _, job = app.post('/api/cron/report/pause')
        assert status == 200 and job['paused'] is True and job['next_run'] is None
        assert redis_client.sismember('mailq:cron:paused', 'report')
        status, _, job = app.post('/api/cron/report/resume')
        assert status == 200 and job['paused'] is False and job['next_run']

        status, _, job = app.get('/api/cron/digest')
        assert status == 200 and [r['outcome'] for r in job['history']] == ['ok']
        assert job['last_run'] == job['history'][0] and job['history'][0]['manual'] is True

        assert app.get('/api/cron/nope')[0] == 404
        assert app.post('/api/cron/nope/run')[0] == 404
        assert app.post('/api/cron/report/explode')[0] == 404
        assert app.get('/api/cron/report/run')[0] == 405
    finally:
        app.close()


def test_api_answers_503_when_redis_is_down(tmp_path, monkeypatch):
    from support.procs import free_port
    monkeypatch.syspath_prepend(str(FIXTURES.parent))
    app = WebApp(cron_ini(tmp_path, f'redis://127.0.0.1:{free_port()}/0', JOBS))
    try:
        status, _, body = app.get('/api/cron')
        assert status == 503 and body['details'] == {'redis': 'unreachable'}
        assert app.post('/api/cron/report/pause')[0] == 503
    finally:
        app.close()
