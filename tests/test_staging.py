"""Staging mode ([smtp] allow_recipients, redirect_to) and Release, end to end: a real
worker process delivers to the aiosmtpd server, which records exactly what it got."""
import email
import email.policy
import time

import pytest

from mailq import check, service
from mailq.config import load
from mailq.errors import ConfigError
from support.ini import smtp_section
from support.mailq_app import WebApp, start_worker, stop_process
from support.procs import REPO_ROOT

USER, PASSWORD = 'admin', 's3cret'


def staging_ini(tmp_ini, redis_url, smtp_server, **smtp):
    return tmp_ini(redis={'url': redis_url},
                   worker={'queues': 'mailers, default', 'concurrency': '2',
                           'retry_base': '3600'},
                   smtp=smtp_section(smtp_server, **smtp),
                   web={'username': USER, 'password': PASSWORD},
                   templates={'path': str(REPO_ROOT / 'templates' / 'mail')})


def wait_for(predicate, what, timeout=15):
    deadline = time.monotonic() + timeout
    while not (found := predicate()):
        if time.monotonic() > deadline:
            raise AssertionError(f'timed out waiting for {what}')
        time.sleep(0.05)
    return found


def record(rt, mail_id):
    return service.get_mail(rt, mail_id)


@pytest.fixture
def served():
    apps, workers = [], []

    def start(ini):
        app = WebApp(ini)
        apps.append(app)
        workers.append(start_worker(ini, '-w', '2'))
        return app
    yield start
    for proc in workers:
        stop_process(proc)
    for app in apps:
        app.close()


def test_allow_recipients_sends_only_to_allowed_and_keeps_the_rest(
        tmp_ini, redis_url, smtp_server, served):
    ini = staging_ini(tmp_ini, redis_url, smtp_server,
                      allow_recipients='*@example.com, qa@partner.test')
    app = served(ini)
    rt = app.runtime
    mixed = service.send(rt, {'to': ['ann@example.com', 'bob@elsewhere.test'],
                              'cc': 'qa@partner.test', 'bcc': 'eve@partner.test',
                              'subject': 'Mixed', 'text': 'x'})['id']
    caught = service.send(rt, {'to': 'nobody@elsewhere.test', 'subject': 'Caught',
                               'text': 'x'})['id']
    wait_for(lambda: record(rt, mixed)['status'] == 'sent' and
             record(rt, caught)['status'] == 'sent', 'both outcomes')
    received = smtp_server.wait_for(1)
    time.sleep(0.5)                           # a second delivery would show up by now
    assert [sorted(r.rcpt_tos) for r in smtp_server.messages] == [
        ['ann@example.com', 'qa@partner.test']]
    assert received[0].data.count(b'Subject: Mixed') == 1
    # Both are kept in the outbox with what was caught and why.
    view = record(rt, mixed)
    assert view['staging']['caught'] == ['bob@elsewhere.test', 'eve@partner.test']
    assert 'allow_recipients' in view['staging']['reason']
    assert record(rt, caught)['staging']['caught'] == ['nobody@elsewhere.test']
    outbox = app.get('/api/outbox', headers=_auth())[2]
    assert {r['id'] for r in outbox['rows']} == {mixed, caught}
    # The banner is on every page, and mailq check and /healthz (logged in) say it.
    for path in ('/', '/outbox', '/queues', f'/mails/{caught}'):
        status, _, page = app.get(path, headers=_auth())
        assert status == 200 and 'only *@example.com, qa@partner.test receive mail' in page
    status, _, health = app.get('/healthz', headers=_auth())
    assert 'only *@example.com' in health['checks']['staging']['detail']
    assert app.get('/healthz')[2]['checks']['staging'] is True     # anonymous: ok only
    lines = []
    check.run_checks(load(str(ini), environ={}), out=lines.append, defaults=True)
    assert any(line.startswith('staging') and '*@example.com' in line for line in lines)


def test_redirect_to_sends_everything_to_one_address_with_x_original_to(
        tmp_ini, redis_url, smtp_server, served):
    ini = staging_ini(tmp_ini, redis_url, smtp_server, redirect_to='qa@example.com')
    app = served(ini)
    rt = app.runtime
    mail_id = service.send(rt, {'to': ['ann@customer.test', 'bob@customer.test'],
                                'bcc': 'eve@customer.test', 'subject': 'Redirected',
                                'text': 'x'})['id']
    received = smtp_server.wait_for(1)
    wait_for(lambda: record(rt, mail_id)['status'] == 'sent', 'the outcome')
    time.sleep(0.3)
    assert len(smtp_server.messages) == 1 and received[0].rcpt_tos == ['qa@example.com']
    msg = email.message_from_bytes(received[0].data, policy=email.policy.default)
    assert [a.strip() for a in msg['X-Original-To'].split(',')] == [
        'ann@customer.test', 'bob@customer.test', 'eve@customer.test']
    assert msg['To'] == 'ann@customer.test, bob@customer.test'      # the message unchanged
    view = record(rt, mail_id)
    assert view['staging'] == {'mode': 'redirect', 'to': 'qa@example.com',
                               'original': ['ann@customer.test', 'bob@customer.test',
                                            'eve@customer.test']}
    # The record keeps the original envelope: nothing of it was rewritten.
    assert service.get_mail(rt, mail_id)['to'] == 'ann@customer.test, bob@customer.test'
    status, _, page = app.get(f'/mails/{mail_id}', headers=_auth())
    assert 'every mail goes to qa@example.com' in page and 'X-Original-To' in page


