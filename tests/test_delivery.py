"""From the API through a real worker process to a real SMTP server, and back into the record."""
import email
import email.policy
import time

import pytest

from support.mailq_app import WebApp, start_worker, stop_process
from support.procs import REPO_ROOT, read_log

MAIL = {'to': 'ann@example.com', 'subject': 'Hello', 'text': 'Hi Ann'}


def wait_status(web, mail_id, wanted, timeout=15):
    deadline = time.monotonic() + timeout
    while True:
        mail = web.get(f'/api/mails/{mail_id}')[2]
        if mail['status'] == wanted:
            return mail
        if time.monotonic() > deadline:
            raise AssertionError(f'mail {mail_id} is {mail["status"]}, not {wanted}: {mail}')
        time.sleep(0.05)


def test_mail_is_delivered_with_its_message_id(web, worker, smtp_server):
    mail_id = web.post('/api/mails', {'to': ['ann@example.com', 'Bob <bob@example.com>'],
                                      'bcc': 'audit@example.com', 'template': 'welcome',
                                      'context': {'name': 'Ann', 'url': 'https://x.test/'},
                                      'reply_to': 'help@example.com',
                                      'headers': {'X-Campaign': 'launch'}})[2]['id']
    received = smtp_server.wait_for(1)[0]
    mail = wait_status(web, mail_id, 'sent')
    assert received.message_id == mail['message_id']
    assert received.mail_from == 'mailq@example.com'
    assert sorted(received.rcpt_tos) == ['ann@example.com', 'audit@example.com', 'bob@example.com']
    msg = email.message_from_bytes(received.data, policy=email.policy.default)
    assert msg.get_content_type() == 'multipart/alternative'
    assert msg['Bcc'] is None and msg['Reply-To'] == 'help@example.com'
    assert msg['X-Campaign'] == 'launch' and msg['Date']
    assert mail['attempts'] == 1 and mail['sent_at'] and mail['history'][0]['code'] == 250
    assert mail['history'][0]['outcome'] == 'sent'


def test_4xx_is_retried_then_sent(web, worker, smtp_server):
    smtp_server.fail_data(451, '4.3.0 Try again later', times=1)
    mail_id = web.post('/api/mails', MAIL)[2]['id']
    mail = wait_status(web, mail_id, 'retrying', timeout=10)
    assert mail['last_error'].startswith('451') and mail['next_attempt_at']
    mail = wait_status(web, mail_id, 'sent', timeout=15)
    assert [a['outcome'] for a in mail['history']] == ['retrying', 'sent']
    assert [a['code'] for a in mail['history']] == [451, 250]
    received = smtp_server.wait_for(1)
    assert len(received) == 1 and received[0].message_id == mail['message_id']
    stats = web.get('/api/stats')[2]
    assert stats['processed'] == 2 and stats['failed'] == 1


def test_5xx_is_dead_at_once(web, worker, smtp_server):
    smtp_server.fail_data(554, '5.7.1 Rejected by policy', times=1)
    mail_id = web.post('/api/mails', MAIL)[2]['id']
    mail = wait_status(web, mail_id, 'dead')
    assert mail['attempts'] == 1
    assert mail['last_error'] == '554 5.7.1 Rejected by policy'
    assert web.get('/api/stats')[2]['dead'] == 1
    time.sleep(1.5)   # the retry curve of the test config would have retried by now
    assert web.get(f'/api/mails/{mail_id}')[2]['attempts'] == 1
    assert smtp_server.messages == []


def test_exhausted_retries_end_dead(tmp_ini, redis_url, smtp_server):
    ini = tmp_ini(redis={'url': redis_url},
                  worker={'max_retries': '2', 'retry_base': '0.2', 'retry_max_delay': '0.5'},
                  smtp={'transport': 'smtp', 'port': str(smtp_server.port), 'timeout': '5'},
                  templates={'path': str(REPO_ROOT / 'templates' / 'mail')})
    smtp_server.fail_data(421, '4.4.2 Closing', times=10)
    web, proc = WebApp(ini), start_worker(ini, '-w', '2')
    try:
        mail = wait_status(web, web.post('/api/mails', MAIL)[2]['id'], 'dead', timeout=20)
        assert mail['attempts'] == 3
        assert [a['outcome'] for a in mail['history']] == ['retrying', 'retrying', 'dead']
    finally:
        stop_process(proc)
        web.close()


