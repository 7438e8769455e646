"""Issue 14: metadata, the suppression list and signed, durable delivery webhooks,
with real web and worker processes, a private Redis, aiosmtpd and an HTTP receiver
that checks every signature with the Python snippet of docs/webhooks.md."""
import collections
import json
import os
import re
import signal
import subprocess
import time
import urllib.parse

import pytest

from support.ini import smtp_section
from support.mailq_app import WebApp, run_cli, start_worker
from support.procs import REPO_ROOT, children, read_log, stop_process
from support.webhook_receiver import Receiver

SECRET = 'whsec-test-0123456789'
DOCS = REPO_ROOT / 'docs' / 'webhooks.md'


def doc_verify():
    """The `verify` of the Python snippet in docs/webhooks.md, as a reader would paste it."""
    text = DOCS.read_text()
    (code,) = re.findall(r'Python:\n\n```python\n(.*?)```', text, re.S)
    namespace = {}
    exec(compile(code, str(DOCS), 'exec'), namespace)
    return namespace['verify']


@pytest.fixture
def receiver():
    r = Receiver(SECRET)
    r.verify = doc_verify()
    yield r
    r.down()


@pytest.fixture
def hook_ini(tmp_ini, redis_url, smtp_server, receiver):
    def make(**hook):
        return tmp_ini(
            redis={'url': redis_url},
            worker={'concurrency': '4', 'queues': 'mailers, default', 'retry_base': '1',
                    'retry_max_delay': '1', 'retry_jitter': '0', 'max_retries': '2'},
            smtp=smtp_section(smtp_server, security='none'),
            templates={'path': str(REPO_ROOT / 'templates' / 'mail')},
            **{'webhook:app': {'url': receiver.url, 'secret': SECRET, 'retry_base': '0.5',
                               'retry_max_delay': '2', 'pause_after': '1000', **hook}})
    return make


@pytest.fixture
def procs():
    started = []
    yield started
    for p in started:
        stop_process(p)


def send(app, to, **fields):
    status, _, body = app.post('/api/mails', {'to': to, 'subject': f'hi {to}', 'text': 'x',
                                              **fields})
    assert status == 202, body
    return body


def wait_status(app, mail_id, status, timeout=30):
    deadline = time.monotonic() + timeout
    while True:
        _, _, mail = app.get(f'/api/mails/{mail_id}')
        if mail.get('status') == status:
            return mail
        assert time.monotonic() < deadline, f'{mail_id} is {mail.get("status")}, not {status}'
        time.sleep(0.1)


def rcpts_seen(smtp_server):
    """Every address the SMTP server got a RCPT TO for, accepted or not."""
    seen, original = [], smtp_server._rcpt_fault

    def noting(address):
        seen.append(address)
        return original(address)
    smtp_server._rcpt_fault = noting
    return seen


# -- metadata --------------------------------------------------------------------

def test_metadata_is_validated_stored_returned_and_shown(mailq_ini):
    app = WebApp(mailq_ini)
    try:
        meta = {'user_id': 42, 'order': 'A-7', 'tags': ['reset'], 'note': 'Grüße'}
        mail = send(app, 'ann@example.com', metadata=meta)
        _, _, got = app.get(f'/api/mails/{mail["id"]}')
        assert got['metadata'] == meta
        status, _, page = app.get(f'/mails/{mail["id"]}')
        assert status == 200 and 'Metadata' in page and 'A-7' in page and 'user_id' in page
        # 1 KB exactly is fine; one byte more is a 422 naming the field
        base = json.dumps({'k': ''}, separators=(',', ':'))
        fits = {'k': 'x' * (1024 - len(base))}
        send(app, 'ann@example.com', metadata=fits)
        for bad in ({'k': 'x' * (1025 - len(base))}, ['not', 'an', 'object'], 'text', 7):
            status, _, body = app.post('/api/mails', {'to': 'ann@example.com', 'subject': 's',
                                                      'text': 't', 'metadata': bad})
            assert status == 422 and body['details']['field'] == 'metadata', (bad, body)
        status, _, body = app.post('/api/mails/batch', {'mails': [
            {'to': 'a@example.com', 'subject': 's', 'text': 't'},
            {'to': 'b@example.com', 'subject': 's', 'text': 't', 'metadata': [1]}]})
        assert status == 422 and body['details']['field'] == 'mails[1].metadata'
        # a mail without metadata reads as before (no new key)
        plain = send(app, 'ann@example.com')
        assert 'metadata' not in app.get(f'/api/mails/{plain["id"]}')[2]
    finally:
        app.close()


