"""Indexed search: GET /api/mails?recipient=|message_id=|idempotency_key=, on a real Redis.

The index entries are written by accept.lua and leave with their record: trimmed,
deleted from the dashboard, or expired (a lookup skips and drops them; the worker's
sweep removes the ones nobody looks up). A value with one mail is a bucket field, one
with more a zset."""
import time
import urllib.parse

from mailq import admin, service, suppression
from mailq.config import load
from mailq.runtime import Runtime
from mailq.store.scripts import INDEX_SPILL
from mailq.store.search import KINDS, LEVELS, SWEEP_BUCKETS, slot


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


def bucketed(client, kind='*'):
    """The mail ids of every index bucket field (of one kind)."""
    return sorted(value.split(b' ')[0].decode() for key in client.keys(f'mailq:ixb:{kind}:*')
                  for value in client.hvals(key))


def no_index_left(client):
    return not client.keys('mailq:ix:*:*') and not client.keys('mailq:ixb:*')


def test_trim_and_delete_take_the_entries_with_the_record(mailq_ini, redis_client):
    rt = _runtime(mailq_ini)
    trimmed = service.send(rt, {'to': 'ann@example.com', 'subject': 's', 'text': 't',
                                'idempotency_key': 'k-trim'})['id']
    _dead(rt, trimmed)
    assert found(rt) == [trimmed] and bucketed(redis_client) == [trimmed] * 3
    assert rt.store.dead.trim(0) == 1
    assert no_index_left(redis_client)
    deleted = service.send(rt, {'to': 'ann@example.com', 'subject': 's', 'text': 't'})['id']
    twice = service.send(rt, {'to': 'ann@example.com', 'subject': 's', 'text': 't'})['id']
    assert redis_client.zcard('mailq:ix:rcpt:ann@example.com') == 2
    _dead(rt, deleted)
    assert admin.act(rt, 'dead', 'delete', [deleted])['done'] == 1
    assert found(rt) == [twice]
    assert admin.clear_queue(rt, 'mailers')['deleted'] == 1
    assert no_index_left(redis_client)
    cleared = service.send(rt, {'to': 'ann@example.com', 'subject': 's', 'text': 't'})['id']
    assert found(rt) == [cleared]
    assert admin.clear_queue(rt, 'mailers')['deleted'] == 1
    assert no_index_left(redis_client)


def test_a_value_with_one_mail_is_a_bucket_field_and_a_second_moves_both_to_a_zset(
        mailq_ini, redis_client):
    rt = _runtime(mailq_ini)
    first = service.send(rt, {'to': 'ann@example.com', 'subject': 's', 'text': 't',
                              'idempotency_key': 'k-1'})['id']
    message_id = rt.store.get(first).fields['message_id']
    assert not redis_client.keys('mailq:ix:*:*') and bucketed(redis_client) == [first] * 3
    _, b0, _, field = slot(rt.keys, 'msgid', message_id.strip('<>'))
    assert redis_client.hget(b0, field).decode().startswith(first + ' ')
    assert redis_client.object('encoding', b0) == b'listpack'
    _, idem_b0, _, idem_field = slot(rt.keys, 'idem', 'k-1')
    score = float(redis_client.hget(idem_b0, idem_field).split(b' ')[1])
    # The same Message-ID again (a client's own, as SMTP submission passes it on), and
    # the same idempotency key once its first use has expired.
    raw = rt.store.raw(first)
    second = service.send_message(rt, raw, 'app@example.com', ['bob@example.com'])['id']
    redis_client.delete('mailq:idem:k-1')
    third = service.send(rt, {'to': 'carl@example.com', 'subject': 's', 'text': 't',
                              'idempotency_key': 'k-1'})['id']
    for kind, value, ids in (('msgid', message_id.strip('<>'), [second, first]),
                             ('idem', 'k-1', [third, first])):
        assert [r['id'] for r in rt.store.index.lookup(kind, value)[0]] == ids, kind
        assert redis_client.zcard(f'mailq:ix:{kind}:{value}') == 2
    assert bucketed(redis_client, 'rcpt') == sorted([first, second, third])
    assert bucketed(redis_client, 'msgid') == [third]
    assert redis_client.zscore('mailq:ix:idem:k-1', first) == score    # moved as it was