def test_partial_refusal_is_recorded_per_recipient(web, worker, smtp_server):
    smtp_server.fail_rcpt('gone@example.com', 550, '5.1.1 No such user')
    mail_id = web.post('/api/mails',
                       {**MAIL, 'to': ['ann@example.com', 'gone@example.com']})[2]['id']
    mail = wait_status(web, mail_id, 'sent')
    assert mail['history'][0]['refused'] == {'gone@example.com': [550, '5.1.1 No such user']}
    assert 'gone@example.com' in mail['last_error']
    assert smtp_server.wait_for(1)[0].rcpt_tos == ['ann@example.com']


def test_recipients_deferred_with_4xx_are_retried_alone(web, worker, smtp_server):
    """RFC 5321 4.5.3.1.10: a 452 at RCPT means "try me in a later transaction";
    the retry goes to that recipient only, so nobody gets the mail twice."""
    smtp_server.fail_rcpt('later@example.com', 452, '4.5.3 Too many recipients')
    mail_id = web.post('/api/mails', {**MAIL, 'to': ['ann@example.com', 'later@example.com']}
                       )[2]['id']
    mail = wait_status(web, mail_id, 'retrying', timeout=10)
    assert mail['history'][0]['code'] == 452
    assert mail['history'][0]['refused'] == {
        'later@example.com': [452, '4.5.3 Too many recipients']}
    assert smtp_server.wait_for(1)[0].rcpt_tos == ['ann@example.com']
    smtp_server.fail_rcpt('later@example.com', None)
    mail = wait_status(web, mail_id, 'sent', timeout=15)
    assert [(a['outcome'], a['code']) for a in mail['history']] == [('retrying', 452),
                                                                     ('sent', 250)]
    assert [m.rcpt_tos for m in smtp_server.wait_for(2)] == [['ann@example.com'],
                                                              ['later@example.com']]
    assert all(m.message_id == mail['message_id'] for m in smtp_server.messages)


def test_all_refused_retries_only_the_4xx_recipients(web, worker, smtp_server):
    smtp_server.fail_rcpt('later@example.com', 450, '4.2.0 Greylisted')
    smtp_server.fail_rcpt('gone@example.com', 550, '5.1.1 No such user')
    mail_id = web.post('/api/mails', {**MAIL, 'to': ['later@example.com', 'gone@example.com']}
                       )[2]['id']
    mail = wait_status(web, mail_id, 'retrying', timeout=10)
    assert set(mail['history'][0]['refused']) == {'later@example.com', 'gone@example.com'}
    smtp_server.fail_rcpt('later@example.com', None)
    mail = wait_status(web, mail_id, 'sent', timeout=15)
    assert [a['outcome'] for a in mail['history']] == ['retrying', 'sent']
    assert mail['history'][1].get('refused', {}) == {}     # gone@ was not asked again
    assert [m.rcpt_tos for m in smtp_server.wait_for(1)] == [['later@example.com']]


