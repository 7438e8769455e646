"""Worker logs: one line per attempt, text or JSON, and never a secret."""
import io
import json
import logging
import time

import pytest

from mailq.config import load
from mailq.logs import setup_logging
from support.mailq_app import run_cli, start_worker, stop_process
from support.procs import read_log

SMTP_PASSWORD = 'Smtp-Pa55-never-logged'
WEB_PASSWORD = 'Web-Pa55-never-logged'
API_TOKEN = 'Token-never-logged-0123'


def wait_status(redis_client, mail_id, status, timeout=20):
    deadline = time.monotonic() + timeout
    while redis_client.hget(f'mailq:m:{mail_id}', 'status') != status.encode():
        assert time.monotonic() < deadline, redis_client.hgetall(f'mailq:m:{mail_id}')
        time.sleep(0.05)


def worker_ini(tmp_ini, redis_url, server, **log):
    return tmp_ini(
        redis={'url': redis_url},
        worker={'concurrency': '2', 'retry_base': '1', 'retry_max_delay': '1'},
        smtp={'transport': 'smtp', 'host': '127.0.0.1', 'port': server.port,
              'security': server.security, 'ca_file': server.ca_file or '',
              'username': 'mailer', 'password': SMTP_PASSWORD, 'timeout': '5',
              'from': 'app@example.com'},
        web={'username': 'admin', 'password': WEB_PASSWORD, 'api_token': API_TOKEN},
        log={'level': 'debug', **log})


def deliver(ini, redis_client, to, status):
    sent = run_cli(ini, 'send', '--to', to, '--subject', 'hi', '--text', 'body')
    assert sent.returncode == 0, sent.stderr
    mail_id = sent.stdout.strip()
    wait_status(redis_client, mail_id, status)
    return mail_id


def test_failed_smtp_auth_never_logs_the_password(tmp_ini, redis_url, redis_client,
                                                   smtp_factory):
    server = smtp_factory(security='tls', auth=('mailer', 'the-real-password'))
    ini = worker_ini(tmp_ini, redis_url, server)
    worker = start_worker(ini)
    try:
        mail_id = deliver(ini, redis_client, 'Ann.Person@example.org', 'dead')
    finally:
        stop_process(worker)
    log = read_log(worker)
    for secret in (SMTP_PASSWORD, WEB_PASSWORD, API_TOKEN):
        assert secret not in log
    [line] = [line for line in log.splitlines() if f'mail={mail_id}' in line]
    assert 'outcome=dead code=535' in line and 'queue=mailers' in line
    assert 'to=example.org' in line and 'Ann.Person' not in log
    assert 'duration_ms=' in line


def test_json_lines_parse_and_carry_one_line_per_attempt(tmp_ini, redis_url, redis_client,
                                                         smtp_factory):
    server = smtp_factory(security='tls', auth=('mailer', SMTP_PASSWORD))
    ini = worker_ini(tmp_ini, redis_url, server, format='json', recipients='full')
    server.fail_data(451, 'Greylisted', times=1)
    worker = start_worker(ini)
    try:
        mail_id = deliver(ini, redis_client, 'bo@example.net', 'sent')
    finally:
        stop_process(worker)
    entries = [json.loads(line) for line in read_log(worker).splitlines() if line.strip()]
    assert entries and all({'time', 'level', 'logger', 'message'} <= set(e) for e in entries)
    attempts = [e for e in entries if f'mail={mail_id}' in e['message']]
    assert [e['level'] for e in attempts] == ['warning', 'info']
    assert 'outcome=retrying code=451' in attempts[0]['message']
    assert 'outcome=sent code=250' in attempts[1]['message']
    assert 'to=bo@example.net' in attempts[1]['message']
    # the same facts as keys of their own, for log shippers
    assert [(e['event'], e['mail'], e['outcome'], e['code']) for e in attempts] == [
        ('delivery', mail_id, 'retrying', 451), ('delivery', mail_id, 'sent', 250)]
    assert attempts[1]['to'] == 'bo@example.net' and attempts[1]['queue'] == 'mailers'
    assert attempts[0]['reply'].startswith('451') and attempts[1]['reply'] is None
    assert isinstance(attempts[1]['duration_ms'], float)
    assert SMTP_PASSWORD not in read_log(worker)