def test_a_full_first_level_bucket_sends_new_values_to_the_second(mailq_ini, redis_client):
    rt = _runtime(mailq_ini)
    target = slot(rt.keys, 'idem', 'k0')[1]
    keys = [k for k in (f'k{i}' for i in range(100000))
            if slot(rt.keys, 'idem', k)[1] == target][:INDEX_SPILL + 2]
    ids = [service.send(rt, {'to': 'ann@example.com', 'subject': 's', 'text': 't',
                             'idempotency_key': k}, check_request=False)['id'] for k in keys]
    assert redis_client.hlen(target) == INDEX_SPILL
    spilled = [redis_client.hget(slot(rt.keys, 'idem', k)[2], slot(rt.keys, 'idem', k)[3])
               for k in keys[INDEX_SPILL:]]
    assert [s.split(b' ')[0].decode() for s in spilled] == ids[INDEX_SPILL:]
    for key, mail_id in zip(keys[-3:], ids[-3:]):
        assert [r['id'] for r in rt.store.index.lookup('idem', key)[0]] == [mail_id]
    assert admin.clear_queue(rt, 'mailers')['deleted'] == len(keys)
    assert no_index_left(redis_client)


def sweep_all(rt):
    """Sweep steps enough to pass every bucket and finish a SCAN of the keyspace."""
    for _ in range(len(KINDS) * sum(LEVELS) // SWEEP_BUCKETS + 1):
        rt.store.index.sweep()
    while rt.store.index._sweep_cursor:
        rt.store.index.sweep()


def test_an_expired_record_leaves_lookups_at_once_and_the_index_on_the_sweep(
        mailq_ini, redis_client):
    rt = _runtime(mailq_ini)
    kept, looked_up, swept, alone = (
        service.send(rt, {'to': to, 'subject': 's', 'text': 't'})['id']
        for to in ('ann@example.com', 'ann@example.com', 'bob@example.com', 'carl@example.com'))
    for mail_id in (looked_up, swept, alone):        # as a sent mail's record expires
        redis_client.pexpire(f'mailq:m:{mail_id}', 1)
    time.sleep(0.05)
    assert found(rt) == [kept] and found(rt, 'carl@example.com') == []
    assert redis_client.zrange('mailq:ix:rcpt:ann@example.com', 0, -1) == [kept.encode()]
    assert bucketed(redis_client, 'rcpt') == [swept]
    assert bucketed(redis_client, 'msgid') == sorted([kept, looked_up, swept, alone])
    sweep_all(rt)
    assert bucketed(redis_client, 'rcpt') == [] and bucketed(redis_client, 'msgid') == [kept]
    assert redis_client.zcard('mailq:ix:rcpt:ann@example.com') == 1


def test_lookups_merge_a_bucket_entry_with_the_zset_of_its_value(mailq_ini, redis_client):
    """An older writer (before buckets) adds to a value's zset while this code's entry of
    the value is a bucket field: a lookup shows both, newest first, across pages."""
    rt = _runtime(mailq_ini)
    ids = [service.send(rt, {'to': 'ann@example.com', 'subject': 's', 'text': 't'})['id']
           for _ in range(27)]
    moved = redis_client.zrange('mailq:ix:rcpt:ann@example.com', 0, -1, withscores=True)
    redis_client.delete('mailq:ix:rcpt:ann@example.com')
    *zset_keys, field = slot(rt.keys, 'rcpt', 'ann@example.com')
    middle = ids[13]
    redis_client.zadd('mailq:ix:rcpt:ann@example.com',
                      {m: s for m, s in moved if m.decode() != middle})
    score = dict((m.decode(), s) for m, s in moved)[middle]
    redis_client.hset(zset_keys[2], field, f'{middle} {score!r}')
    first, cursor = rt.store.index.lookup('rcpt', 'ann@example.com')
    second, end = rt.store.index.lookup('rcpt', 'ann@example.com', cursor)
    assert [r['id'] for r in first + second] == ids[::-1] and end is None


def test_a_suppressed_recipient_is_still_found(mailq_ini, redis_client):
    rt = _runtime(mailq_ini)
    suppression.add(rt, 'Ann@example.com', 'test')
    mail_id = service.send(rt, {'to': ['ann@example.com', 'bob@example.com'],
                                'subject': 's', 'text': 't'})['id']
    assert found(rt) == [mail_id] and found(rt, 'bob@example.com') == [mail_id]
