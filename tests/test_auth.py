"""Authentication of the web process: every route but /healthz is closed without the
right credentials; no unauthenticated listening beyond loopback; no secret in a log."""
import base64
import re
import subprocess
import sys
import time

import pytest

from support.ini import write_ini
from support.procs import REPO_ROOT, read_log, start_process, stop_process
from support.smtp_server import SMTPServer
from support.web_proc import WebProcess

USER, PASSWORD, TOKEN = 'admin', 'pässwörd-s3cret', 'tok-9f8e7d6c5b4a'


def basic(user, password):
    return {'Authorization': 'Basic ' + base64.b64encode(f'{user}:{password}'.encode()).decode()}


@pytest.fixture(scope='module')
def web(redis_server, tmp_path_factory):
    ini = write_ini(tmp_path_factory.mktemp('auth') / 'mailq.ini', {
        'redis': {'url': redis_server.url, 'prefix': 'auth'},
        'web': {'username': USER, 'password': PASSWORD, 'api_token': TOKEN}})
    server = WebProcess(ini)
    server.ini = ini
    yield server
    server.stop()


def routes(ini):
    """Every (method, path) the app serves, with placeholders filled in."""
    from mailq import config
    from mailq.runtime import Runtime
    from mailq.web.app import create_app
    app = create_app(Runtime(config.load(str(ini))))
    return sorted({(r.method, re.sub(r'<[^>]+>', 'x', r.rule)) for r in app.routes})


WRONG = [None, basic(USER, 'wrong'), basic('wrong', PASSWORD), basic(USER, PASSWORD[:-1]),
         basic(USER, PASSWORD + 'x'), basic('', ''), {'Authorization': 'Bearer nope'},
         {'Authorization': 'Bearer ' + TOKEN[:-1]}, {'Authorization': 'Basic !!notbase64'},
         {'Authorization': 'Basic ' + base64.b64encode(b'\xff\xfe:\xff').decode()},
         {'Authorization': 'Digest ' + TOKEN}, {'Authorization': TOKEN}]


def test_every_route_but_healthz_needs_credentials(web):
    checked = 0
    for method, path in routes(web.ini):
        for headers in WRONG:
            status, answer_headers, _ = web.request(method, path, body=b'{}' if method in (
                'POST', 'PUT', 'PATCH', 'DELETE') else None, headers=headers)
            if path == '/healthz':
                assert status == 200
                continue
            assert status == 401, (method, path, headers, status)
            challenge = {k.lower(): v for k, v in answer_headers.items()}.get('www-authenticate')
            assert 'Basic' in (challenge or ''), (method, path)
            checked += 1
    assert checked > 20


def test_right_credentials_pass(web):
    for headers in (basic(USER, PASSWORD), {'Authorization': 'Bearer ' + TOKEN}):
        assert web.request('GET', '/api/stats', headers=headers)[0] == 200
        status, _, data = web.request('POST', '/api/mails', {'to': 'bad'}, headers=headers)
        assert status == 422 and data['details']['field'] == 'to'


def test_comparisons_are_constant_time():
    """Code review made executable: credentials are compared with hmac.compare_digest."""
    import inspect
    from mailq.web import auth
    source = inspect.getsource(auth.auth_state)     # check_auth and hot.py both call it
    assert source.count('hmac.compare_digest') >= 3
    assert not re.search(r'(==|!=)\s*web\.(username|password|api_token)|'
                         r'web\.(username|password|api_token)\s*(==|!=)', source)


@pytest.mark.parametrize('command', ['web', 'run'])
def test_refuses_to_listen_beyond_loopback_without_auth(tmp_path, redis_url, command):
    ini = write_ini(tmp_path / 'mailq.ini', {'redis': {'url': redis_url}})
    result = subprocess.run([sys.executable, str(REPO_ROOT / 'mailq.py'), command, '-c', ini,
                             '--host', '0.0.0.0', '--port', '1'], capture_output=True,
                            text=True, timeout=30, cwd=REPO_ROOT)
    assert result.returncode != 0
    assert 'refusing to listen on 0.0.0.0 without authentication' in result.stderr
    assert '[web]' in result.stderr and 'Traceback' not in result.stderr


def test_no_secret_in_any_log_line_or_answer(tmp_path, redis_server):
    """SMTP and Redis passwords stay out of the logs, even when both are refused."""
    client = redis_server.client()
    redis_secret, smtp_secret = 'r3dis-s3cret-pw', 'smtp-s3cret-pw'
    with SMTPServer(security='tls', auth=('user', 'other-password')) as smtp:
        ini = write_ini(tmp_path / 'mailq.ini', {
            'redis': {'url': f'redis://:{redis_secret}@127.0.0.1:{redis_server.port}/0',
                      'prefix': 'secrets'},
            'smtp': {'transport': 'smtp', 'host': '127.0.0.1', 'port': smtp.port,
                     'security': 'tls', 'ca_file': smtp.ca_file, 'username': 'user',
                     'password': smtp_secret},
            'web': {'username': USER, 'password': PASSWORD, 'api_token': TOKEN},
            'log': {'level': 'debug'}})
        client.config_set('requirepass', redis_secret)
        try:
            web = WebProcess(ini)
            worker = start_process([sys.executable, REPO_ROOT / 'mailq.py', 'worker', '-c', ini,
                                    '-w', '2'])
            status, _, data = web.request('POST', '/api/mails', {
                'to': 'a@example.com', 'subject': 's', 'text': 't'}, headers=basic(USER, PASSWORD))
            assert status == 202
            authed = __import__('redis').Redis(port=redis_server.port, password=redis_secret)
            deadline = time.monotonic() + 20
            while authed.hget(f'secrets:m:{data["id"]}', 'status') != b'dead':
                assert time.monotonic() < deadline, read_log(worker)
                time.sleep(0.1)
            # Now a wrong Redis password: every process logs its connection error.
            authed.config_set('requirepass', 'changed-' + redis_secret)
            answers = [web.request('GET', '/api/stats', headers=basic(USER, PASSWORD)),
                       web.request('GET', '/healthz'),
                       web.request('GET', '/api/stats', headers=basic(USER, 'x' + PASSWORD))]
            time.sleep(2)
            logs = read_log(worker) + read_log(web.proc)
            texts = logs + repr(answers)
            for secret in (redis_secret, smtp_secret, PASSWORD, TOKEN,
                           base64.b64encode(f'{USER}:{PASSWORD}'.encode()).decode()):
                assert secret not in texts, secret
            assert '535' in logs
        finally:
            stop_process(worker)
            web.stop()
            redis = __import__('redis').Redis(port=redis_server.port,
                                              password='changed-' + redis_secret)
            redis.config_set('requirepass', '')
