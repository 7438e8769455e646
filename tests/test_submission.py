"""The SMTP submission listener (`mailq submission`) as a real process, driven by real
clients: smtplib (STARTTLS, AUTH, pipelining), swaks, and a raw socket per refusal."""
import base64
import email
import email.policy
import smtplib
import signal
import socket
import ssl
import subprocess
import time

import pytest
import trustme

from mailq import service
from mailq.config import load
from mailq.runtime import Runtime
from support.ini import smtp_section
from support.procs import (PYTHON, REPO_ROOT, free_port, read_log, start_process,
                           stop_process, wait_http)
from support.records import record_ids
from support.redis_server import RedisServer
from support.submission import RawClient, SubmissionProcess

MESSAGE = (b'From: App <app@example.com>\r\nTo: Ann <ann@example.com>\r\n'
           b'Subject: Hello\r\n\r\nHi Ann.\r\n')


def stored(client):
    """Ids of the mail records in Redis."""
    return record_ids(client)


def queued_id(reply):
    assert reply.startswith('250 2.0.0 Ok: queued as '), reply
    return reply.rsplit(' ', 1)[1]


@pytest.fixture
def certs(tmp_path):
    """(cert path, key path, client SSL context) of a throwaway CA's 127.0.0.1 cert."""
    ca = trustme.CA()
    cert = ca.issue_cert('127.0.0.1', 'localhost')
    cert.private_key_pem.write_to_path(tmp_path / 'key.pem')
    cert.cert_chain_pems[0].write_to_path(tmp_path / 'cert.pem')
    ca.cert_pem.write_to_path(tmp_path / 'ca.pem')
    return (tmp_path / 'cert.pem', tmp_path / 'key.pem',
            ssl.create_default_context(cafile=str(tmp_path / 'ca.pem')))


@pytest.fixture
def listen(tmp_ini, redis_url):
    """listen(submission={...}, limits={...}, ...) -> a running SubmissionProcess with
    .rt, a Runtime on the same config."""
    procs = []

    def make(redis_url=redis_url, **sections):
        port = free_port()
        submission = {'enabled': 'yes', 'port': port, **sections.pop('submission', {})}
        ini = tmp_ini(f'sub{len(procs)}.ini', redis={'url': redis_url},
                      submission=submission,
                      templates={'path': str(REPO_ROOT / 'templates' / 'mail')}, **sections)
        proc = SubmissionProcess(ini, port)
        proc.rt = Runtime(load(str(ini), environ={}))
        procs.append(proc)
        return proc

    yield make
    for proc in procs:
        proc.stop()


# -- accepted mail ---------------------------------------------------------------


@pytest.mark.parametrize('event_loop, loop_name', [('auto', 'uvloop'), ('asyncio', 'asyncio')])
def test_smtplib_starttls_auth_and_pipelining(event_loop, loop_name, listen, certs,
                                              redis_client):
    """STARTTLS, then AUTH, then one pipelined transaction (MAIL, RCPTs, DATA in one
    write): 250 names a mail id, and the record knows its source and user. On uvloop's
    event loop (the default, installed with mailq) and on asyncio's."""
    cert, key, client_ctx = certs
    sub = listen(submission={'username': 'app', 'password': 's3cret!',
                             'tls_cert': cert, 'tls_key': key, 'event_loop': event_loop})
    assert f'(STARTTLS) (AUTH) ({loop_name})' in sub.log()
    conn = smtplib.SMTP('127.0.0.1', sub.port, timeout=10)
    conn.ehlo('client.example')
    assert conn.has_extn('starttls') and conn.has_extn('pipelining')
    assert conn.has_extn('size') and conn.has_extn('8bitmime') and conn.has_extn('smtputf8')
    conn.starttls(context=client_ctx)
    conn.ehlo('client.example')
    assert 'PLAIN' in conn.esmtp_features['auth'] and 'LOGIN' in conn.esmtp_features['auth']
    conn.login('app', 's3cret!')
    conn.send('MAIL FROM:<app@example.com>\r\nRCPT TO:<ann@example.com>\r\n'
              'RCPT TO:<bob@example.com>\r\nDATA\r\n')
    replies = [conn.getreply()[0] for _ in range(4)]
    assert replies == [250, 250, 250, 354]
    conn.send(MESSAGE + b'.\r\n')
    code, text = conn.getreply()
    conn.quit()
    assert code == 250
    mail_id = queued_id(f'{code} {text.decode()}')
    view = service.get_mail(sub.rt, mail_id)
    assert view['status'] == 'queued'
    assert (view['source'], view['client'], view['user']) == ('smtp', '127.0.0.1', 'app')
    assert view['subject'] == 'Hello' and view['to'] == 'Ann <ann@example.com>'
    record = sub.rt.store.get(mail_id)
    assert record.envelope == {'from': 'app@example.com',
                               'rcpts': ['ann@example.com', 'bob@example.com']}
    assert stored(redis_client) == [mail_id]