# -- suppression -----------------------------------------------------------------

def test_a_bad_address_is_suppressed_skipped_and_sent_again_after_delete(
        hook_ini, smtp_server, receiver, procs):
    ini = hook_ini()
    seen = rcpts_seen(smtp_server)
    smtp_server.fail_rcpt('Gone@example.com', 550, '5.1.1 No such user')
    smtp_server.fail_rcpt('policy@example.com', 550, '5.7.1 Rejected by policy')
    app = WebApp(ini)
    procs.append(start_worker(ini, '-w', '2'))
    try:
        first = send(app, ['ok@example.com', 'Gone@example.com'], metadata={'u': 1})
        assert first['suppressed'] == []
        wait_status(app, first['id'], 'sent')
        events = receiver.wait_for(lambda es: any(e['mail']['id'] == first['id'] for e in es))
        (event,) = [e for e in events if e['mail']['id'] == first['id']]
        assert event['type'] == 'mail.partly_sent' and event['mail']['metadata'] == {'u': 1}
        outcomes = {r['address']: (r['outcome'], r['code']) for r in event['mail']['recipients']}
        assert outcomes == {'ok@example.com': ('delivered', 250),
                            'Gone@example.com': ('refused', 550)}
        # suppressed (case-insensitively) with the reply and the mail that caused it
        _, _, listing = app.get('/api/suppressions')
        (row,) = listing['rows']
        assert row['address'] == 'gone@example.com' and row['reason'] == 'bad address'
        assert row['mail'] == first['id'] and '5.1.1' in row['reply'] and row['until']
        # a 5.7.1 policy refusal is recorded on the mail, not suppressed
        policy = send(app, 'policy@example.com')
        wait_status(app, policy['id'], 'dead')
        assert [r['address'] for r in app.get('/api/suppressions')[2]['rows']] == \
            ['gone@example.com']

        # the next mail to it is not attempted: listed in the 202, no RCPT for it
        before = len(seen)
        both = send(app, ['GONE@example.com', 'ok@example.com'])
        assert both['suppressed'] == ['GONE@example.com'] and both['status'] == 'queued'
        mail = wait_status(app, both['id'], 'sent')
        assert mail['suppressed'] == ['GONE@example.com']
        only = send(app, 'gone@EXAMPLE.com')
        assert only['status'] == 'suppressed' and only['suppressed'] == ['gone@example.com']
        assert app.get(f'/api/mails/{only["id"]}')[2]['status'] == 'suppressed'
        receiver.wait_for(lambda es: any(e['mail']['id'] == only['id'] for e in es))
        time.sleep(1)     # a delivery of `only` would reach the server now
        assert [a.lower() for a in seen[before:]] == ['ok@example.com']
        assert app.request('DELETE', f'/api/mails/{only["id"]}')[0] == 409

        # after DELETE the next one goes
        status, _, body = app.request('DELETE', '/api/suppressions/Gone@Example.com')
        assert status == 200 and body['removed'] is True
        assert app.request('DELETE', '/api/suppressions/gone@example.com')[0] == 404
        smtp_server.reset_faults()
        again = send(app, 'gone@example.com')
        assert again['suppressed'] == []
        wait_status(app, again['id'], 'sent')
        assert seen[-1].lower() == 'gone@example.com'
    finally:
        app.close()


