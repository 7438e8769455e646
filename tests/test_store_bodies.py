"""Where a mail's message lives (its own key, compressed when that pays), how long a
sent mail keeps it ([worker] keep_sent_bodies), and that records of the older layout
(the message in the record's `raw` field, Huey's JSON task) still read and deliver."""
import json
import os
import time
import uuid

import pytest

from mailq import service
from mailq.config import load
from mailq.runtime import Runtime
from mailq.store import body

ROW = ('<tr><td style="padding:8px 12px;border-bottom:1px solid #e5e7eb;color:#111827">'
       'Item {i}: stoneware mug, SKU {sku}</td><td style="text-align:right">&euro;{price}</td>'
       '</tr>')
HTML = '<html><body><table>' + ''.join(
    ROW.format(i=i, sku=10000 + i * 97 % 8999, price=f'{3 + i * 1.37:.2f}')
    for i in range(120)) + '</table></body></html>'
MAIL = {'to': 'ann@example.com', 'subject': 'Your order 100042', 'html': HTML,
        'text': 'Thank you for your order.\n' * 20}


@pytest.fixture
def make_rt(tmp_ini, redis_url):
    def make(**worker):
        return Runtime(load(str(tmp_ini(redis={'url': redis_url}, worker=worker,
                                        smtp={'from': 'mailq@example.com'})), environ={}))
    return make


def sent(rt, mail_id, outbox=False):
    """Take the mail as a worker thread does and record it sent."""
    queue, task, claim = rt.store.take('w1', ['mailers'], 't1')
    attempt = {'at': time.time(), 'worker': 'w1', 'outcome': 'sent', 'code': 250,
               'reply': 'ok', 'duration': 0.01}
    assert rt.store.finish(mail_id, task, 'w1', 't1', 'sent', attempt, outbox=outbox)[0] == 1
    return claim[2]


def test_the_record_is_a_listpack_and_the_body_is_compressed(make_rt, redis_client):
    rt = make_rt()
    mail_id = service.send(rt, MAIL)['id']
    record, stored = rt.keys.record(mail_id), redis_client.get(rt.keys.body(mail_id))
    assert redis_client.object('encoding', record) == b'listpack'
    assert not redis_client.hexists(record, 'raw')
    raw = rt.store.raw(mail_id)
    assert b'\r\nSubject: Your order 100042\r\n' in raw
    assert stored.startswith(body.COMPRESSED) and len(stored) < 0.25 * len(raw)
    assert sent(rt, mail_id) == raw                     # the worker gets the message itself


def test_a_short_message_is_kept_as_it_is(make_rt, redis_client):
    rt = make_rt()
    mail_id = service.send(rt, {'to': 'ann@example.com', 'subject': 's', 'text': 'hi'})['id']
    assert redis_client.get(rt.keys.body(mail_id)) == rt.store.raw(mail_id)
    assert body.pack(b'x' * 600).startswith(body.COMPRESSED)
    incompressible = os.urandom(1024)
    assert body.pack(incompressible) == incompressible   # compression would not save 10%


def test_a_sent_mail_keeps_its_body_for_keep_sent_bodies(make_rt, redis_client):
    rt = make_rt(keep_sent_bodies='0.0001')             # 0.36 s
    mail_id = service.send(rt, MAIL)['id']
    sent(rt, mail_id)
    assert 0 < redis_client.pttl(rt.keys.body(mail_id)) <= 360
    assert 7 * 86400 - 5 < redis_client.ttl(rt.keys.record(mail_id)) <= 7 * 86400
    assert 'body_note' not in service.get_mail(rt, mail_id)
    deadline = time.monotonic() + 10
    while redis_client.exists(rt.keys.body(mail_id)):
        assert time.monotonic() < deadline, 'the body of the sent mail did not expire'
        time.sleep(0.1)
    view = service.get_mail(rt, mail_id)
    assert view['body_note'] == 'body no longer kept (keep_sent_bodies = 0.0001 h)'
    assert view['body_kept'] is False
    assert (view['status'], view['subject'], view['to']) == ('sent', 'Your order 100042',
                                                             'ann@example.com')
    assert [a['outcome'] for a in view['history']] == ['sent']
    usage = (redis_client.memory_usage(rt.keys.record(mail_id), samples=0)
             + redis_client.memory_usage(rt.keys.attempts(mail_id), samples=0))
    assert not redis_client.exists(rt.keys.log(mail_id))
    assert usage <= 1024, usage