def test_bcc_removed_and_date_and_message_id_added(listen, redis_client):
    sub = listen()
    message = (b'From: app@example.com\r\nTo: ann@example.com\r\n'
               b'Bcc: secret@example.com,\r\n other@example.com\r\nSubject: S\r\n\r\nbody\r\n')
    with smtplib.SMTP('127.0.0.1', sub.port, timeout=10) as conn:
        conn.sendmail('app@example.com', ['ann@example.com', 'secret@example.com'], message)
    [mail_id] = stored(redis_client)
    record = sub.rt.store.get(mail_id, with_raw=True)
    assert b'Bcc' not in record.raw and b'secret@' not in record.raw
    assert b'other@example.com' not in record.raw          # the folded line went too
    msg = email.message_from_bytes(record.raw, policy=email.policy.default)
    assert msg['Date'] and msg['Message-ID'] == record.fields['message_id']
    assert msg['To'] == 'ann@example.com' and msg.get_content() == 'body\r\n'
    assert record.envelope['rcpts'] == ['ann@example.com', 'secret@example.com']


def test_message_bytes_kept_as_sent(listen, redis_client):
    """A message with its own Date and Message-ID is stored byte for byte (dot-unstuffed)."""
    sub = listen()
    message = (b'From: app@example.com\r\nTo: ann@example.com\r\nSubject: =?utf-8?q?caf=C3=A9?=\r\n'
               b'Date: Mon, 01 Jun 2026 08:00:00 +0200\r\nMessage-ID: <own@example.com>\r\n'
               b'X-Custom:  spaced   value\r\n\r\n.leading dot\r\n\xc3\xa9 8bit\r\n')
    with smtplib.SMTP('127.0.0.1', sub.port, timeout=10) as conn:
        conn.sendmail('app@example.com', ['ann@example.com'], message,
                      mail_options=['BODY=8BITMIME'])
    [mail_id] = stored(redis_client)
    record = sub.rt.store.get(mail_id, with_raw=True)
    assert record.raw == message
    assert record.fields['message_id'] == '<own@example.com>'
    assert record.fields['subject'] == 'café'


