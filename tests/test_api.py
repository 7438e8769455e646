"""The HTTP API contract: accepted mails, and every error answered as JSON."""
import base64
import json

import pytest

from support.mailq_app import WebApp
from support.procs import REPO_ROOT, free_port
from support.records import stored_message

MAIL = {'to': 'ann@example.com', 'subject': 'Hello', 'text': 'Hi Ann'}


def test_post_mail_is_queued_with_its_record(web, redis_client):
    status, _, body = web.post('/api/mails', {**MAIL, 'html': '<p>Hi</p>'})
    assert status == 202
    assert body['status'] == 'queued' and body['queue'] == 'mailers' and body['send_at'] is None
    assert redis_client.llen('mailq:q:mailers') == 1
    status, _, mail = web.get(f'/api/mails/{body["id"]}')
    assert status == 200
    assert mail['status'] == 'queued' and mail['attempts'] == 0 and mail['history'] == []
    assert mail['message_id'].startswith('<') and mail['message_id'].endswith('@example.com>')
    raw = stored_message(redis_client, body['id'])
    assert b'multipart/alternative' in raw and mail['message_id'].encode() in raw
    assert b'Date: ' in raw and b'From: mailq@example.com' in raw


def test_template_mail_is_rendered_at_enqueue(web, redis_client):
    status, _, body = web.post('/api/mails', {'to': ['ann@example.com', 'Bob <bob@example.com>'],
                                              'template': 'welcome',
                                              'context': {'name': '<Ann>'}, 'queue': 'default'})
    assert status == 202 and body['queue'] == 'default'
    raw = stored_message(redis_client, body['id']).decode()
    assert 'Subject: Welcome to our service, <Ann>!' in raw     # subject: not escaped
    assert 'Hello &lt;Ann&gt;' in raw                            # html: escaped
    assert 'Hello <Ann>,' in raw                                 # text: not escaped
    assert json.loads(redis_client.hget(f'mailq:m:{body["id"]}', 'rcpts')) == [
        'ann@example.com', 'bob@example.com']


def test_send_at_and_delay_schedule_the_mail(web, redis_client):
    status, _, body = web.post('/api/mails', {**MAIL, 'send_at': '2099-01-01T08:00:00+01:00'})
    assert status == 422 and body['details']['field'] == 'send_at'   # > 366 days ahead
    status, _, body = web.post('/api/mails', {**MAIL, 'delay': 3600})
    assert status == 202 and body['status'] == 'scheduled' and body['send_at'].endswith('Z')
    assert redis_client.zcard('mailq:schedule') == 1
    assert redis_client.llen('mailq:q:mailers') == 0
    status, _, body = web.post('/api/mails', {**MAIL, 'send_at': '2001-01-01T00:00:00Z'})
    assert status == 202 and body['status'] == 'queued'     # a past time means now


def test_idempotency_key_returns_the_same_mail(web, redis_client):
    first = web.post('/api/mails', MAIL, headers={'Idempotency-Key': 'order-42'})[2]
    again = web.post('/api/mails', dict(reversed(MAIL.items())),
                     headers={'Idempotency-Key': 'order-42'})
    assert again[0] == 202 and again[2]['id'] == first['id'] and again[2]['duplicate'] is True
    assert again[2]['status'] == 'queued'
    by_field = web.post('/api/mails', {**MAIL, 'idempotency_key': 'order-42'})[2]
    assert by_field['id'] == first['id']
    assert redis_client.llen('mailq:q:mailers') == 1


def test_idempotency_key_with_another_request_is_a_409_naming_the_key(web, redis_client):
    """Stripe's rule: the same key with different parameters is an error, not the
    earlier mail silently."""
    first = web.post('/api/mails', MAIL, headers={'Idempotency-Key': 'order-43'})[2]
    status, _, body = web.post('/api/mails', {**MAIL, 'text': 'other'},
                               headers={'Idempotency-Key': 'order-43'})
    assert status == 409 and "'order-43'" in body['error'] and first['id'] in body['error']
    status, _, body = web.post('/api/mails/batch', {'mails': [
        {**MAIL, 'to': 'c@example.com'}, {**MAIL, 'subject': 'x', 'idempotency_key': 'order-43'}]})
    assert status == 409
    assert redis_client.llen('mailq:q:mailers') == 1


def test_batch_is_all_or_nothing(web, redis_client):
    status, _, body = web.post('/api/mails/batch',
                               {'mails': [MAIL, {**MAIL, 'to': 'b@example.com'}]})
    assert status == 202 and len(body['ids']) == 2
    assert redis_client.llen('mailq:q:mailers') == 2
    status, _, body = web.post('/api/mails/batch', {'mails': [MAIL, {**MAIL, 'to': 'nope'}]})
    assert status == 422 and body['details']['field'] == 'mails[1].to'
    assert redis_client.llen('mailq:q:mailers') == 2


