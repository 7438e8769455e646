"""`mailq send --csv FILE --template NAME`: one mail per row, idempotent on re-run."""
import csv
import email

import pytest

from mailq.bulk import enqueue_csv, row_key
from mailq.config import load
from mailq.runtime import Runtime
from support.mailq_app import run_cli
from support.records import record_ids


def write_csv(path, rows, header=('email', 'name', 'product')):
    with open(path, 'w', newline='', encoding='utf-8') as fh:
        writer = csv.writer(fh)
        writer.writerow(header)
        writer.writerows(rows)
    return path


def mail_count(redis_client):
    return len(record_ids(redis_client))


def test_rows_become_mails_with_a_summary_and_rerun_adds_nothing(mailq_ini, tmp_path,
                                                                  redis_client, worker,
                                                                  smtp_server):
    path = write_csv(tmp_path / 'people.csv', [
        ('ann@example.com', 'Ann', 'Widgets'),
        ('not an address', 'Nobody', 'Widgets'),
        ('', 'Empty', 'Widgets'),
        ('bo@example.com', 'Bo', 'Gadgets'),
    ])
    first = run_cli(mailq_ini, 'send', '--csv', path, '--template', 'welcome')
    assert first.returncode == 1, first.stderr       # some rows were rejected
    lines = first.stdout.splitlines()
    assert lines[0] == 'accepted 2, already enqueued 0, rejected 2'
    assert lines[1].startswith('  line 3: to: not a valid address')
    assert lines[2] == '  line 4: email: is empty'

    again = run_cli(mailq_ini, 'send', '--csv', path, '--template', 'welcome')
    assert again.stdout.splitlines()[0] == 'accepted 0, already enqueued 2, rejected 2'

    messages = smtp_server.wait_for(2, timeout=20)
    subjects = sorted(email.message_from_bytes(m.data)['Subject'] for m in messages)
    assert subjects == ['Welcome to Gadgets, Bo!', 'Welcome to Widgets, Ann!']
    assert mail_count(redis_client) == 2


def test_all_good_rows_exit_zero_with_queue_and_context(mailq_ini, tmp_path, redis_client):
    path = write_csv(tmp_path / 'ok.csv', [('ann@example.com', 'Ann')], header=('to', 'name'))
    result = run_cli(mailq_ini, 'send', '--csv', path, '--template', 'welcome', '--queue',
                     'default', '--context', '{"product": "Base", "name": "overridden"}')
    assert result.returncode == 0, result.stdout + result.stderr
    assert result.stdout.strip() == 'accepted 1, already enqueued 0, rejected 0'
    assert redis_client.llen('mailq:q:default') == 1
    [key] = [f'mailq:m:{i}' for i in record_ids(redis_client)]
    assert redis_client.hget(key, 'subject') == b'Welcome to Base, Ann!'


def test_key_column_keeps_a_corrected_row_the_same_mail(mailq_ini, tmp_path, redis_client):
    config = load(str(mailq_ini), environ={})
    rt = Runtime(config)
    header = ('id', 'email', 'name')
    path = write_csv(tmp_path / 'v1.csv', [('1', 'ann@example.com', 'Anm')], header)
    assert enqueue_csv(rt, path, 'welcome', key_column='id', progress=False).accepted == 1
    fixed = write_csv(tmp_path / 'v2.csv', [('1', 'ann@example.com', 'Ann')], header)
    summary = enqueue_csv(rt, fixed, 'welcome', key_column='id', progress=False)
    assert (summary.accepted, summary.duplicates) == (0, 1)
    # Without a key column the whole row is the key: the corrected row is a new mail.
    assert enqueue_csv(rt, path, 'welcome', progress=False).accepted == 1
    assert enqueue_csv(rt, fixed, 'welcome', progress=False).accepted == 1
    assert mail_count(redis_client) == 3


def test_row_key_depends_on_template_and_row():
    row = {'email': 'a@example.com', 'name': 'A'}
    assert row_key('welcome', row) == row_key('welcome', dict(reversed(row.items())))
    assert row_key('welcome', row) != row_key('password_reset', row)
    assert row_key('welcome', row) != row_key('welcome', {**row, 'name': 'B'})
    assert row_key('welcome', row, 'email') == row_key('welcome', {**row, 'name': 'B'}, 'email')
    assert len(row_key('welcome', row)) <= 200


@pytest.mark.parametrize('args,message', [
    (['--template', 'welcome', '--to', 'x@example.com'], 'to: not with --csv'),
    ([], '--csv needs --template'),
    (['--template', 'nope'], "unknown template 'nope'"),
    (['--template', 'welcome', '--key-column', 'id'], "no column 'id'"),
])
def test_bad_invocations_say_why_and_enqueue_nothing(mailq_ini, tmp_path, redis_client, args,
                                                    message):
    path = write_csv(tmp_path / 'p.csv', [('ann@example.com', 'Ann', 'W')])
    result = run_cli(mailq_ini, 'send', '--csv', path, *args)
    assert result.returncode == 1 and message in result.stderr, result.stderr
    assert mail_count(redis_client) == 0


def test_csv_without_recipient_column(mailq_ini, tmp_path, redis_client):
    path = write_csv(tmp_path / 'p.csv', [('Ann',)], header=('name',))
    result = run_cli(mailq_ini, 'send', '--csv', path, '--template', 'welcome')
    assert result.returncode == 1 and '"to" or "email" column' in result.stderr


def test_send_without_to_or_csv(mailq_ini):
    result = run_cli(mailq_ini, 'send', '--subject', 's', '--text', 't')
    assert result.returncode == 1 and 'to: is required' in result.stderr


def run_in_terminal(args, timeout=60):
    """Run a command on a pseudo-terminal 100 columns wide; everything it wrote."""
    import fcntl
    import os
    import pty
    import select
    import struct
    import termios
    import time
    pid, fd = pty.fork()
    if pid == 0:
        time.sleep(0.2)                  # the parent sets the window size first
        os.execv(args[0], args)
    fcntl.ioctl(fd, termios.TIOCSWINSZ, struct.pack('HHHH', 24, 100, 0, 0))
    out, deadline = b'', time.monotonic() + timeout
    while time.monotonic() < deadline:
        if not select.select([fd], [], [], 1)[0]:
            continue
        try:
            data = os.read(fd, 65536)
        except OSError:                  # the child is gone
            break
        if not data:
            break
        out += data
    os.waitpid(pid, 0)
    return out.decode('utf-8', 'replace')


def test_a_terminal_sees_the_progress_bar_and_a_pipe_does_not(mailq_ini, tmp_path):
    from support.procs import PYTHON, REPO_ROOT
    path = write_csv(tmp_path / 'many.csv',
                     [(f'user{n}@example.com', f'User {n}', 'Widgets') for n in range(300)])
    args = [str(PYTHON), str(REPO_ROOT / 'mailq.py'), 'send', '--csv', str(path),
            '--template', 'welcome', '-c', str(mailq_ini)]
    shown = run_in_terminal(args)
    assert '300/300 [' in shown and 'row/s]' in shown and '100%|' in shown
    assert 'accepted 300, already enqueued 0, rejected 0' in shown
    piped = run_cli(mailq_ini, 'send', '--csv', path, '--template', 'welcome')
    assert piped.returncode == 0 and 'already enqueued 300' in piped.stdout
    assert 'row/s' not in piped.stderr and '300/300' not in piped.stderr