def test_control_headers_choose_queue_send_time_and_key(listen, redis_client):
    sub = listen()
    at = time.strftime('%Y-%m-%dT%H:%M:%S+00:00', time.gmtime(time.time() + 3600))
    message = (b'X-Mailq-Queue: default\r\nX-Mailq-Send-At: ' + at.encode() + b'\r\n'
               b'X-Mailq-Idempotency-Key: order-42\r\n' + MESSAGE)
    conn = smtplib.SMTP('127.0.0.1', sub.port, timeout=10)
    conn.ehlo()
    first = conn.sendmail('app@example.com', ['ann@example.com'], message)
    assert first == {}
    [mail_id] = stored(redis_client)
    view = service.get_mail(sub.rt, mail_id)
    assert view['queue'] == 'default' and view['status'] == 'scheduled'
    assert view['send_at'].startswith(at[:19])
    raw = sub.rt.store.get(mail_id, with_raw=True).raw
    assert b'X-Mailq' not in raw
    # The client retries (its own Date would differ): the same mail, nothing new.
    code, text = _data(conn, message.replace(b'Subject', b'Date: Mon, 1 Jun 2026 08:00:00 '
                                                         b'+0000\r\nSubject'))
    assert (code, queued_id(f'{code} {text}')) == (250, mail_id)
    # The same key for another message is refused, permanently.
    code, text = _data(conn, message.replace(b'Hi Ann', b'Hi Bob'))
    assert code == 554 and text.startswith('5.6.0') and 'order-42' in text, text
    conn.quit()
    assert stored(redis_client) == [mail_id]


def test_metadata_header_is_stored_and_removed(listen, redis_client):
    """X-Mailq-Metadata (folded, as a long header would be) is the API's `metadata`:
    stored as compact JSON, shown by the API, gone from the message."""
    sub = listen()
    message = (b'X-Mailq-Metadata: {"user": 7,\r\n "order": "A-\xc3\xa9"}\r\n' + MESSAGE)
    with smtplib.SMTP('127.0.0.1', sub.port, timeout=10) as conn:
        assert conn.sendmail('app@example.com', ['ann@example.com'], message) == {}
    [mail_id] = stored(redis_client)
    assert service.get_mail(sub.rt, mail_id)['metadata'] == {'user': 7, 'order': 'A-é'}
    raw = sub.rt.store.get(mail_id, with_raw=True).raw
    assert b'X-Mailq' not in raw and b'order' not in raw


def _data(conn, message, rcpts=('ann@example.com',)):
    conn.mail('app@example.com')
    for rcpt in rcpts:
        conn.rcpt(rcpt)
    code, text = conn.data(message)
    return code, text.decode()


# -- refusals, each over a raw socket: the exact code, and nothing stored ----------------

def _folded_metadata(entries):
    """An X-Mailq-Metadata header of `entries` 60-byte members, one folded line each
    (an SMTP line stops at 1000 bytes, so a client folds a long header)."""
    members = b',\r\n '.join(b'"k%02d": "%s"' % (i, b'x' * 51) for i in range(entries))
    return b'X-Mailq-Metadata: {' + members + b'}\r\n'


