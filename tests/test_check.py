"""`mailq check` (exit 0/1) and /healthz report Redis, SMTP, templates and cron."""
import json

import pytest

from mailq import check
from mailq.config import load
from mailq.runtime import Runtime
from support.mailq_app import WebApp, run_cli
from support.procs import free_port
from support.redis_server import RedisServer

SMTP_USER, SMTP_PASSWORD = 'mailer', 'check-secret'


def lines(output):
    return {line.split()[0]: line for line in output.splitlines() if line.strip()}


def smtp_ini(tmp_ini, redis_url, server, name='check.ini', password=SMTP_PASSWORD, **extra):
    return tmp_ini(name, redis={'url': redis_url},
                   smtp={'transport': 'smtp', 'host': '127.0.0.1', 'port': server.port,
                         'security': server.security, 'ca_file': server.ca_file or '',
                         'username': SMTP_USER if password else '', 'password': password,
                         'timeout': '5'},
                   **extra)


def test_all_ok_connects_and_authenticates_but_sends_nothing(tmp_ini, redis_url,
                                                             smtp_factory):
    server = smtp_factory(security='starttls', require_starttls=True,
                          auth=(SMTP_USER, SMTP_PASSWORD))
    result = run_cli(smtp_ini(tmp_ini, redis_url, server), 'check')
    assert result.returncode == 0, result.stdout + result.stderr
    found = lines(result.stdout)
    assert set(found) == {'config', 'redis', 'smtp', 'templates', 'cron', 'limits'}
    assert all(' ok ' in line for line in found.values())
    assert 'version 7.' in found['redis'] or 'version 8.' in found['redis']
    assert 'WARNING' in found['redis']     # the test Redis keeps nothing on disk
    assert '(starttls)' in found['smtp']
    assert server.connections == 1 and server.transactions == 0 and server.messages == []
    assert SMTP_PASSWORD not in result.stdout + result.stderr


def test_persistent_redis_is_reported(tmp_ini, smtp_server, tmp_path):
    with RedisServer(appendonly=True, tmpdir=tmp_path) as server:
        ini = tmp_ini('aof.ini', redis={'url': server.url})
        result = run_cli(ini, 'check')
    assert result.returncode == 0, result.stdout
    assert 'persistence on' in lines(result.stdout)['redis']


@pytest.mark.parametrize('problem', ['smtp down', 'smtp auth', 'redis down', 'template'])
def test_each_failing_dependency_fails_the_check(problem, tmp_ini, redis_url, smtp_factory,
                                                 tmp_path):
    server = smtp_factory(security='tls', auth=(SMTP_USER, SMTP_PASSWORD))
    extra, password = {}, SMTP_PASSWORD
    if problem == 'smtp down':
        server.stop()
    elif problem == 'smtp auth':
        password = 'wrong-password'
    elif problem == 'redis down':
        redis_url = f'redis://127.0.0.1:{free_port()}/0'
    else:
        (tmp_path / 'broken.txt').write_text('{% for x in %}')
        (tmp_path / 'broken.subject').write_text('Broken')
        extra = {'templates': {'path': str(tmp_path)}}
    ini = smtp_ini(tmp_ini, redis_url, server, password=password, **extra)
    result = run_cli(ini, 'check')
    assert result.returncode == 1, result.stdout
    failing = [name for name, line in lines(result.stdout).items() if ' FAIL ' in line]
    expected = {'smtp down': 'smtp', 'smtp auth': 'smtp', 'redis down': 'redis',
                'template': 'templates'}[problem]
    assert failing == [expected]
    if problem == 'smtp auth':
        assert 'authentication refused: 535' in result.stdout
    assert 'wrong-password' not in result.stdout and SMTP_PASSWORD not in result.stdout


def test_healthz_reports_every_check(tmp_ini, redis_url, smtp_server):
    ini = smtp_ini(tmp_ini, redis_url, smtp_server, password='')
    web = WebApp(ini)
    try:
        status, _, body = web.get('/healthz')
    finally:
        web.close()
    assert status == 200 and body['ok'] is True
    assert set(body['checks']) == {'config', 'redis', 'smtp', 'templates', 'cron'}
    assert all(check['ok'] for check in body['checks'].values())
    assert body['redis'] == 'ok' and body['redis_version']
    assert smtp_server.messages == []


def test_healthz_stays_200_when_only_the_relay_is_down(tmp_ini, redis_url, smtp_server):
    smtp_server.stop()
    web = WebApp(smtp_ini(tmp_ini, redis_url, smtp_server, password=''))
    try:
        status, _, body = web.get('/healthz')
    finally:
        web.close()
    assert status == 200 and body['ok'] is True
    assert body['checks']['smtp']['ok'] is False
    assert 'cannot reach' in body['checks']['smtp']['detail']


