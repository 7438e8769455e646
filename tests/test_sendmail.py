"""`mailq-sendmail` (and `mailq sendmail`) as programs call /usr/sbin/sendmail: a message
on stdin, sendmail's flags, sysexits exit codes; through the one accept path."""
import email
import email.policy
import os
import subprocess
import sys
from pathlib import Path

import pytest

from mailq.config import load
from mailq.runtime import Runtime
from support.procs import REPO_ROOT, free_port
from support.submission import stored

SENDMAIL = Path(sys.executable).parent / 'mailq-sendmail'
CRON_MAIL = (b'From: root (Cron Daemon) <root@box.example>\n'
             b'To: ops@example.com\nBcc: audit@example.com\nSubject: Cron <root@box> backup\n'
             b'\nbackup done\n.\nstill the body with -oi\n')


@pytest.fixture
def ini(redis_ini):
    return redis_ini


def sendmail(ini, *args, message=b'', command=None, env=None):
    command = command or [str(SENDMAIL)]
    return subprocess.run([*command, '-C', str(ini), *args], input=message,
                          capture_output=True, timeout=30,
                          env={**os.environ, **(env or {})})


def record(ini, mail_id):
    return Runtime(load(str(ini), environ={})).store.get(mail_id, with_raw=True)


def test_cron_style_dash_t_oi(ini, redis_client):
    result = sendmail(ini, '-t', '-oi', '-f', 'root@box.example', message=CRON_MAIL)
    assert result.returncode == 0, result.stderr
    [mail_id] = stored(redis_client)
    rec = record(ini, mail_id)
    assert rec.fields['source'] == 'sendmail'
    assert rec.envelope == {'from': 'root@box.example',
                            'rcpts': ['ops@example.com', 'audit@example.com']}
    assert b'Bcc' not in rec.raw and b'\r\n.\r\nstill the body with -oi\r\n' in rec.raw
    assert b'\n' not in rec.raw.replace(b'\r\n', b'')          # CRLF line ends throughout
    msg = email.message_from_bytes(rec.raw, policy=email.policy.default)
    assert msg['Date'] and msg['Message-ID'] == rec.fields['message_id']


def test_arguments_and_full_name(ini, redis_client):
    result = sendmail(ini, '-F', 'Backup Job', '-froot@box.example', 'a@example.com,b@example.com',
                      'c@example.com', message=b'Subject: hi\n\nbody\n')
    assert result.returncode == 0, result.stderr
    [mail_id] = stored(redis_client)
    rec = record(ini, mail_id)
    assert rec.envelope['rcpts'] == ['a@example.com', 'b@example.com', 'c@example.com']
    assert rec.raw.startswith(b'From: Backup Job <root@box.example>\r\n')


def test_without_i_a_dot_line_ends_the_message(ini, redis_client):
    result = sendmail(ini, 'a@example.com', message=b'Subject: s\n\nkept\n.\ndropped\n')
    assert result.returncode == 0, result.stderr
    rec = record(ini, stored(redis_client)[0])
    assert rec.raw.endswith(b'\r\n\r\nkept\r\n') and b'dropped' not in rec.raw


def test_mailq_sendmail_subcommand(ini, redis_client):
    result = sendmail(ini, '-i', 'a@example.com', message=b'Subject: s\n\nx\n',
                      command=[sys.executable, str(REPO_ROOT / 'mailq.py'), 'sendmail'])
    assert result.returncode == 0, result.stderr
    assert len(stored(redis_client)) == 1


@pytest.mark.parametrize('args, message, code, text', [
    (['-bs'], b'Subject: s\n\nx\n', 64, b'only -bm'),
    (['-X', 'a@example.com'], b'Subject: s\n\nx\n', 64, b'unknown flag -X'),
    (['-f'], b'', 64, b'-f needs a value'),
    (['-i'], b'Subject: s\n\nx\n', 64, b'no recipients'),
    (['-i', 'a@example.com'], b'not a header\n\nx\n', 65, b'header line 1'),
    (['-i', 'a..b@example.com'], b'Subject: s\n\nx\n', 65, b'unsupported local part'),
    (['-i', 'a@example.com'], b'X-Mailq-Delay: soon\nSubject: s\n\nx\n', 65,
     b'X-Mailq-Delay'),
])
def test_exit_codes(args, message, code, text, ini, redis_client):
    result = sendmail(ini, *args, message=message)
    assert result.returncode == code, result.stderr
    assert text in result.stderr
    assert stored(redis_client) == []


def test_redis_down_is_ex_tempfail(tmp_ini):
    down = tmp_ini('down.ini', redis={'url': f'redis://127.0.0.1:{free_port()}/0'})
    result = sendmail(down, '-i', 'a@example.com', message=b'Subject: s\n\nx\n')
    assert result.returncode == 75, result.stderr
    assert b'Redis unreachable' in result.stderr and b'try again later' in result.stderr


def test_config_error_is_ex_config(tmp_ini):
    bad = tmp_ini('bad.ini', submission={'port': 'many'})
    result = sendmail(bad, '-i', 'a@example.com', message=b'Subject: s\n\nx\n')
    assert result.returncode == 78 and b'[submission]:port' in result.stderr, result.stderr


def test_debian_cron_invocation(ini, redis_client):
    """Debian's cron runs `sendmail -FCronDaemon -i -B8BITMIME -oem MAILTO`."""
    result = sendmail(ini, '-FCronDaemon', '-i', '-B8BITMIME', '-oem', 'ops@example.com',
                      message=b'Subject: Cron <root@box> run-parts\n\nok\n')
    assert result.returncode == 0, result.stderr
    rec = record(ini, stored(redis_client)[0])
    assert rec.envelope['rcpts'] == ['ops@example.com']
    assert rec.raw.startswith(b'From: CronDaemon <mailq@localhost>\r\n')