def test_deferred_recipients_that_never_take_it_end_dead(tmp_ini, redis_url, smtp_server):
    ini = tmp_ini(redis={'url': redis_url},
                  worker={'max_retries': '1', 'retry_base': '0.2', 'retry_max_delay': '0.2'},
                  smtp={'transport': 'smtp', 'port': str(smtp_server.port), 'timeout': '5'})
    smtp_server.fail_rcpt('later@example.com', 452, '4.5.3 Too many recipients')
    web, proc = WebApp(ini), start_worker(ini, '-w', '2')
    try:
        mail_id = web.post('/api/mails', {**MAIL, 'to': ['ann@example.com', 'later@example.com']}
                           )[2]['id']
        mail = wait_status(web, mail_id, 'dead')
        assert [(a['outcome'], a['code']) for a in mail['history']] == [
            ('retrying', 452), ('dead', 452)]
        assert mail['last_error'].startswith('452')
        assert list(mail['history'][1]['refused']) == ['later@example.com']   # ann@ not again
        assert [m.rcpt_tos for m in smtp_server.messages] == [['ann@example.com']]
    finally:
        stop_process(proc)
        web.close()


def test_scheduled_mail_goes_out_on_time(web, worker, smtp_server):
    started = time.time()
    body = web.post('/api/mails', {**MAIL, 'delay': 2})[2]
    assert body['status'] == 'scheduled'
    assert web.get(f'/api/mails/{body["id"]}')[2]['status'] == 'scheduled'
    received = smtp_server.wait_for(1, timeout=10)[0]
    late = received.received_at - (started + 2)
    assert 0 <= late < 1.5, f'{late:.3f}s late'


def test_cancelled_scheduled_mail_is_never_sent(web, worker, smtp_server):
    mail_id = web.post('/api/mails', {**MAIL, 'delay': 1})[2]['id']
    assert web.request('DELETE', f'/api/mails/{mail_id}')[0] == 200
    sent_id = web.post('/api/mails', MAIL)[2]['id']
    wait_status(web, sent_id, 'sent')
    time.sleep(1.5)
    assert [m.rcpt_tos for m in smtp_server.messages] == [['ann@example.com']]
    assert web.get(f'/api/mails/{mail_id}')[2]['status'] == 'cancelled'
    status, _, body = web.request('DELETE', f'/api/mails/{sent_id}')
    assert status == 409 and 'already sent' in body['error']


@pytest.mark.parametrize('security', ['starttls', 'tls'])
def test_tls_and_auth(tmp_ini, redis_url, smtp_factory, security):
    server = smtp_factory(security=security, auth=('mailer', 'pa55word'),
                          require_starttls=security == 'starttls')
    ini = tmp_ini(redis={'url': redis_url},
                  smtp={'transport': 'smtp', 'port': str(server.port), 'security': security,
                        'username': 'mailer', 'password': 'pa55word', 'ca_file': server.ca_file,
                        'timeout': '5', 'from': 'mailq@example.com'},
                  templates={'path': str(REPO_ROOT / 'templates' / 'mail')})
    web, proc = WebApp(ini), start_worker(ini, '-w', '2')
    try:
        mail_id = web.post('/api/mails', MAIL)[2]['id']
        wait_status(web, mail_id, 'sent')
        assert len(server.wait_for(1)) == 1
    finally:
        stop_process(proc)
        web.close()
    assert 'pa55word' not in read_log(proc)


def test_wrong_password_is_dead_with_535(tmp_ini, redis_url, smtp_factory):
    server = smtp_factory(security='starttls', auth=('mailer', 'right'))
    ini = tmp_ini(redis={'url': redis_url},
                  smtp={'transport': 'smtp', 'port': str(server.port), 'security': 'starttls',
                        'username': 'mailer', 'password': 'wrong-secret',
                        'ca_file': server.ca_file, 'timeout': '5'},
                  templates={'path': str(REPO_ROOT / 'templates' / 'mail')})
    web, proc = WebApp(ini), start_worker(ini, '-w', '1')
    try:
        mail = wait_status(web, web.post('/api/mails', MAIL)[2]['id'], 'dead')
        assert mail['history'][0]['code'] == 535
    finally:
        stop_process(proc)
        web.close()
    assert 'wrong-secret' not in read_log(proc)