def test_cancel_a_queued_mail(web, redis_client):
    mail_id = web.post('/api/mails', MAIL)[2]['id']
    status, _, body = web.request('DELETE', f'/api/mails/{mail_id}')
    assert status == 200 and body['status'] == 'cancelled'
    assert redis_client.llen('mailq:q:mailers') == 0
    assert web.get(f'/api/mails/{mail_id}')[2]['status'] == 'cancelled'
    assert web.request('DELETE', '/api/mails/doesnotexist')[0] == 404


def test_stats_and_health(web):
    web.post('/api/mails', MAIL)
    web.post('/api/mails', {**MAIL, 'delay': 600})
    status, _, stats = web.get('/api/stats')
    assert status == 200
    assert stats == {'processed': 0, 'failed': 0, 'enqueued': 1, 'scheduled': 1, 'retrying': 0,
                     'dead': 0, 'held': 0, 'busy': 0, 'queues': {'mailers': 1, 'default': 0}}
    status, _, health = web.get('/healthz')
    assert status == 200 and health['ok'] is True and health['persistence'] is False
    assert 'appendonly' in health['warning']


@pytest.mark.parametrize('body, field', [
    ({**MAIL, 'to': 'not-an-address'}, 'to'),
    ({**MAIL, 'to': ['ok@example.com', 'bad@@example.com']}, 'to[1]'),
    ({**MAIL, 'cc': 'x@exa mple.com'}, 'cc'),
    ({**MAIL, 'from': 'a@example.com\r\nBcc: victim@example.com'}, 'from'),
    ({**MAIL, 'subject': 'Hi\r\nBcc: victim@example.com'}, 'subject'),
    ({**MAIL, 'headers': {'X-Tag': 'a\nBcc: victim@example.com'}}, 'headers.X-Tag'),
    ({**MAIL, 'headers': {'Bad Name': 'x'}}, 'headers.Bad Name'),
    ({**MAIL, 'headers': {'Bcc': 'x@example.com'}}, 'headers.Bcc'),
    ({'to': 'a@example.com', 'template': 'no_such_template'}, 'template'),
    ({'to': 'a@example.com', 'template': 'welcome', 'context': {}}, 'template'),  # name undefined
    ({**MAIL, 'queue': 'nope'}, 'queue'),
    ({**MAIL, 'send_at': '2026-12-01T08:00:00'}, 'send_at'),
    ({**MAIL, 'send_at': 'tomorrow'}, 'send_at'),
    ({**MAIL, 'delay': -5}, 'delay'),
    ({**MAIL, 'attachments': [{'filename': 'a.txt', 'content': 'not base64!'}]},
     'attachments[0].content'),
    ({**MAIL, 'surprise': 1}, 'surprise'),
    ({'to': 'a@example.com', 'text': 'no subject'}, 'subject'),
    ({'to': 'a@example.com', 'subject': 'no body'}, 'text'),
    ({'subject': 's', 'text': 't'}, 'to'),
    ([1, 2], 'body'),
])
def test_invalid_fields_are_422_naming_the_field(web, redis_client, body, field):
    status, headers, answer = web.post('/api/mails', body)
    assert status == 422, answer
    assert headers['Content-Type'].startswith('application/json')
    assert answer['details']['field'] == field
    assert answer['error']
    assert redis_client.llen('mailq:q:mailers') == 0


def test_attachments_are_encoded(web, redis_client):
    content = base64.b64encode(b'%PDF-1.4 fake').decode()
    status, _, body = web.post('/api/mails', {**MAIL, 'attachments': [
        {'filename': 'invoice.pdf', 'content_type': 'application/pdf', 'content': content}]})
    assert status == 202
    raw = stored_message(redis_client, body['id']).decode()
    assert 'Content-Type: application/pdf' in raw and 'filename="invoice.pdf"' in raw
    assert content in raw


def test_malformed_json_is_400(web):
    status, headers, body = web.post('/api/mails', raw=b'{"to": ')
    assert status == 400 and 'malformed JSON' in body['error']
    assert headers['Content-Type'].startswith('application/json')
    status, _, body = web.post('/api/mails', raw=b'{"to": "\xff\xfe"}')
    assert status == 400


def test_body_over_the_limit_is_413(tmp_ini, redis_url):
    ini = tmp_ini(redis={'url': redis_url}, limits={'max_body_bytes': '2048'},
                  templates={'path': str(REPO_ROOT / 'templates' / 'mail')})
    app = WebApp(ini)
    try:
        status, _, body = app.post('/api/mails', {**MAIL, 'text': 'x' * 5000})
        assert status == 413 and body['details']['limit'] == 2048
    finally:
        app.close()


def test_unknown_route_and_method_answer_json(web):
    status, headers, body = web.get('/api/nothing-here')
    assert status == 404 and headers['Content-Type'].startswith('application/json')
    status, _, body = web.request('PUT', '/api/mails')
    assert status == 405 and 'error' in body