REFUSALS = {
    # name: (limits, commands before DATA, DATA bytes or None, expected reply start)
    'size announced': ({}, ['MAIL FROM:<a@example.com> SIZE=999999999'], None, '552 5.3.4'),
    'size in data': ({}, ['MAIL FROM:<a@example.com>', 'RCPT TO:<b@example.com>'],
                     MESSAGE + (b'x' * 70 + b'\r\n') * 70, '552 5.3.4'),
    'too many recipients': ({'max_recipients': '2'},
                            ['MAIL FROM:<a@example.com>', 'RCPT TO:<b@example.com>',
                             'RCPT TO:<c@example.com>', 'RCPT TO:<d@example.com>'],
                            None, '452 4.5.3'),
    'bad recipient': ({}, ['MAIL FROM:<a@example.com>', 'RCPT TO:<b..c@example.com>'],
                      None, '553 5.1.3'),
    'bad recipient domain': ({}, ['MAIL FROM:<a@example.com>', 'RCPT TO:<b@-bad-.com>'],
                             None, '553 5.1.3'),
    'bad sender': ({}, ['MAIL FROM:<a..b@example.com>'], None, '553 5.1.7'),
    'not a message': ({}, ['MAIL FROM:<a@example.com>', 'RCPT TO:<b@example.com>'],
                      b'this is not a header line\r\n\r\nbody\r\n', '554 5.6.0 message: header'),
    'bad send-at': ({}, ['MAIL FROM:<a@example.com>', 'RCPT TO:<b@example.com>'],
                    b'X-Mailq-Send-At: tomorrow\r\n' + MESSAGE, '554 5.6.0 X-Mailq-Send-At'),
    'send-at without offset': ({}, ['MAIL FROM:<a@example.com>', 'RCPT TO:<b@example.com>'],
                               b'X-Mailq-Send-At: 2030-01-01T08:00:00\r\n' + MESSAGE,
                               '554 5.6.0 X-Mailq-Send-At: needs a UTC offset'),
    'bad delay': ({}, ['MAIL FROM:<a@example.com>', 'RCPT TO:<b@example.com>'],
                  b'X-Mailq-Delay: -5\r\n' + MESSAGE, '554 5.6.0 X-Mailq-Delay'),
    'unknown queue': ({}, ['MAIL FROM:<a@example.com>', 'RCPT TO:<b@example.com>'],
                      b'X-Mailq-Queue: nope\r\n' + MESSAGE, '554 5.6.0 X-Mailq-Queue'),
    'unknown control header': ({}, ['MAIL FROM:<a@example.com>', 'RCPT TO:<b@example.com>'],
                               b'X-Mailq-Priority: 1\r\n' + MESSAGE,
                               '554 5.6.0 X-Mailq-Priority'),
    'metadata not JSON': ({}, ['MAIL FROM:<a@example.com>', 'RCPT TO:<b@example.com>'],
                          b'X-Mailq-Metadata: {order: 42}\r\n' + MESSAGE,
                          '554 5.6.0 X-Mailq-Metadata: not valid JSON'),
    'metadata not an object': ({}, ['MAIL FROM:<a@example.com>', 'RCPT TO:<b@example.com>'],
                               b'X-Mailq-Metadata: [1, 2]\r\n' + MESSAGE,
                               '554 5.6.0 X-Mailq-Metadata: must be a JSON object'),
    'metadata over 1 KB': ({}, ['MAIL FROM:<a@example.com>', 'RCPT TO:<b@example.com>'],
                           _folded_metadata(20) + MESSAGE,
                           '554 5.6.0 X-Mailq-Metadata: larger than 1024 bytes'),
    'bare LF': ({}, ['MAIL FROM:<a@example.com>', 'RCPT TO:<b@example.com>'],
                MESSAGE + b'one\ntwo\r\n', '554 5.6.0 message: bare CR or LF'),
    'bare CR': ({}, ['MAIL FROM:<a@example.com>', 'RCPT TO:<b@example.com>'],
                MESSAGE + b'one\rtwo\r\n', '554 5.6.0 message: bare CR or LF'),
}


@pytest.mark.parametrize('name', list(REFUSALS))
def test_refusal_code(name, listen, redis_client):
    limits, commands, data, expected = REFUSALS[name]
    sub = listen(limits=limits, submission={'max_message_bytes': '4096'})
    client = RawClient(sub.port)
    assert client.cmd('EHLO raw.example').startswith('250 ')
    replies = [client.cmd(c) for c in commands]
    if data is None:
        last = replies[-1]
        assert all(r.startswith('250') for r in replies[:-1]), replies
    else:
        assert all(r.startswith('250') for r in replies), replies
        assert client.cmd('DATA').startswith('354')
        client.send(data + b'.\r\n')
        last = client.reply()[-1]
    assert last.startswith(expected), (last, expected)
    assert '\r' not in last and '\n' not in last
    # The session goes on: the same client can still submit a good mail.
    client.cmd('RSET')
    assert client.cmd('MAIL FROM:<a@example.com>').startswith('250')
    assert client.cmd('RCPT TO:<b@example.com>').startswith('250')
    assert client.cmd('DATA').startswith('354')
    client.send(MESSAGE + b'.\r\n')
    good = queued_id(client.reply()[-1])
    client.close()
    assert stored(redis_client) == [good]       # the refused one left nothing behind