def test_a_suppression_made_while_a_mail_waits_holds_at_delivery(hook_ini, receiver, procs,
                                                                   smtp_server):
    ini = hook_ini()
    seen = rcpts_seen(smtp_server)
    app = WebApp(ini)
    try:
        waiting = send(app, ['late@example.com', 'keep@example.com'], delay=2)
        lone = send(app, 'late@example.com', delay=2)
        status, _, row = app.post('/api/suppressions', {'address': 'LATE@example.com',
                                                        'reason': 'asked us to stop'})
        assert status == 201 and row['address'] == 'late@example.com' and row['until'] is None
        procs.append(start_worker(ini, '-w', '2'))
        sent = wait_status(app, waiting['id'], 'sent')
        assert sent['suppressed'] == ['late@example.com']
        wait_status(app, lone['id'], 'suppressed')
        assert 'late@example.com' not in seen and 'keep@example.com' in seen
        events = receiver.wait_for(lambda es: {e['mail']['id'] for e in es} >=
                                   {waiting['id'], lone['id']})
        types = {e['mail']['id']: e['type'] for e in events}
        assert types == {waiting['id']: 'mail.partly_sent', lone['id']: 'mail.suppressed'}
    finally:
        app.close()


def test_suppress_cli_and_api_validation(hook_ini):
    ini = hook_ini()
    added = run_cli(ini, 'suppress', 'add', 'Bob@Bücher.example', '--reason', 'complaint')
    assert added.returncode == 0, added.stderr
    assert 'bob@xn--bcher-kva.example' in added.stdout
    listed = run_cli(ini, 'suppress', 'list', '--json')
    (row,) = json.loads(listed.stdout)['rows']
    assert row['unicode'] == 'bob@bücher.example' and row['reason'] == 'complaint'
    app = WebApp(ini)
    try:
        status, _, body = app.post('/api/suppressions', {'address': 'not an address'})
        assert status == 422 and body['details']['field'] == 'address'
        _, _, page = app.get('/api/suppressions?q=' + urllib.parse.quote('bücher'))
        assert page['total'] == 1
        assert app.get('/api/suppressions?q=nobody')[2]['total'] == 0
        status, _, html = app.get('/suppressed')
        assert status == 200 and 'bob@xn--bcher-kva.example' in html and 'complaint' in html
    finally:
        app.close()
    removed = run_cli(ini, 'suppress', 'remove', 'BOB@xn--bcher-kva.example')
    assert removed.returncode == 0, removed.stderr
    assert json.loads(run_cli(ini, 'suppress', 'list', '--json').stdout)['total'] == 0
    missing = run_cli(ini, 'suppress', 'remove', 'bob@bücher.example')
    assert missing.returncode == 1 and 'not suppressed' in missing.stderr


# -- webhooks --------------------------------------------------------------------

