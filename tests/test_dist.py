"""dist/mailq.pyz runs with nothing but a Python 3.11+, and `pip install .` gives `mailq`."""
import shutil
import subprocess
import sys
import venv

import pytest

from support.ini import write_ini
from test_install import pins
from support.procs import REPO_ROOT, free_port, read_log, start_process, stop_process, wait_http
from support.records import record_ids
from support.submission import SubmissionProcess

SYSTEM_PYTHON = '/usr/bin/python3'


def plain_python():
    """Debian's python3 when it is 3.11+ (the target), else the one running the tests."""
    path = shutil.which(SYSTEM_PYTHON)
    if path:
        ok = subprocess.run([path, '-c', 'import sys; sys.exit(sys.version_info < (3, 11))'])
        if ok.returncode == 0:
            return path
    return sys.executable


@pytest.fixture(scope='module')
def pyz(tmp_path_factory):
    out = tmp_path_factory.mktemp('dist') / 'mailq.pyz'
    subprocess.run([sys.executable, str(REPO_ROOT / 'scripts' / 'build_pyz.py'),
                    '--output', str(out)], check=True, capture_output=True, timeout=300)
    return out


def pyz_command(pyz, *args):
    # -I: no PYTHONPATH, no user site, no cwd on sys.path; only the zip provides modules.
    return [plain_python(), '-I', str(pyz), *args]


def run_pyz(pyz, *args, cwd):
    return subprocess.run(pyz_command(pyz, *args), capture_output=True, text=True, timeout=60,
                          cwd=str(cwd))


@pytest.fixture
def plain_ini(tmp_path, redis_url, smtp_server):
    """A config outside the repo with no [templates] path: the built-in templates."""
    return write_ini(tmp_path / 'mailq.ini', {
        'redis': {'url': redis_url},
        'worker': {'concurrency': '2'},
        'smtp': {'transport': 'smtp', 'host': '127.0.0.1', 'port': smtp_server.port,
                 'timeout': '5', 'from': 'mailq@example.com'},
    })


def test_archive_holds_code_templates_and_no_compiled_modules(pyz):
    import zipfile
    names = zipfile.ZipFile(pyz).namelist()
    assert '__main__.py' in names
    assert 'mailq/store/scripts/finish.lua' in names
    assert 'mailq/_templates/mail/welcome.txt' in names
    assert 'prometheus_client/__init__.py' in names and 'tqdm/__init__.py' in names
    assert not [n for n in names if n.endswith(('.so', '.pyc'))]


def test_archive_holds_exactly_the_locked_versions(pyz):
    """make dist installs through requirements.lock (issue 11 item 21): every package in
    the archive is a pin of the lock, or the one extra build_pyz adds for older Pythons."""
    import re
    import zipfile
    shipped = {re.sub(r'[-_.]+', '-', m.group(1)).lower(): m.group(2)
               for m in (re.match(r'^([^/]+)-([^-/]+)\.dist-info/', name)
                         for name in zipfile.ZipFile(pyz).namelist()) if m}
    locked = {name: pin[0] for name, pin in pins('requirements.lock').items()}
    assert shipped.pop('mailq') == '0.1.0'
    assert shipped.pop('async-timeout') == '5.0.1'     # build_pyz.TARGET_EXTRAS
    assert shipped == locked


def test_check_through_pyz(pyz, plain_ini, tmp_path):
    result = run_pyz(pyz, 'check', '-c', plain_ini, cwd=tmp_path)
    assert result.returncode == 0, result.stdout + result.stderr
    assert 'templates' in result.stdout and 'welcome' in result.stdout
    assert 'redis' in result.stdout and 'smtp' in result.stdout


def test_check_through_pyz_fails_without_redis(pyz, tmp_path):
    ini = write_ini(tmp_path / 'down.ini', {'redis': {'url': 'redis://127.0.0.1:1/0'}})
    result = run_pyz(pyz, 'check', '-c', ini, cwd=tmp_path)
    assert result.returncode == 1
    assert 'FAIL' in result.stdout


def test_send_and_deliver_through_pyz(pyz, plain_ini, tmp_path, smtp_server):
    worker = start_process(pyz_command(pyz, 'worker', '-c', plain_ini), cwd=tmp_path)
    try:
        sent = run_pyz(pyz, 'send', '-c', plain_ini, '--to', 'ann@example.com',
                       '--template', 'welcome', '--context', '{"name": "Ann"}', cwd=tmp_path)
        assert sent.returncode == 0, sent.stderr
        mail_id = sent.stdout.strip()
        [msg] = smtp_server.wait_for(1, timeout=20)
    finally:
        assert stop_process(worker) == 0, read_log(worker)
    assert msg.rcpt_tos == ['ann@example.com']
    assert b'Subject: Welcome to our service, Ann!' in msg.data
    assert mail_id in read_log(worker)