def test_smuggled_command_after_bare_lf_dot_is_not_run(listen, redis_client):
    """`\\n.\\r\\n` and `\\r\\n.\\n` are no end of DATA: the "smuggled" second
    transaction stays inside the first message, which is then refused for its bare
    LFs; no mail is stored at all."""
    sub = listen()
    client = RawClient(sub.port)
    client.cmd('EHLO raw.example')
    client.cmd('MAIL FROM:<a@example.com>')
    client.cmd('RCPT TO:<b@example.com>')
    assert client.cmd('DATA').startswith('354')
    client.send(MESSAGE + b'legit\n.\r\nMAIL FROM:<evil@example.com>\r\n'
                b'RCPT TO:<victim@example.com>\r\nDATA\r\nFrom: evil@example.com\r\n\r\n'
                b'spoofed\r\n.\n\r\n.\r\n')
    replies = client.reply()
    assert replies[-1].startswith('554 5.6.0 message: bare CR or LF'), replies
    assert client.cmd('NOOP').startswith('250')         # no replies left over
    client.close()
    assert stored(redis_client) == []


def test_redis_down_is_451_and_the_retry_goes_through_once(tmp_path, listen):
    """Redis stopped while a client submits: 451 4.3.0 and nothing stored. After a
    restart the client's retry, on the same session, is accepted: one record."""
    server = RedisServer(appendonly=True, tmpdir=tmp_path).start()
    try:
        sub = listen(redis_url=server.url)
        conn = smtplib.SMTP('127.0.0.1', sub.port, timeout=30)
        conn.ehlo()
        server.stop()
        code, text = _data(conn, MESSAGE)
        assert code == 451 and text.startswith('4.3.0'), text
        server.start()
        assert stored(server.client()) == []
        code, text = _data(conn, MESSAGE)
        mail_id = queued_id(f'{code} {text}')
        conn.quit()
        assert stored(server.client()) == [mail_id]
    finally:
        server.cleanup()


# -- bind policy and authentication ------------------------------------------------


def _start_refused(tmp_ini, redis_url, submission):
    ini = tmp_ini(redis={'url': redis_url}, submission={'enabled': 'yes',
                                                        'port': free_port(), **submission})
    return subprocess.run([PYTHON, str(REPO_ROOT / 'mailq.py'), 'submission', '-c', str(ini)],
                          capture_output=True, text=True, timeout=30)


@pytest.mark.parametrize('extra, missing', [
    ({}, 'username/password and tls_cert/tls_key'),
    ({'username': 'u', 'password': 'p'}, 'tls_cert/tls_key'),
    ('tls', 'username/password'),
])
def test_refuses_to_listen_beyond_loopback_without_auth_and_tls(
        extra, missing, tmp_ini, redis_url, certs):
    if extra == 'tls':
        extra = {'tls_cert': certs[0], 'tls_key': certs[1]}
    result = _start_refused(tmp_ini, redis_url, {'host': '0.0.0.0', **extra})
    assert result.returncode == 2, result
    assert '[submission]:host' in result.stderr and 'refusing to listen on 0.0.0.0' \
        in result.stderr and missing in result.stderr, result.stderr


def test_beyond_loopback_with_auth_and_tls_requires_starttls_first(listen, certs,
                                                                   redis_client):
    cert, key, client_ctx = certs
    sub = listen(submission={'host': '0.0.0.0', 'username': 'app', 'password': 'pw',
                             'tls_cert': cert, 'tls_key': key})
    client = RawClient(sub.port)
    ehlo = client.send(b'EHLO x\r\n') or client.reply()
    assert not any('AUTH' in line for line in ehlo)         # never offered in the clear
    assert client.cmd('AUTH PLAIN ' + base64.b64encode(b'\0app\0pw').decode())[:3] in \
        ('530', '538')
    assert client.cmd('MAIL FROM:<a@example.com>').startswith('530')
    client.close()
    conn = smtplib.SMTP('127.0.0.1', sub.port, timeout=10)
    conn.starttls(context=client_ctx)
    conn.login('app', 'pw')
    conn.sendmail('a@example.com', ['b@example.com'], MESSAGE)
    conn.quit()
    assert len(stored(redis_client)) == 1