def test_each_event_type_arrives_signed_and_a_tampered_body_fails(hook_ini, smtp_server,
                                                                 receiver, procs):
    ini = hook_ini()
    smtp_server.fail_rcpt('bad@example.com', 550, '5.1.1 No such user')
    smtp_server.fault_for('slow@example.com', reply='451 4.3.0 Try later', times=1)
    smtp_server.fault_for('dead@example.com', reply='554 5.6.0 Content rejected', times=5)
    app = WebApp(ini)
    procs.append(start_worker(ini, '-w', '2'))
    try:
        ids = {}
        ids['sent'] = send(app, 'ok@example.com', metadata={'order': 9},
                           idempotency_key='order-9')['id']
        ids['partly_sent'] = send(app, ['ok2@example.com', 'bad@example.com'])['id']
        ids['retrying'] = send(app, 'slow@example.com')['id']      # then sent
        ids['dead'] = send(app, 'dead@example.com')['id']
        ids['cancelled'] = send(app, 'later@example.com', delay=600)['id']
        assert app.request('DELETE', f'/api/mails/{ids["cancelled"]}')[0] == 200
        wait_status(app, ids['partly_sent'], 'sent')
        ids['suppressed'] = send(app, 'bad@example.com')['id']
        want = {('mail.sent', ids['sent']), ('mail.partly_sent', ids['partly_sent']),
                ('mail.retrying', ids['retrying']), ('mail.sent', ids['retrying']),
                ('mail.dead', ids['dead']), ('mail.cancelled', ids['cancelled']),
                ('mail.suppressed', ids['suppressed'])}
        events = receiver.wait_for(
            lambda es: {(e['type'], e['mail']['id']) for e in es} >= want, what=str(want))
        assert {(e['type'], e['mail']['id']) for e in events} == want
        with receiver.lock:
            calls = list(receiver.calls)
        assert calls and all(ok for _, _, ok in calls), [h for h, _, ok in calls if not ok]
        by = {(e['type'], e['mail']['id']): e for e in events}
        sent = by[('mail.sent', ids['sent'])]['mail']
        assert sent['metadata'] == {'order': 9} and sent['idempotency_key'] == 'order-9'
        assert sent['status'] == 'sent' and sent['attempts'] == 1 and sent['last_code'] == 250
        assert sent['message_id'].startswith('<') and sent['subject'] == 'hi ok@example.com'
        assert by[('mail.retrying', ids['retrying'])]['mail']['last_code'] == 451
        dead = by[('mail.dead', ids['dead'])]['mail']
        assert dead['status'] == 'dead' and dead['last_code'] == 554
        assert by[('mail.cancelled', ids['cancelled'])]['mail']['status'] == 'cancelled'
        assert by[('mail.suppressed', ids['suppressed'])]['mail']['recipients'] == [
            {'address': 'bad@example.com', 'outcome': 'suppressed', 'code': None, 'reply': None}]
        # the signature is over the exact bytes: a changed body, secret or old t fails
        verify = doc_verify()
        headers, body, _ = calls[0]
        header = headers['Mailq-Signature']
        assert re.fullmatch(r't=\d+,v1=[0-9a-f]{64}', header)
        assert verify(SECRET, header, body)
        assert not verify(SECRET, header, body.replace(b'"mail.', b'"mail.x', 1))
        assert not verify(SECRET, header, body + b' ')
        assert not verify('another-secret', header, body)
        t = int(header.split(',')[0][2:])
        from mailq.webhooks import sign
        assert not verify(SECRET, sign(SECRET, t - 3600, body), body)
        # the Webhooks API and tab
        # the receiver answered before the dispatcher recorded the last delivery
        deadline = time.monotonic() + 10
        while True:
            _, _, hooks = app.get('/api/webhooks')
            (hook,) = hooks['endpoints']
            if hook['delivered'] >= len(want) or time.monotonic() > deadline:
                break
            time.sleep(0.1)
        assert hook['name'] == 'app' and not hook['paused'] and hook['delivered'] >= len(want)
        assert SECRET not in json.dumps(hooks)
        recent = hook['recent'][0]
        assert recent['status'] == 200 and recent['result'] == 'ok' and recent['attempts'] == 1
        status, _, page = app.get('/webhooks')
        assert status == 200 and 'active' in page and SECRET not in page
    finally:
        app.close()
    assert SECRET not in read_log(procs[0])


def test_receiver_down_for_20s_then_up_every_event_arrives(hook_ini, receiver, procs):
    ini = hook_ini()
    app = WebApp(ini)
    procs.append(start_worker(ini, '-w', '4'))
    try:
        receiver.down()
        ids = [send(app, f'r{i}@example.com')['id'] for i in range(30)]
        for mail_id in ids:
            wait_status(app, mail_id, 'sent')
        time.sleep(20)
        _, _, hooks = app.get('/api/webhooks')
        assert hooks['endpoints'][0]['failed'] >= 3      # it was trying all along
        assert hooks['endpoints'][0]['recent'][0]['status'] is None
        receiver.up()
        events = receiver.wait_for(lambda es: {e['mail']['id'] for e in es} >= set(ids),
                                   timeout=30)
        counts = collections.Counter(e['id'] for e in events)
        assert {e['mail']['id'] for e in events} == set(ids)
        assert len(counts) == len(ids)            # one event id per mail
        duplicates = sum(counts.values()) - len(counts)
        print(f'\n{len(ids)} events after 20 s down: {sum(counts.values())} POSTs, '
              f'{duplicates} duplicate(s)')
        assert duplicates <= len(ids)
        wait = time.monotonic() + 10
        while app.get('/api/webhooks')[2]['endpoints'][0]['waiting'] and time.monotonic() < wait:
            time.sleep(0.2)
        assert app.get('/api/webhooks')[2]['endpoints'][0]['waiting'] == 0
    finally:
        app.close()