def test_healthz_is_503_when_templates_are_broken(tmp_ini, redis_url, tmp_path):
    (tmp_path / 'broken.subject').write_text('{{ unclosed')
    web = WebApp(tmp_ini('t.ini', redis={'url': redis_url}, templates={'path': str(tmp_path)}))
    try:
        status, _, body = web.get('/healthz')
    finally:
        web.close()
    assert status == 503 and body['ok'] is False
    assert body['checks']['templates']['ok'] is False and body['checks']['redis']['ok']


# -- no password on /healthz (no login) or in `mailq check`

REDIS_PASSWORD = 'Redis-Pa55-never-shown'


def password_urls():
    """Redis URLs with the password in each place it can be; nothing listens at any."""
    port = free_port()
    return [f'redis://:{REDIS_PASSWORD}@127.0.0.1:{port}/0',
            f'redis://mailq:{REDIS_PASSWORD}@127.0.0.1:{port}/0',
            f'redis+sentinel://mailq:{REDIS_PASSWORD}@127.0.0.1:{port}/mymaster/0',
            f'redis://127.0.0.1:{port}/0?password={REDIS_PASSWORD}']


@pytest.mark.parametrize('url', password_urls())
def test_healthz_never_shows_the_redis_password(tmp_ini, url):
    rt = Runtime(load(str(tmp_ini(redis={'url': url})), environ={}))
    ok, body = check.healthz(rt)
    assert not ok and body['checks']['redis']['ok'] is False
    assert 'unreachable at ' in body['checks']['redis']['detail']
    assert '***' in body['checks']['redis']['detail']
    assert REDIS_PASSWORD not in json.dumps(body)


def test_healthz_scrubs_a_password_quoted_by_the_exception(tmp_ini, monkeypatch):
    url = password_urls()[0]
    rt = Runtime(load(str(tmp_ini(redis={'url': url})), environ={}))
    monkeypatch.setattr(check, 'health', lambda rt: (False, {
        'redis': 'unreachable', 'reason': f'Error connecting to {url}'}))
    ok, body = check.healthz(rt)
    assert not ok and 'Error connecting to' in body['reason']
    assert REDIS_PASSWORD not in json.dumps(body)


@pytest.mark.parametrize('url', password_urls())
def test_mailq_check_never_prints_the_redis_password(tmp_ini, url):
    result = run_cli(tmp_ini(redis={'url': url}), 'check')
    assert result.returncode == 1
    assert '***' in lines(result.stdout)['redis'] and ' FAIL ' in lines(result.stdout)['redis']
    assert REDIS_PASSWORD not in result.stdout + result.stderr


# -- templates: only certain errors fail; those that may need the caller's context warn

def write_templates(path, files):
    for name, text in files.items():
        (path / name).write_text(text)


def test_template_that_needs_its_context_warns_but_passes(tmp_ini, redis_url, tmp_path):
    write_templates(tmp_path, {'count.subject': 'You have {{ number + 1 }} mails',
                               'count.txt': '{{ number * 2 }} new'})
    ini = tmp_ini('t.ini', redis={'url': redis_url}, templates={'path': str(tmp_path)})
    rt = Runtime(load(str(ini), environ={}))
    assert rt.templates.render('count', {'number': 1}) == ('You have 2 mails', '2 new', None)
    ok, body = check.healthz(rt)
    assert ok is True, body
    assert body['checks']['templates']['ok'] is True
    assert 'warning' in body['checks']['templates']['detail']
    assert "'number' is undefined" in body['checks']['templates']['detail']
    result = run_cli(ini, 'check')
    assert result.returncode == 0, result.stdout
    assert ' ok ' in lines(result.stdout)['templates']
    assert 'count.subject' in lines(result.stdout)['templates']


@pytest.mark.parametrize('files, error', [
    ({'a.subject': '{{ unclosed', 'a.txt': 'x'}, 'a.subject'),
    ({'a.subject': 'Hi', 'a.txt': '{{ 1 // 0 }}'}, 'ZeroDivisionError'),
    ({'a.txt': 'no subject'}, 'no a.subject'),
    ({'a.subject': 'no body'}, 'no a.txt or a.html'),
])
def test_certain_template_errors_fail(tmp_ini, redis_url, tmp_path, files, error):
    write_templates(tmp_path, {'ok.subject': 'Hi {{ name }}', 'ok.txt': '{{ name|upper }}',
                               **files})
    ini = tmp_ini('t.ini', redis={'url': redis_url}, templates={'path': str(tmp_path)})
    result = check.check_templates(Runtime(load(str(ini), environ={})))
    assert result.ok is False and error in result.text and 'ok.' not in result.text