def test_outbox_transport_keeps_mail_and_sends_nothing(tmp_ini, redis_url, redis_client,
                                                       smtp_server):
    ini = tmp_ini(redis={'url': redis_url}, smtp={'transport': 'outbox'},
                  templates={'path': str(REPO_ROOT / 'templates' / 'mail')})
    web, proc = WebApp(ini), start_worker(ini, '-w', '2')
    try:
        mail_id = web.post('/api/mails', MAIL)[2]['id']
        mail = wait_status(web, mail_id, 'sent')
        assert mail['history'][0]['reply'] == '250 kept in outbox'
        assert redis_client.zscore('mailq:outbox', mail_id) is not None
        assert redis_client.ttl(f'mailq:m:{mail_id}') == -1   # kept while in the outbox
    finally:
        stop_process(proc)
        web.close()
    assert smtp_server.messages == []


def test_worker_serves_queues_in_strict_order(tmp_ini, redis_url, smtp_server):
    ini = tmp_ini(redis={'url': redis_url},
                  smtp={'transport': 'smtp', 'port': str(smtp_server.port), 'timeout': '5'},
                  templates={'path': str(REPO_ROOT / 'templates' / 'mail')})
    web = WebApp(ini)
    for i in range(5):
        web.post('/api/mails', {**MAIL, 'to': f'low{i}@example.com', 'queue': 'default'})
    for i in range(5):
        web.post('/api/mails', {**MAIL, 'to': f'high{i}@example.com', 'queue': 'mailers'})
    proc = start_worker(ini, '-w', '1', '-q', 'mailers', '-q', 'default')
    try:
        received = smtp_server.wait_for(10)
    finally:
        stop_process(proc)
        web.close()
    order = [m.rcpt_tos[0][:3] for m in received]
    assert order == ['hig'] * 5 + ['low'] * 5


def test_a_worker_fetching_ahead_during_slow_deliveries_sends_each_mail_once(
        tmp_ini, redis_url, smtp_server):
    """(The fetch ahead of tests/test_reliable_fetch.py, in a real worker.) A real `-w 2`
    worker with a queue longer than its threads, and deliveries that take
    longer than two orphan sweeps: each thread holds a task fetched ahead beside the mail
    it sends, the sweep leaves it, and every mail is sent once."""
    import json
    from mailq import service
    from mailq.config import load
    from mailq.runtime import Runtime
    from support.ini import smtp_section
    ini = tmp_ini(redis={'url': redis_url},
                  worker={'concurrency': '2', 'heartbeat_interval': '0.3'},
                  smtp=smtp_section(smtp_server, security='none'))
    rt = Runtime(load(str(ini), environ={}))
    rt.redis.sadd('mailq:paused', 'mailers')
    ids = [service.send(rt, {'to': 'ann@example.com', 'subject': 's', 'text': 't'})['id']
           for _ in range(8)]
    smtp_server.delay_data(1.0)
    worker = start_worker(ini)
    most, seen_ahead = 0, False
    try:
        time.sleep(1.5)      # its tick has counted the threads (2) by now
        rt.redis.srem('mailq:paused', 'mailers')
        deadline = time.monotonic() + 40
        while time.monotonic() < deadline and any(rt.store.status(i) != 'sent' for i in ids):
            for key in rt.redis.keys('mailq:inflight:*'):
                most = max(most, rt.redis.llen(key))
            seen_ahead = seen_ahead or bool(rt.redis.keys('mailq:ahead:*'))
            time.sleep(0.05)
        assert [rt.store.status(i) for i in ids] == ['sent'] * 8
        time.sleep(1)
    finally:
        stop_process(worker)
    assert len(smtp_server.messages) == 8
    assert sorted(m.rcpt_tos[0] for m in smtp_server.messages) == ['ann@example.com'] * 8
    assert seen_ahead and most == 4       # 2 threads: a mail each, and one fetched ahead
    assert 'no thread on it' not in read_log(worker)
    assert all(json.loads(a)['outcome'] == 'sent' and len(rt.store.get(i).attempts) == 1
               for i in ids for a in [rt.redis.get(f'mailq:m:{i}:attempts').splitlines()[0]])