def test_kill_9_of_the_worker_with_pending_events_loses_none(hook_ini, receiver, procs):
    ini = hook_ini()
    app = WebApp(ini)
    receiver.down()
    worker = start_worker(ini, '-w', '4')
    procs.append(worker)
    try:
        ids = [send(app, f'k{i}@example.com')['id'] for i in range(40)]
        for mail_id in ids:
            wait_status(app, mail_id, 'sent')
        _, _, hooks = app.get('/api/webhooks')
        assert hooks['endpoints'][0]['waiting'] == len(ids)
        assert hooks['endpoints'][0]['pending'] >= 1      # read by the dispatcher, not done
        os.killpg(worker.pid, signal.SIGKILL)
        worker.wait(10)
        receiver.up()
        procs.append(start_worker(ini, '-w', '2'))
        events = receiver.wait_for(lambda es: {e['mail']['id'] for e in es} >= set(ids),
                                   timeout=40)
        assert {e['mail']['id'] for e in events} == set(ids)
        assert all(e['type'] == 'mail.sent' for e in events)
    finally:
        app.close()


def test_an_endpoint_pauses_after_10_failures_in_a_row_and_resumes(hook_ini, receiver, procs):
    ini = hook_ini(pause_after='10', retry_base='0.1', retry_max_delay='0.2')
    receiver.status = 500
    app = WebApp(ini)
    procs.append(start_worker(ini, '-w', '2'))
    try:
        ids = [send(app, f'p{i}@example.com')['id'] for i in range(3)]
        deadline = time.monotonic() + 30
        while not app.get('/api/webhooks')[2]['endpoints'][0]['paused']:
            assert time.monotonic() < deadline, 'the endpoint was never paused'
            time.sleep(0.2)
        hook = app.get('/api/webhooks')[2]['endpoints'][0]
        assert hook['failures_in_a_row'] == 10 and hook['failed'] == 10
        posts = len(receiver.calls)
        assert posts == 10
        time.sleep(1.5)
        assert len(receiver.calls) == posts            # paused: nothing is sent
        status, _, page = app.get('/webhooks')
        assert 'paused' in page and 'Resume' in page
        receiver.status = 200
        assert app.post('/api/webhooks/app/resume')[2] == {'name': 'app', 'paused': False}
        events = receiver.wait_for(lambda es: len({e['mail']['id'] for e in es
                                                   if e is not None}) >= 3 and
                                   len(receiver.calls) > posts)
        assert {e['mail']['id'] for e in events} == set(ids)
        assert app.post('/api/webhooks/nope/resume')[0] == 404
    finally:
        app.close()


def test_no_webhook_section_writes_no_event(mailq_ini, redis_client, worker):
    app = WebApp(mailq_ini)
    try:
        mail = send(app, 'quiet@example.com')
        wait_status(app, mail['id'], 'sent')
        assert app.get('/api/webhooks')[2] == {'endpoints': []}
        assert not list(redis_client.scan_iter('mailq:hook:*'))
    finally:
        app.close()


def test_webhook_config_errors_name_the_section_and_key(tmp_ini, redis_url):
    for hook, key in (({'secret': 's'}, 'url'), ({'url': 'http://x/'}, 'secret'),
                      ({'url': 'ftp://x/', 'secret': 's'}, 'url'),
                      ({'url': 'http://x/', 'secret': 's', 'events': 'mail.opened'}, 'events'),
                      ({'url': 'http://x/', 'secret': 's', 'retry_for': '3600'}, 'retry_for')):
        ini = tmp_ini(redis={'url': redis_url}, **{'webhook:app': hook})
        done = run_cli(ini, 'check')
        assert done.returncode == 2, done.stderr
        assert '[webhook:app]' in done.stderr and key in done.stderr, done.stderr


def doc_snippet(language, fence):
    """The code of docs/webhooks.md's `<language>:` snippet, as a reader would paste it."""
    (code,) = re.findall(rf'{language}:\n\n```{fence}\n(.*?)```', DOCS.read_text(), re.S)
    return code