@pytest.mark.parametrize('fmt', ['text', 'json'])
def test_secrets_are_redacted_in_messages_and_tracebacks(tmp_ini, fmt):
    config = load(str(tmp_ini(redis={'url': 'redis://:redis-pw-secret@127.0.0.1:1/0'},
                              smtp={'password': SMTP_PASSWORD}, log={'format': fmt})),
                  environ={})
    stream = io.StringIO()
    handler = setup_logging(config, stream)
    try:
        log = logging.getLogger('mailq.test')
        log.error('login with %s failed', SMTP_PASSWORD)
        log.warning('delivery failed', extra={'fields': {'reply': f'535 {SMTP_PASSWORD}'}})
        try:
            raise RuntimeError(f'cannot use redis://:redis-pw-secret@host and {SMTP_PASSWORD}')
        except RuntimeError:
            log.exception('unexpected')
    finally:
        logging.getLogger().removeHandler(handler)
    out = stream.getvalue()
    assert 'login with *** failed' in out and 'RuntimeError' in out
    assert SMTP_PASSWORD not in out and 'redis-pw-secret' not in out
    if fmt == 'json':
        lines = [json.loads(line) for line in out.splitlines() if line.startswith('{')]
        assert any(line.get('reply') == '535 ***' for line in lines)


def test_percent_encoded_redis_password_is_redacted_in_both_spellings(tmp_ini):
    config = load(str(tmp_ini(redis={'url': 'redis://mailq:pw%2Fsecret@127.0.0.1:1/0'})),
                  environ={})
    stream = io.StringIO()
    handler = setup_logging(config, stream)
    try:
        logging.getLogger('mailq.test').error('AUTH pw/secret for redis://mailq:pw%2Fsecret@')
    finally:
        logging.getLogger().removeHandler(handler)
    out = stream.getvalue()
    assert 'AUTH *** for redis://mailq:***@' in out and 'secret' not in out


@pytest.mark.parametrize('fmt', ['text', 'json'])
def test_delivery_line_keeps_its_text_and_fields(tmp_ini, fmt):
    """Processor._log formats the line itself (no %-args): a reply with a % sign and a
    secret in it comes out as before, redacted, with the stdlib's time stamp."""
    from mailq.processor import Processor
    config = load(str(tmp_ini(smtp={'password': SMTP_PASSWORD}, log={'format': fmt})),
                  environ={})
    stream = io.StringIO()
    handler = setup_logging(config, stream)
    processor = Processor.__new__(Processor)
    processor.full_recipients = False
    try:
        processor._log('m1', 'mailers', ['a@x.example', 'b@y.example'], 'retrying', 451,
                       f'451 100% full {SMTP_PASSWORD}', 0.01234)
        processor._log('m2', 'mailers', ['a@x.example'], 'sent', 250, '', 0.5)
    finally:
        logging.getLogger().removeHandler(handler)
    first, second = stream.getvalue().splitlines()
    text = ('delivery mail=m1 queue=mailers to=x.example,y.example outcome=retrying '
            'code=451 duration_ms=12.3 reply="451 100% full ***"')
    if fmt == 'text':
        created = time.strptime(first[:19], '%Y-%m-%d %H:%M:%S')
        assert abs(time.mktime(created) - time.time()) < 5 and first[19] == ','
        assert first[23:] == ' WARNING mailq.worker: ' + text
        assert second.endswith(' INFO mailq.worker: delivery mail=m2 queue=mailers '
                               'to=x.example outcome=sent code=250 duration_ms=500.0')
        return
    entry = json.loads(first)
    assert entry['message'] == text and entry['level'] == 'warning'
    assert {k: entry[k] for k in ('event', 'mail', 'queue', 'to', 'outcome', 'code',
                                  'duration_ms', 'reply')} == {
        'event': 'delivery', 'mail': 'm1', 'queue': 'mailers', 'to': 'x.example,y.example',
        'outcome': 'retrying', 'code': 451, 'duration_ms': 12.3,
        'reply': '451 100% full ***'}
    assert json.loads(second)['reply'] is None and json.loads(second)['code'] == 250