def test_auth_required_failures_rate_limited_and_password_never_logged(listen,
                                                                       redis_client):
    password = 'Hunter2-very-secret'
    sub = listen(submission={'username': 'app', 'password': password},
                 log={'level': 'debug'})
    client = RawClient(sub.port)
    client.cmd('EHLO x')
    assert client.cmd('MAIL FROM:<a@example.com>').startswith('530 5.7.0')
    good = base64.b64encode(f'\0app\0{password}'.encode()).decode()
    bad = base64.b64encode(b'\0app\0guess').decode()
    for _ in range(5):
        assert client.cmd('AUTH PLAIN ' + bad).startswith('535 5.7.8')
    assert client.cmd('AUTH PLAIN ' + bad).startswith('454 4.7.0')
    assert client.cmd('AUTH PLAIN ' + good).startswith('454 4.7.0')    # even the right one
    client.close()
    time.sleep(0.3)
    log = sub.log()
    assert 'submission listening' in log
    for secret in (password, good, base64.b64encode(password.encode()).decode()):
        assert secret not in log
    assert stored(redis_client) == []


# -- other real clients -------------------------------------------------------------


def test_swaks_pipelined_with_attachment(listen, tmp_path, redis_client):
    sub = listen()
    attachment = tmp_path / 'report.csv'
    attachment.write_text('a,b\n1,2\n')
    result = subprocess.run(
        ['swaks', '--server', f'127.0.0.1:{sub.port}', '--pipeline', '--from',
         'app@example.com', '--to', 'ann@example.com,bob@example.com', '--header',
         'Subject: report', '--header', 'X-Mailq-Queue: default',
         '--attach-type', 'text/csv', '--attach', f'@{attachment}'],
        capture_output=True, text=True, timeout=30)
    assert result.returncode == 0, result.stdout + result.stderr
    assert 'PIPELINING' in result.stdout
    mail_id = next(line.rsplit(' ', 1)[1] for line in result.stdout.splitlines()
                   if 'queued as' in line)
    view = service.get_mail(sub.rt, mail_id)
    assert view['queue'] == 'default' and view['subject'] == 'report'
    record = sub.rt.store.get(mail_id, with_raw=True)
    assert record.fields['attachments'] == '1'
    msg = email.message_from_bytes(record.raw, policy=email.policy.default)
    [part] = list(msg.iter_attachments())
    assert part.get_filename() == 'report.csv'
    assert part.get_payload(decode=True).replace(b'\r\n', b'\n') == b'a,b\n1,2\n'
    assert stored(redis_client) == [mail_id]


# -- durability ---------------------------------------------------------------------

KILL_MAILS = 2000