def test_release_sends_a_new_mail_through_the_relay_and_keeps_the_caught_one(
        tmp_ini, redis_url, smtp_server, served):
    ini = staging_ini(tmp_ini, redis_url, smtp_server, transport='outbox',
                      release_host='127.0.0.1', release_port=str(smtp_server.port))
    app = served(ini)
    rt = app.runtime
    caught = service.send(rt, {'to': 'ann@example.com', 'subject': 'Release me',
                               'text': 'hello'})['id']
    wait_for(lambda: record(rt, caught)['status'] == 'sent', 'the caught mail')
    assert smtp_server.messages == []            # transport = outbox: nothing sent
    status, _, body = app.post(f'/api/outbox/{caught}/release',
                               {'to': ['qa@example.com']}, headers=_auth())
    assert status == 202 and body['released_from'] == caught and body['id'] != caught
    received = smtp_server.wait_for(1)
    assert received[0].rcpt_tos == ['qa@example.com']
    msg = email.message_from_bytes(received[0].data, policy=email.policy.default)
    assert msg['Resent-To'] == 'qa@example.com' and msg['Subject'] == 'Release me'
    copy = wait_for(lambda: record(rt, body['id'])['status'] == 'sent' and
                    record(rt, body['id']), 'the copy to be sent')
    assert copy['released_from'] == caught and len(copy['history']) == 1
    original = record(rt, caught)
    assert original['status'] == 'sent' and original['history'][0]['reply'] == \
        '250 kept in outbox'                    # one attempt: never sent a second time
    assert [r['id'] for r in original['releases']] == [body['id']]
    ids = {r['id'] for r in app.get('/api/outbox', headers=_auth())[2]['rows']}
    assert caught in ids and body['id'] not in ids   # the copy went out, not to the outbox
    # Refused: no such mail, a mail not in the outbox, no address.
    assert app.post('/api/outbox/nope/release', {'to': ['a@example.com']},
                    headers=_auth())[0] == 404
    assert app.post(f'/api/outbox/{body["id"]}/release', {'to': ['a@example.com']},
                    headers=_auth())[0] == 409
    assert app.post(f'/api/outbox/{caught}/release', {}, headers=_auth())[0] == 422


def test_release_needs_a_relay(tmp_ini, redis_url, smtp_server):
    ini = staging_ini(tmp_ini, redis_url, smtp_server, transport='outbox')
    app = WebApp(ini)
    try:
        status, _, body = app.post('/api/outbox/x/release', {'to': ['a@example.com']},
                                   headers=_auth())
        assert status == 409 and 'release_host' in body['error']
    finally:
        app.close()


def test_release_in_staging_only_to_allowed_recipients(tmp_ini, redis_url, smtp_server,
                                                        served):
    ini = staging_ini(tmp_ini, redis_url, smtp_server, allow_recipients='*@example.com')
    app = served(ini)
    rt = app.runtime
    caught = service.send(rt, {'to': 'x@elsewhere.test', 'subject': 's', 'text': 'x'})['id']
    wait_for(lambda: record(rt, caught)['status'] == 'sent', 'the caught mail')
    status, _, body = app.post(f'/api/outbox/{caught}/release', {'to': ['y@elsewhere.test']},
                               headers=_auth())
    assert status == 422 and 'allow_recipients' in body['error']
    assert app.post(f'/api/outbox/{caught}/release', {'to': ['qa@example.com']},
                    headers=_auth())[0] == 202
    assert smtp_server.wait_for(1)[0].rcpt_tos == ['qa@example.com']


@pytest.mark.parametrize('smtp, key, words', [
    ({'allow_recipients': 'not an address'}, 'allow_recipients', 'not an address'),
    ({'redirect_to': 'a@b.example, c@d.example'}, 'redirect_to', 'one plain address'),
    ({'redirect_to': 'qa@example.com', 'allow_recipients': '*@example.com'}, 'redirect_to',
     'not both'),
])
def test_staging_config_errors_name_the_key(tmp_ini, redis_url, smtp_server, smtp, key,
                                             words):
    ini = staging_ini(tmp_ini, redis_url, smtp_server, **smtp)
    with pytest.raises(ConfigError) as err:
        load(str(ini), environ={})
    text = str(err.value)
    assert '[smtp]' in text or 'smtp' in text
    assert key in text and words in text and str(ini) in text


def _auth():
    import base64
    token = base64.b64encode(f'{USER}:{PASSWORD}'.encode()).decode()
    return {'Authorization': f'Basic {token}'}
