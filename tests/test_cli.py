"""The CLI roles as subprocesses: send, stats, check, web, worker, run, and their errors."""
import json
import signal
import socket

import pytest

from support.mailq_app import run_cli
from support.procs import PYTHON, REPO_ROOT, free_port, read_log, start_process, stop_process
from support.procs import wait_http


def test_send_prints_the_id_and_stats_count_it(mailq_ini, redis_client):
    result = run_cli(mailq_ini, 'send', '--to', 'ann@example.com', '--template', 'welcome',
                     '--context', '{"name": "Ann"}', '--queue', 'default')
    assert result.returncode == 0, result.stderr
    mail_id = result.stdout.strip()
    assert redis_client.hget(f'mailq:m:{mail_id}', 'status') == b'queued'
    result = run_cli(mailq_ini, 'send', '--to', 'bob@example.com', '--subject', 'Hi',
                     '--text', 'Hello', '--at', '2099-01-01T00:00:00+00:00')
    assert result.returncode == 1 and 'send_at' in result.stderr
    stats = json.loads(run_cli(mailq_ini, 'stats').stdout)
    assert stats['enqueued'] == 1 and stats['queues']['default'] == 1


def test_send_with_bad_input_says_which_field(mailq_ini):
    result = run_cli(mailq_ini, 'send', '--to', 'nobody', '--subject', 's', '--text', 't')
    assert result.returncode == 1
    assert 'invalid mail: to:' in result.stderr and 'Traceback' not in result.stderr
    result = run_cli(mailq_ini, 'send', '--to', 'a@example.com', '--template', 'welcome',
                     '--context', '{not json')
    assert result.returncode == 1 and 'context' in result.stderr


def test_check_passes_and_fails_clearly(mailq_ini, tmp_ini):
    result = run_cli(mailq_ini, 'check')
    assert result.returncode == 0, result.stdout + result.stderr
    assert 'redis' in result.stdout and 'templates' in result.stdout
    bad = tmp_ini(name='bad.ini', redis={'url': f'redis://127.0.0.1:{free_port()}/0'},
                  smtp={'transport': 'smtp', 'port': str(free_port())},
                  templates={'path': str(REPO_ROOT / 'templates' / 'mail')})
    result = run_cli(bad, 'check')
    assert result.returncode == 1
    assert 'FAIL unreachable' in result.stdout and 'cannot reach' in result.stdout


def test_config_errors_name_file_section_and_key(tmp_ini):
    ini = tmp_ini(worker={'concurrency': 'lots'})
    result = run_cli(ini, 'stats')
    assert result.returncode == 2
    assert f'{ini}:[worker]:concurrency' in result.stderr and 'lots' in result.stderr
    ini = tmp_ini(name='b.ini', smtp={'security': 'ssl'})
    result = run_cli(ini, 'check')
    assert '[smtp]:security' in result.stderr and 'none | starttls | tls' in result.stderr
    result = run_cli(REPO_ROOT / 'no-such.ini', 'stats')
    assert result.returncode == 2 and 'config file not found' in result.stderr


def test_web_refuses_public_bind_without_auth(mailq_ini, tmp_ini, redis_url):
    result = run_cli(mailq_ini, 'web', '--host', '0.0.0.0', '--port', str(free_port()), timeout=20)
    assert result.returncode == 2
    assert 'command line:--host: refusing to listen on 0.0.0.0 without authentication' \
        in result.stderr
    ini = tmp_ini(name='public.ini', redis={'url': redis_url}, web={'host': '0.0.0.0'})
    result = run_cli(ini, 'web', timeout=20)
    assert result.returncode == 2 and f'{ini}:[web]:host: refusing' in result.stderr


@pytest.mark.parametrize('role', ['web', 'run'])
@pytest.mark.parametrize('port', ['0', '70000', '-1', 'http'])
def test_a_bad_port_flag_is_a_usage_error(tmp_ini, role, port):
    result = run_cli(tmp_ini(), role, '--port', port, timeout=20)
    assert result.returncode == 2 and 'Traceback' not in result.stderr
    assert f"argument --port: '{port}' is not a port (1 to 65535)" in result.stderr


@pytest.mark.parametrize('processes', ['1', '2'])
def test_a_port_in_use_is_a_clean_config_error(tmp_ini, redis_url, processes):
    with socket.socket() as taken:
        taken.bind(('127.0.0.1', 0))
        taken.listen()
        port = taken.getsockname()[1]
        ini = tmp_ini(redis={'url': redis_url}, web={'port': str(port), 'processes': processes})
        from_file = run_cli(ini, 'web', timeout=20)
        flag_ini = tmp_ini(name='flag.ini', redis={'url': redis_url},
                           web={'processes': processes})
        from_flag = [run_cli(flag_ini, role, '--port', str(port), timeout=20)
                     for role in ('web', 'run')]
    message = f'cannot listen on 127.0.0.1:{port}: Address already in use'
    assert from_file.returncode == 2 and 'Traceback' not in from_file.stderr
    assert f'{ini}:[web]:port: {message}' in from_file.stderr
    for result in from_flag:
        assert result.returncode == 2 and 'Traceback' not in result.stderr
        assert f'command line:--port: {message}' in result.stderr


def test_web_and_worker_processes_deliver(mailq_ini, smtp_server):
    port = free_port()
    web = start_process([PYTHON, REPO_ROOT / 'mailq.py', 'web', '-c', mailq_ini, '--port', port])
    worker = start_process([PYTHON, REPO_ROOT / 'mailq.py', 'worker', '-c', mailq_ini, '-w', '3'])
    try:
        wait_http(f'http://127.0.0.1:{port}/healthz')
        import urllib.request
        req = urllib.request.Request(
            f'http://127.0.0.1:{port}/api/mails', method='POST',
            data=json.dumps({'to': 'ann@example.com', 'subject': 's', 'text': 't'}).encode(),
            headers={'Content-Type': 'application/json'})   # urllib's default, a form: 415
        with urllib.request.urlopen(req) as resp:
            assert resp.status == 202
        assert len(smtp_server.wait_for(1)) == 1
    finally:
        assert stop_process(worker, signal.SIGTERM) == 0
        stop_process(web, signal.SIGTERM)
    assert 'keeps nothing on disk' in read_log(worker)


def test_run_serves_api_and_delivers(mailq_ini, smtp_server):
    port = free_port()
    proc = start_process([PYTHON, REPO_ROOT / 'mailq.py', 'run', '-c', mailq_ini, '--port', port,
                          '-w', '2'])
    try:
        wait_http(f'http://127.0.0.1:{port}/healthz')
        result = run_cli(mailq_ini, 'send', '--to', 'ann@example.com', '--subject', 's',
                         '--text', 't')
        assert result.returncode == 0
        assert len(smtp_server.wait_for(1)) == 1
    finally:
        assert stop_process(proc, signal.SIGINT) == 0


def test_help_lists_every_role():
    import subprocess
    out = subprocess.run([PYTHON, str(REPO_ROOT / 'mailq.py'), '--help'], capture_output=True,
                         text=True).stdout
    for role in ('web', 'worker', 'run', 'send', 'stats', 'check'):
        assert role in out
    out = subprocess.run([PYTHON, str(REPO_ROOT / 'mailq.py'), 'worker', '--help'],
                         capture_output=True, text=True).stdout
    assert '-w N' in out and 'QUEUE[,WEIGHT]' in out and '{thread,process}' in out