@pytest.mark.slow
@pytest.mark.faults
def test_kill_9_during_2000_submissions_loses_no_accepted_mail(listen, tmp_ini, redis_url,
                                                               redis_client, smtp_server):
    """Four clients submit 2,000 mails while the listener is killed (SIGKILL) three
    times. A client counts a mail as accepted only when it read the 250; it resends
    after a lost connection (same idempotency key). Every mail it saw accepted is
    then delivered by a worker to a real SMTP server."""
    import os
    import signal
    import threading
    from support.mailq_app import start_worker
    from support.procs import stop_process

    sub = listen()
    accepted, lock = {}, threading.Lock()        # message number -> mail id from the 250
    errors = []

    def client(numbers):
        try:
            submit(numbers)
        except Exception as exc:    # noqa: BLE001 - reported by the main thread
            errors.append(exc)

    def submit(numbers):
        conn = None
        for n in numbers:
            message = (f'Message-ID: <kill-{n}@example.com>\r\nX-Mailq-Idempotency-Key: k{n}'
                       f'\r\n').encode() + MESSAGE
            while True:
                try:
                    if conn is None:
                        conn = smtplib.SMTP('127.0.0.1', sub.port, timeout=10)
                        conn.ehlo()
                    code, text = _data(conn, message)
                except (OSError, smtplib.SMTPServerDisconnected, smtplib.SMTPConnectError):
                    conn = None
                    time.sleep(0.02)
                    continue
                if code == 250:
                    with lock:
                        accepted[n] = queued_id(f'{code} {text}')
                    break
                raise AssertionError((code, text))
        conn.quit()

    threads = [threading.Thread(target=client, args=(range(i, KILL_MAILS, 4),))
               for i in range(4)]
    for t in threads:
        t.start()
    deadline = time.monotonic() + 120
    for target in (300, 900, 1500):
        while len(accepted) < target:
            assert not errors and time.monotonic() < deadline, (errors, len(accepted))
            time.sleep(0.005)
        os.kill(sub.proc.pid, signal.SIGKILL)
        sub.proc.wait(10)
        sub.start()
    for t in threads:
        t.join(120)
    assert not errors and len(accepted) == KILL_MAILS, errors

    ini = tmp_ini('worker.ini', redis={'url': redis_url},
                  smtp={'transport': 'smtp', 'host': '127.0.0.1', 'port': smtp_server.port,
                        'timeout': '5'})
    worker = start_worker(ini, '-w', '8')
    try:
        received = smtp_server.wait_for(KILL_MAILS, timeout=120)
    finally:
        stop_process(worker)
    delivered = {m.message_id for m in received}
    assert delivered == {f'<kill-{n}@example.com>' for n in accepted}
    statuses = {redis_client.hget(f'mailq:m:{i}', 'status') for i in accepted.values()}
    assert statuses == {b'sent'}
    assert len(set(accepted.values())) == KILL_MAILS       # the retries made no duplicates
    assert len(stored(redis_client)) == KILL_MAILS


# -- what the API and /metrics show -----------------------------------------------------


def test_api_view_and_metrics_show_submissions(listen, redis_client):
    """GET /api/mails/<id> names the source, client and user; /metrics counts accepted
    and refused submissions by reply class (the listener adds them about once a
    second)."""
    from mailq.web.app import create_app
    import threading
    import urllib.request
    import waitress

    sub = listen(limits={'max_recipients': '1'})
    with smtplib.SMTP('127.0.0.1', sub.port, timeout=10) as conn:
        conn.ehlo()
        code, text = _data(conn, MESSAGE)
        mail_id = queued_id(f'{code} {text}')
        for _ in range(2):
            assert _data(conn, b'X-Mailq-Queue: nope\r\n' + MESSAGE)[0] == 554
        conn.rset()
        conn.mail('a@example.com')
        conn.rcpt('b@example.com')
        assert conn.rcpt('c@example.com')[0] == 452
    server = waitress.create_server(create_app(sub.rt), host='127.0.0.1', port=0)
    threading.Thread(target=server.run, daemon=True).start()
    try:
        base = f'http://127.0.0.1:{server.effective_port}'
        with urllib.request.urlopen(f'{base}/api/mails/{mail_id}') as resp:
            import json
            view = json.load(resp)
        assert (view['source'], view['client'], view.get('user')) == ('smtp', '127.0.0.1', None)
        deadline = time.monotonic() + 10
        while True:
            with urllib.request.urlopen(f'{base}/metrics') as resp:
                text = resp.read().decode()
            if 'code_class="5xx",result="refused"} 2.0' in text:
                break
            assert time.monotonic() < deadline, text
            time.sleep(0.2)
        assert 'mailq_submissions_total{code_class="2xx",result="accepted"} 1.0' in text
        assert 'mailq_submissions_total{code_class="4xx",result="refused"} 1.0' in text
    finally:
        server.close()