def test_redis_down_is_503(tmp_ini):
    ini = tmp_ini(redis={'url': f'redis://127.0.0.1:{free_port()}/0'},
                  templates={'path': str(REPO_ROOT / 'templates' / 'mail')})
    app = WebApp(ini)
    try:
        status, _, body = app.post('/api/mails', MAIL)
        assert status == 503 and 'Redis unreachable' in body['error']
        assert app.get('/api/stats')[0] == 503
        status, _, body = app.get('/healthz')
        assert status == 503 and body['ok'] is False and body['redis'] == 'unreachable'
    finally:
        app.close()


def test_basic_auth_and_token_guard_everything_but_healthz(tmp_ini, redis_url):
    ini = tmp_ini(redis={'url': redis_url},
                  web={'username': 'ops', 'password': 's3cret', 'api_token': 'tok-123'},
                  templates={'path': str(REPO_ROOT / 'templates' / 'mail')})
    app = WebApp(ini)
    try:
        status, headers, body = app.post('/api/mails', MAIL)
        assert status == 401 and headers['WWW-Authenticate'].startswith('Basic')
        bad = 'Basic ' + base64.b64encode(b'ops:wrong').decode()
        assert app.get('/api/stats', headers={'Authorization': bad})[0] == 401
        good = 'Basic ' + base64.b64encode(b'ops:s3cret').decode()
        assert app.post('/api/mails', MAIL, headers={'Authorization': good})[0] == 202
        assert app.get('/api/stats', headers={'Authorization': 'Bearer tok-123'})[0] == 200
        assert app.get('/api/stats', headers={'Authorization': 'Bearer tok-12'})[0] == 401
        assert app.get('/healthz')[0] == 200
    finally:
        app.close()


def test_python_api_shares_the_path(mailq_ini, redis_client):
    import mailq
    from mailq.errors import ValidationError
    result = mailq.send(config=str(mailq_ini), to='ann@example.com', template='welcome',
                        context={'name': 'Ann'}, sender='Shop <shop@example.com>')
    assert result['status'] == 'queued'
    assert redis_client.hget(f'mailq:m:{result["id"]}', 'from') == b'shop@example.com'
    with pytest.raises(ValidationError) as err:
        mailq.send(config=str(mailq_ini), to='ann@example.com', template='nope')
    assert err.value.field == 'template'


@pytest.mark.parametrize('path, field', [
    ('/api/dead?page=1000000000000000000', 'page'),    # past Redis's 64-bit index
    ('/api/queues/mailers?page=1000000001', 'page'),
    ('/api/scheduled?page=0', 'page'),
    ('/api/stats/history?days=%B2', 'days'),            # '²' passes str.isdigit()
    ('/api/stats/history?days=' + '9' * 5000, 'days'),  # beyond int()'s digit limit
])
def test_bad_query_values_are_422_naming_the_parameter(web, path, field):
    status, headers, body = web.get(path)
    assert status == 422, body
    assert headers['Content-Type'].startswith('application/json')
    assert body['details']['field'] == field and body['error']


def test_the_last_allowed_page_is_empty_not_an_error(web):
    status, _, body = web.get('/api/dead?page=1000000000')
    assert status == 200 and body['rows'] == [] and body['page'] == 10 ** 9


def test_deeply_nested_json_is_400(web, redis_client):
    status, headers, body = web.post('/api/mails', raw=b'[' * 100000)
    assert status == 400 and body == {'error': 'malformed JSON: nested too deeply',
                                      'details': {}}
    assert headers['Content-Type'].startswith('application/json')


def wsgi_get(app, path, headers=None):
    """(status, headers, body, what went to wsgi.errors) of one GET through the WSGI app."""
    import io
    import wsgiref.util
    environ = {'PATH_INFO': path, 'REQUEST_METHOD': 'GET', 'wsgi.errors': io.StringIO(),
               **(headers or {})}
    wsgiref.util.setup_testing_defaults(environ)
    answer = {}
    body = b''.join(app(environ, lambda status, headers, *_: answer.update(
        status=int(status[:3]), headers=dict(headers))))
    return answer['status'], answer['headers'], body, environ['wsgi.errors'].getvalue()


def test_a_bug_in_a_route_is_logged_once_and_answered_json(web, caplog):
    """Through `logging` (JSON format, redaction), not Bottle's traceback on stderr."""
    from mailq.web.app import create_app
    app = create_app(web.runtime)

    @app.get('/api/boom')
    def boom():
        raise RuntimeError('boom 42')

    with caplog.at_level('ERROR', logger='mailq.web'):
        status, headers, body, stderr = wsgi_get(app, '/api/boom')
    assert status == 500 and json.loads(body) == {'error': 'internal error', 'details': {}}
    assert headers['Content-Type'].startswith('application/json')
    records = [r for r in caplog.records if r.exc_info]
    assert len(records) == 1 and records[0].name == 'mailq.web'
    assert 'boom 42' in str(records[0].exc_info[1])
    assert 'GET /api/boom' in records[0].getMessage() and stderr == ''