def test_templates_path_on_disk_overrides_builtin(pyz, tmp_path, redis_url, smtp_server):
    own = tmp_path / 'own'
    own.mkdir()
    (own / 'welcome.subject').write_text('Our own welcome, {{ name }}')
    (own / 'welcome.txt').write_text('Hi {{ name }}')
    ini = write_ini(tmp_path / 'own.ini', {
        'redis': {'url': redis_url}, 'templates': {'path': 'own'},
        'smtp': {'transport': 'smtp', 'host': '127.0.0.1', 'port': smtp_server.port}})
    check = run_pyz(pyz, 'check', '-c', ini, cwd=tmp_path)
    assert check.returncode == 0, check.stdout
    assert '1 rendered: welcome' in check.stdout
    worker = start_process(pyz_command(pyz, 'worker', '-c', ini), cwd=tmp_path)
    try:
        sent = run_pyz(pyz, 'send', '-c', ini, '--to', 'bo@example.com', '--template',
                       'welcome', '--context', '{"name": "Bo"}', cwd=tmp_path)
        assert sent.returncode == 0, sent.stderr
        [msg] = smtp_server.wait_for(1, timeout=20)
    finally:
        stop_process(worker)
    assert b'Subject: Our own welcome, Bo' in msg.data


def test_web_through_pyz_serves_dashboard_metrics_and_health(pyz, plain_ini, tmp_path):
    import urllib.request
    from prometheus_client.parser import text_string_to_metric_families
    port = free_port()
    web = start_process(pyz_command(pyz, 'web', '-c', plain_ini, '--port', port), cwd=tmp_path)
    base = f'http://127.0.0.1:{port}'
    try:
        assert wait_http(base + '/healthz', timeout=20) == 200
        pages = {}
        for path in ('/', '/static/dashboard.css', '/metrics'):
            with urllib.request.urlopen(base + path, timeout=10) as resp:
                pages[path] = (resp.status, resp.read().decode())
    finally:
        stop_process(web)
    assert pages['/'][0] == 200 and '<html' in pages['/'][1].lower()
    assert pages['/static/dashboard.css'][0] == 200
    names = {f.name for f in text_string_to_metric_families(pages['/metrics'][1])}
    assert {'mailq_redis_up', 'mailq_queue_size', 'mailq_deliveries'} <= names


@pytest.mark.slow
def test_pip_install_gives_mailq_console_script(tmp_path, plain_ini):
    """A wheel install (not editable) carries the templates and Lua scripts itself."""
    env_dir = tmp_path / 'venv'
    venv.EnvBuilder(with_pip=True).create(env_dir)
    pip = subprocess.run([env_dir / 'bin' / 'pip', 'install', '--quiet',
                          '--disable-pip-version-check', str(REPO_ROOT)],
                         capture_output=True, text=True, timeout=300)
    assert pip.returncode == 0, pip.stderr
    mailq = env_dir / 'bin' / 'mailq'
    help_text = subprocess.run([mailq, '--help'], capture_output=True, text=True, cwd=tmp_path)
    direct = subprocess.run([sys.executable, REPO_ROOT / 'mailq.py', '--help'],
                            capture_output=True, text=True, cwd=tmp_path)
    assert help_text.returncode == 0 and help_text.stdout == direct.stdout
    check = subprocess.run([mailq, 'check', '-c', plain_ini], capture_output=True, text=True,
                           cwd=tmp_path)
    assert check.returncode == 0, check.stdout + check.stderr
    assert str(env_dir) in subprocess.run(
        [env_dir / 'bin' / 'python', '-I', '-c', 'import mailq.web.app, mailq.templates as t; '
         'print(t.builtin_templates("mail"))'], capture_output=True, text=True,
        cwd=tmp_path).stdout


def test_submission_through_pyz_runs_on_asyncios_loop(pyz, tmp_path, redis_url, redis_client):
    """The archive holds no compiled uvloop: [submission] event_loop = auto falls back to
    asyncio's own loop, and the listener stores what it is given."""
    import smtplib
    port = free_port()
    ini = write_ini(tmp_path / 'sub.ini', {'redis': {'url': redis_url},
                                           'submission': {'enabled': 'yes', 'port': port}})
    listener = SubmissionProcess(ini, port, command=pyz_command(pyz, 'submission', '-c', ini))
    try:
        with smtplib.SMTP('127.0.0.1', port, timeout=10) as conn:
            refused = conn.sendmail('app@example.com', ['ann@example.com'],
                                    b'From: app@example.com\r\nSubject: S\r\n\r\nHi.\r\n')
    finally:
        assert listener.stop() == 0, listener.log()
    assert refused == {}
    assert f'submission listening on smtp://127.0.0.1:{port}/ (asyncio)' in listener.log()
    assert len(record_ids(redis_client)) == 1