# Each runs the doc's verify on (secret, header, body file) and prints true or false.
VERIFIERS = {
    'ruby': (['ruby', '-e'], "\nputs verify(ARGV[0], ARGV[1], File.binread(ARGV[2]))\n",
             doc_snippet('Ruby', 'ruby')),
    'node': (['node', '-e'], "\nconst [s, h, f] = process.argv.slice(1);\n"
             "console.log(verify(s, h, require('fs').readFileSync(f)));\n",
             doc_snippet('Node', 'js')),
}


@pytest.mark.parametrize('language', list(VERIFIERS))
def test_the_ruby_and_node_signature_checks_of_the_docs(language, hook_ini, receiver, procs,
                                                       smtp_server, tmp_path):
    """docs/webhooks.md's Ruby and Node `verify`, run by the real runtime on a real
    signed delivery: true for it, false for a changed body, secret or stale t."""
    from mailq.webhooks import sign
    ini = hook_ini(events='mail.sent')
    app = WebApp(ini)
    procs.append(start_worker(ini, '-w', '1'))
    try:
        send(app, 'ok@example.com', metadata={'order': 'é-1'})
        receiver.wait_for(lambda es: len(es) >= 1, what='one event')
    finally:
        app.close()
    headers, body, _ = receiver.calls[0]
    header = headers['Mailq-Signature']
    command, tail, snippet = VERIFIERS[language]

    def verify(secret, header, body):
        path = tmp_path / 'body'
        path.write_bytes(body)
        out = subprocess.run([*command, snippet + tail, secret, header, str(path)],
                             capture_output=True, text=True, timeout=60)
        assert out.returncode == 0, out.stderr
        return {'true\n': True, 'false\n': False}[out.stdout]

    t = int(header.split(',')[0][2:])
    assert verify(SECRET, header, body)
    assert not verify(SECRET, header, body.replace(b'"mail.', b'"mail.x', 1))
    assert not verify(SECRET, header, body + b' ')
    assert not verify('another-secret', header, body)
    assert not verify(SECRET, sign(SECRET, t - 3600, body), body)
    assert verify(SECRET, sign(SECRET, t, body), body)


def _wait_children(pid, count, timeout=15):
    deadline = time.monotonic() + timeout
    while len(children(pid)) != count:
        assert time.monotonic() < deadline, f'{children(pid)} children, not {count}'
        time.sleep(0.1)
    return children(pid)


def test_the_dispatcher_is_a_child_process_restarted_when_killed(hook_ini, receiver, procs):
    """The dispatcher's work takes no GIL time from the delivery threads: it runs in a
    child of the worker, which restarts it after a kill -9 and stops it with itself."""
    ini = hook_ini()
    app = WebApp(ini)
    worker = start_worker(ini, '-w', '2')
    procs.append(worker)
    try:
        (first,) = _wait_children(worker.pid, 1)
        os.kill(first, signal.SIGKILL)
        deadline = time.monotonic() + 15
        while children(worker.pid) in (set(), {first}):
            assert time.monotonic() < deadline, 'the dispatcher was not restarted'
            time.sleep(0.1)
        ids = [send(app, f'c{i}@example.com')['id'] for i in range(5)]
        receiver.wait_for(lambda es: {e['mail']['id'] for e in es} >= set(ids), timeout=30)
        (second,) = children(worker.pid)
        stop_process(worker)
        assert not os.path.exists(f'/proc/{second}') or \
            open(f'/proc/{second}/stat').read().split()[2] == 'Z'
        assert 'webhook dispatcher (pid' in read_log(worker)
    finally:
        app.close()


def test_a_swarm_has_one_dispatcher_and_every_event_arrives(hook_ini, receiver, procs):
    ini = hook_ini()
    app = WebApp(ini)
    worker = start_worker(ini, '-w', '4', '-k', 'process')
    procs.append(worker)
    try:
        ids = [send(app, f's{i}@example.com')['id'] for i in range(20)]
        events = receiver.wait_for(lambda es: {e['mail']['id'] for e in es} >= set(ids),
                                   timeout=30)
        assert {e['mail']['id'] for e in events} == set(ids)
        # the swarm's children: one worker per core and one dispatcher, which forks none
        members = children(worker.pid)
        assert len(members) == min(os.cpu_count() or 1, 4) + 1
        assert sum(len(children(m)) for m in members) == 0
    finally:
        app.close()