def test_mail_page_shows_the_source(listen):
    from mailq import admin
    from mailq.web.dashboard import render
    sub = listen(submission={'username': 'app', 'password': 'pw'})
    with smtplib.SMTP('127.0.0.1', sub.port, timeout=10) as conn:
        conn.login('app', 'pw')
        code, text = _data(conn, MESSAGE)
    page = render(sub.rt, 'mail.html', mail=admin.mail_detail(sub.rt, queued_id(
        f'{code} {text}')), list_url='/')
    assert '<th>Source</th><td>smtp from 127.0.0.1, user app</td>' in page


PATHS = ['<a@b.com>', '<a@b.com> SIZE=100', '<a.b+c@x.example> BODY=8BITMIME SIZE=9',
         '<a@b.com>  SIZE=1', '<a@b-.com>', '<>', 'a@b.com', '<"q r"@b.com>', '<a..b@c.d>',
         '< a@b.com>', '<a@[1.2.3.4]>', '<a@b.com>x', '<' + 'x' * 70 + '@b.com>']


@pytest.mark.parametrize('path', PATHS)
def test_the_fast_path_reads_an_smtp_path_as_aiosmtpd_does(path):
    """protocol.SubmissionSMTP reads plain paths with a regex: it must agree with
    aiosmtpd's own parser on every path, plain or not."""
    from aiosmtpd.smtp import SMTP
    from mailq.submission.protocol import SubmissionSMTP
    for limit in (0, 64):
        ours, theirs = object.__new__(SubmissionSMTP), object.__new__(SMTP)
        ours.local_part_limit = theirs.local_part_limit = limit
        assert ours._getaddr(path) == theirs._getaddr(path)


# -- inside `mailq run` ------------------------------------------------------------


def test_mailq_run_with_submission_accepts_delivers_and_stops(tmp_ini, redis_url,
                                                              redis_client, smtp_server):
    """`mailq run` with [submission] enabled: the listener answers next to the web, a
    mail submitted to it is delivered by run's worker, and SIGTERM stops all of it with
    exit 0: the port closed, the last submission counted in Redis (flushed at stop)."""
    web_port, sub_port = free_port(), free_port()
    ini = tmp_ini(redis={'url': redis_url}, smtp=smtp_section(smtp_server),
                  submission={'enabled': 'yes', 'port': sub_port},
                  templates={'path': str(REPO_ROOT / 'templates' / 'mail')})
    rt = Runtime(load(str(ini), environ={}))
    proc = start_process([PYTHON, REPO_ROOT / 'mailq.py', 'run', '-c', ini,
                          '--port', web_port, '-w', '1'])
    try:
        wait_http(f'http://127.0.0.1:{web_port}/healthz', timeout=30)
        assert RawClient(sub_port).greeting[0].startswith('220')
        with smtplib.SMTP('127.0.0.1', sub_port, timeout=10) as conn:
            assert conn.sendmail('app@example.com', ['ann@example.com'], MESSAGE) == {}
        [delivered] = smtp_server.wait_for(1, timeout=30)
        assert delivered.rcpt_tos == ['ann@example.com'] and b'Hi Ann.' in delivered.data
        [mail_id] = stored(redis_client)
        deadline = time.monotonic() + 10
        while service.get_mail(rt, mail_id)['status'] != 'sent':
            assert time.monotonic() < deadline
            time.sleep(0.05)
        with smtplib.SMTP('127.0.0.1', sub_port, timeout=10) as conn:
            conn.sendmail('app@example.com', ['bob@example.com'], MESSAGE)
    finally:
        code = stop_process(proc, signal.SIGTERM)
    log = read_log(proc)
    assert code == 0, log
    assert 'submission listening on' in log and 'submission listener stopping' in log
    with pytest.raises(OSError):
        socket.create_connection(('127.0.0.1', sub_port), timeout=2).close()
    assert rt.store.stats.totals()['submissions'] == {'accepted:2xx': 2}, log
