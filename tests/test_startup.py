"""Config sits at the bottom; start-up checks that need more run in every role; a missing
config file is said loudly (issue 10 item 4, issue 11 item 14)."""
import os
import subprocess
import sys
from pathlib import Path

import pytest

from mailq.config import load
from mailq.errors import ConfigError
from mailq.startup import validate_startup
from support.procs import PYTHON, REPO_ROOT, read_log, start_process, stop_process, wait_http
from support.procs import free_port


def test_config_imports_neither_the_composer_nor_the_cron_layer():
    code = ('import sys, mailq.config; '
            'print(sorted(m for m in sys.modules if m.startswith(("mailq.", "jinja2"))))')
    out = subprocess.run([sys.executable, '-c', code], capture_output=True, text=True,
                         cwd=str(REPO_ROOT), check=True).stdout
    loaded = eval(out)      # a list literal of module names
    assert 'mailq.config' in loaded
    for heavy in ('mailq.compose', 'mailq.cron.validate', 'mailq.service', 'jinja2'):
        assert heavy not in loaded, loaded


def test_load_parses_and_validate_startup_checks_the_sender(tmp_ini):
    config = load(str(tmp_ini(smtp={'from': 'not an address'})), environ={})
    assert config.smtp.sender == 'not an address'       # load() alone parses
    with pytest.raises(ConfigError) as err:
        validate_startup(config)
    assert (err.value.section, err.value.key) == ('smtp', 'from')


def test_a_bad_cron_timezone_from_the_environment_names_the_variable(tmp_ini):
    config = load(str(tmp_ini()), environ={'MAILQ_CRON_TIMEZONE': 'Mars/Olympus'})
    with pytest.raises(ConfigError) as err:
        validate_startup(config)
    assert str(err.value).startswith('$MAILQ_CRON_TIMEZONE: ')


@pytest.mark.parametrize('role', [['stats'], ['check'], ['cron'], ['worker'], ['web'],
                                  ['run'], ['send', '--to', 'a@example.com', '--subject', 's',
                                            '--text', 't']])
def test_every_role_stops_on_a_bad_sender_naming_file_section_and_key(tmp_ini, role):
    ini = tmp_ini(redis={'url': f'redis://127.0.0.1:{free_port()}/0'},
                  smtp={'from': 'mailq'})
    result = subprocess.run([PYTHON, str(REPO_ROOT / 'mailq.py'), role[0], '-c', str(ini),
                             *role[1:]], capture_output=True, text=True, timeout=30)
    assert result.returncode == 2, result.stderr
    assert f'mailq: config error: {ini}:[smtp]:from: ' in result.stderr
    assert 'Traceback' not in result.stderr


# -- no config file found (issue 11 item 14) ------------------------------------------

def _env(redis_url, **extra):
    env = {k: v for k, v in os.environ.items() if not k.startswith('MAILQ_')}
    return {**env, 'MAILQ_REDIS_URL': redis_url, **extra}


def _cli(cwd, env, *args):
    return subprocess.run([PYTHON, str(REPO_ROOT / 'mailq.py'), *args], capture_output=True,
                          text=True, timeout=60, cwd=str(cwd), env=env)


def test_check_without_a_config_file_fails_loudly_unless_defaults(tmp_path, redis_url):
    env = _env(redis_url)
    result = _cli(tmp_path, env, 'check')
    assert result.returncode == 1, result.stdout + result.stderr
    looked = str(tmp_path / 'mailq.ini')
    assert f'WARNING: no config file found: looked for {looked}' in result.stderr
    assert 'transport = outbox (mail is kept in the outbox, never sent)' in result.stderr
    assert 'config     FAIL' in result.stdout and '--defaults' in result.stdout

    result = _cli(tmp_path, env, 'check', '--defaults')
    assert result.returncode == 0, result.stdout + result.stderr
    assert f'looked for {looked}' in result.stderr         # still said, even when accepted
    assert 'config     ok' in result.stdout


def test_check_with_a_config_file_says_nothing_about_defaults(tmp_path, redis_url):
    (tmp_path / 'mailq.ini').write_text(f'[redis]\nurl = {redis_url}\n')
    result = _cli(tmp_path, _env(redis_url), 'check')
    assert result.returncode == 0, result.stdout + result.stderr
    assert 'no config file' not in result.stderr


@pytest.mark.parametrize('args', [['stats'], ['cron'], ['suppress', 'list'],
                                  ['send', '--to', 'a@example.com', '--subject', 's',
                                   '--text', 't']])
def test_short_roles_without_a_config_file_say_where_they_looked(tmp_path, redis_url, args):
    result = _cli(tmp_path, _env(redis_url), *args)
    assert result.returncode == 0, result.stderr
    assert f'no config file found: looked for {tmp_path / "mailq.ini"}' in result.stderr


@pytest.mark.parametrize('command', [['mailq.py', 'sendmail'], ['mailq-sendmail']])
def test_sendmail_without_a_config_file_says_where_it_looked(tmp_path, redis_url, command):
    """The drop-in too: cron's mail would otherwise wait in the outbox unsaid."""
    program = ([PYTHON, str(REPO_ROOT / command[0]), *command[1:]] if command[0] == 'mailq.py'
               else [str(Path(PYTHON).parent / command[0])])
    result = subprocess.run([*program, 'ann@example.com'], input=b'Subject: s\n\nhi\n',
                            capture_output=True, timeout=60, cwd=str(tmp_path),
                            env=_env(redis_url))
    stderr = result.stderr.decode()
    assert result.returncode == 0, stderr
    assert f'no config file found: looked for {tmp_path / "mailq.ini"}' in stderr
    assert 'mail is kept in the outbox, never sent' in stderr


@pytest.mark.parametrize('role', ['web', 'worker', 'run', 'submission'])
def test_long_running_roles_without_a_config_file_say_where_they_looked(tmp_path, redis_url,
                                                                        role):
    port = free_port()
    proc = start_process([PYTHON, REPO_ROOT / 'mailq.py', role],
                         env=_env(redis_url, MAILQ_WEB_PORT=str(port),
                                  MAILQ_SUBMISSION_PORT=str(port),
                                  MAILQ_WORKER_CONCURRENCY='1'), cwd=tmp_path)
    try:
        if role in ('web', 'run'):
            wait_http(f'http://127.0.0.1:{port}/healthz')
        _wait_for_text(proc, {'web': 'web listening', 'worker': 'worker ', 'run': 'worker ',
                              'submission': 'submission listening'}[role])
    finally:
        stop_process(proc)
    assert f'no config file found: looked for {tmp_path / "mailq.ini"}' in read_log(proc)


def _wait_for_text(proc, text, timeout=20):
    import time
    deadline = time.monotonic() + timeout
    while text not in read_log(proc):
        assert proc.poll() is None, read_log(proc)
        assert time.monotonic() < deadline, read_log(proc)
        time.sleep(0.1)
