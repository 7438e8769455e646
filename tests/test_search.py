"""Indexed search: GET /api/mails?recipient=|message_id=|idempotency_key=, on a real Redis.

The index entries are written by accept.lua and leave with their record: trimmed,
deleted from the dashboard, or expired (a lookup skips and drops them; the worker's
sweep removes the ones nobody looks up)."""
import time
import urllib.parse

from mailq import admin, service, suppression
from mailq.config import load
from mailq.runtime import Runtime


def query(web, **params):
    status, _, body = web.get('/api/mails?' + urllib.parse.urlencode(params))
    return status, body


def post(web, **fields):
    status, _, body = web.post('/api/mails', {'subject': 's', 'text': 't', **fields})
    assert status == 202, body
    return body['id']


def test_recipient_search_is_newest_first_and_ignores_case(web):
    first = post(web, to='Ann@Example.com')
    second = post(web, to='bob@example.com', cc=['ANN@example.COM'])
    post(web, to='carl@example.com')
    status, body = query(web, recipient='ann@EXAMPLE.com')
    assert status == 200
    assert [m['id'] for m in body['mails']] == [second, first]
    assert body['next'] is None and body['mails'][0]['status'] == 'queued'
    assert query(web, recipient='<ann@example.com>')[1]['mails'] == body['mails']
    assert query(web, recipient='nobody@example.com')[1]['mails'] == []


def test_an_idn_recipient_is_found_in_either_spelling(web):
    mail_id = post(web, to='Ann@Bücher.example')
    for spelling in ('ann@bücher.example', 'ANN@xn--bcher-kva.example'):
        status, body = query(web, recipient=spelling)
        assert status == 200 and [m['id'] for m in body['mails']] == [mail_id], spelling


def test_message_id_and_idempotency_key_find_their_mail(web):
    mail_id = post(web, to='ann@example.com', idempotency_key='order-7')
    post(web, to='ann@example.com', idempotency_key='order-8')
    message_id = web.get(f'/api/mails/{mail_id}')[2]['message_id']
    for params in ({'message_id': message_id}, {'message_id': message_id.strip('<>')},
                   {'idempotency_key': 'order-7'}):
        status, body = query(web, **params)
        assert status == 200 and [m['id'] for m in body['mails']] == [mail_id], params


def test_pages_of_25_follow_the_cursor_to_the_end(web):
    ids = [post(web, to='ann@example.com') for _ in range(30)]
    status, first = query(web, recipient='ann@example.com')
    assert status == 200 and len(first['mails']) == 25 and first['next']
    status, second = query(web, recipient='ann@example.com', cursor=first['next'])
    assert status == 200 and second['next'] is None
    shown = [m['id'] for m in first['mails'] + second['mails']]
    assert shown == ids[::-1]


def test_a_search_needs_exactly_one_field_and_a_real_cursor(web):
    assert query(web)[0] == 422
    status, body = query(web, recipient='a@example.com', message_id='x@y')
    assert status == 422 and body['details']['field'] == 'recipient'
    status, body = query(web, recipient='not an address')
    assert status == 422 and body['details']['field'] == 'recipient'
    for cursor in ('nonsense', 'nan:x', 'inf:x'):
        status, body = query(web, recipient='a@example.com', cursor=cursor)
        assert status == 422 and body['details']['field'] == 'cursor', cursor


def _dead(rt, mail_id):
    """Make the mail dead through the store's own take and finish."""
    worker = 'host:1:abc'
    _, task, _ = rt.store.take(worker, ['mailers'], 't1')
    attempt = {'at': time.time(), 'worker': worker, 'outcome': 'dead', 'code': 550,
               'reply': 'no', 'duration': 0.01}
    assert rt.store.finish(mail_id, task, worker, 't1', 'dead', attempt)[0] == 1


def _runtime(ini):
    return Runtime(load(str(ini), environ={}))


def found(rt, address='ann@example.com'):
    return [row['id'] for row in rt.store.index.lookup('rcpt', address)[0]]


def test_trim_and_delete_take_the_entries_with_the_record(mailq_ini, redis_client):
    rt = _runtime(mailq_ini)
    trimmed = service.send(rt, {'to': 'ann@example.com', 'subject': 's', 'text': 't',
                                'idempotency_key': 'k-trim'})['id']
    _dead(rt, trimmed)
    assert found(rt) == [trimmed]
    assert rt.store.dead.trim(0) == 1
    assert not redis_client.exists('mailq:ix:rcpt:ann@example.com', 'mailq:ix:idem:k-trim')
    deleted = service.send(rt, {'to': 'ann@example.com', 'subject': 's', 'text': 't'})['id']
    _dead(rt, deleted)
    assert admin.act(rt, 'dead', 'delete', [deleted])['done'] == 1
    assert not redis_client.keys('mailq:ix:*:*')
    cleared = service.send(rt, {'to': 'ann@example.com', 'subject': 's', 'text': 't'})['id']
    assert found(rt) == [cleared]
    assert admin.clear_queue(rt, 'mailers')['deleted'] == 1
    assert not redis_client.keys('mailq:ix:*:*')


def test_an_expired_record_leaves_lookups_at_once_and_the_index_on_the_sweep(
        mailq_ini, redis_client):
    rt = _runtime(mailq_ini)
    kept, looked_up, swept = (service.send(rt, {'to': to, 'subject': 's', 'text': 't'})['id']
                              for to in ('ann@example.com', 'ann@example.com',
                                         'bob@example.com'))
    for mail_id in (looked_up, swept):        # as a sent mail's record expires
        redis_client.pexpire(f'mailq:m:{mail_id}', 1)
    time.sleep(0.05)
    assert found(rt) == [kept]
    assert redis_client.zrange('mailq:ix:rcpt:ann@example.com', 0, -1) == [kept.encode()]
    assert redis_client.exists('mailq:ix:rcpt:bob@example.com')
    while rt.store.index.sweep() == 0 and rt.store.index._sweep_cursor:
        pass
    assert not redis_client.exists('mailq:ix:rcpt:bob@example.com')
    assert redis_client.zcard('mailq:ix:rcpt:ann@example.com') == 1


def test_a_suppressed_recipient_is_still_found(mailq_ini, redis_client):
    rt = _runtime(mailq_ini)
    suppression.add(rt, 'Ann@example.com', 'test')
    mail_id = service.send(rt, {'to': ['ann@example.com', 'bob@example.com'],
                                'subject': 's', 'text': 't'})['id']
    assert found(rt) == [mail_id] and found(rt, 'bob@example.com') == [mail_id]