def test_the_outbox_keeps_bodies(make_rt, redis_client):
    rt = make_rt(keep_sent_bodies='0.0003')
    mail_id = service.send(rt, MAIL)['id']
    sent(rt, mail_id, outbox=True)
    assert redis_client.pttl(rt.keys.body(mail_id)) == -1    # no expiry
    assert rt.store.outbox.trim(0) == 1                       # trimmed: all of it goes
    assert not redis_client.exists(rt.keys.body(mail_id), rt.keys.record(mail_id))


def test_body_time_follows_the_record(make_rt):
    cfg = make_rt(keep_sent_bodies='0').config.worker
    assert cfg.sent_body_ms == 7 * 86400_000                  # 0: as long as the record
    cfg = make_rt(keep_sent_bodies='1000', keep_sent_days='1').config.worker
    assert cfg.sent_body_ms == 86400_000                      # never past the record
    cfg = make_rt(keep_sent_days='0').config.worker
    assert cfg.sent_body_ms == 24 * 3600_000                  # the record forever, not the body


def test_cancel_and_erase_take_the_body_along(make_rt, redis_client):
    rt = make_rt()
    cancelled = service.send(rt, {**MAIL, 'delay': 3600})['id']
    assert service.cancel(rt, cancelled)['status'] == 'cancelled'
    assert redis_client.ttl(rt.keys.body(cancelled)) > 0
    erased = service.send(rt, {**MAIL, 'delay': 3600})['id']
    assert rt.store.erase('scheduled', [erased]) == [erased]
    assert not redis_client.exists(rt.keys.body(erased))


def old_layout_mail(rt, redis_client, mail_id='0ld0ld0ld0ld0ld0ld00'):
    """A queued mail as the release before this layout wrote it: the message in the
    record's `raw` field, the task in Huey's JSON."""
    raw = b'From: mailq@example.com\r\nTo: old@example.com\r\nSubject: old\r\n\r\nhello\r\n'
    task = json.dumps({'id': str(uuid.uuid4()), 'name': 'mailq.tasks.deliver', 'retries': 0,
                       'retry_delay': 0, 'args': [mail_id], 'kwargs': {'queue': 'mailers'},
                       'retry_backoff': 0}, separators=(',', ':'))
    redis_client.hset(rt.keys.record(mail_id), mapping={
        'id': mail_id, 'status': 'queued', 'queue': 'mailers', 'task': task, 'attempts': 0,
        'created_at': time.time(), 'send_at': '', 'message_id': '<old@example.com>',
        'from': 'mailq@example.com', 'rcpts': '["old@example.com"]', 'to': 'old@example.com',
        'subject': 'old', 'template': '', 'attachments': 0, 'raw': raw})
    redis_client.lpush(rt.keys.queue('mailers'), task)
    return mail_id, raw


def test_a_record_of_the_older_layout_reads_and_delivers(make_rt, redis_client):
    rt = make_rt()
    mail_id, raw = old_layout_mail(rt, redis_client)
    assert rt.store.raw(mail_id) == raw
    record = rt.store.get(mail_id, with_raw=True)
    assert record.raw == raw and record.body_kept and 'raw' not in record.fields
    assert 'body_note' not in service.get_mail(rt, mail_id)
    assert sent(rt, mail_id) == raw
    assert service.get_mail(rt, mail_id)['status'] == 'sent'
    assert rt.store.raw(mail_id) == raw      # kept in the record until the record expires


def test_attempts_are_a_string_and_a_list_of_the_older_layout_is_added_to(make_rt,
                                                                          redis_client):
    rt = make_rt()
    new = service.send(rt, MAIL)['id']
    sent(rt, new)
    assert redis_client.type(rt.keys.attempts(new)) == b'string'
    assert 0 < redis_client.ttl(rt.keys.attempts(new)) <= redis_client.ttl(rt.keys.record(new))
    assert not redis_client.exists(rt.keys.log(new))
    assert [a['outcome'] for a in service.get_mail(rt, new)['history']] == ['sent']
    # a mail retried once by the release before: its attempt log is a list, and the
    # next attempt goes on it, oldest first
    mail_id, _ = old_layout_mail(rt, redis_client)
    earlier = {'at': time.time() - 60, 'worker': 'old', 'outcome': 'retrying', 'code': 451,
               'reply': 'later', 'duration': 0.01}
    redis_client.rpush(rt.keys.log(mail_id), json.dumps(earlier))
    sent(rt, mail_id)
    assert redis_client.llen(rt.keys.log(mail_id)) == 2
    assert not redis_client.exists(rt.keys.attempts(mail_id))
    assert [a['code'] for a in service.get_mail(rt, mail_id)['history']] == [451, 250]
    # both leave with their records
    assert rt.store.erase('sent', [new, mail_id]) == [new, mail_id]
    assert not redis_client.keys('mailq:m:*')
