"""The web layer's structure (issue 10, item 2), called through WSGI on a real Redis:
each error carries its HTTP status, and the security checks belong to app.py."""
import io
import json
from wsgiref.util import setup_testing_defaults

import pytest

from mailq import errors
from mailq.config import load
from mailq.runtime import Runtime
from mailq.web import admin_api, api, app as web_app, dashboard
from mailq.web.api import api_route
from support.redis_tuned import TunedRedisServer


class Gone(errors.NotFound):
    """A subclass nobody listed anywhere: it must still be a 404."""


def wsgi(application, method, path, body=b'', **headers):
    """(status code, headers, body text) of one request through the WSGI interface."""
    environ = {'REQUEST_METHOD': method, 'PATH_INFO': path, 'wsgi.input': io.BytesIO(body),
               'CONTENT_LENGTH': str(len(body))}
    environ.update({'HTTP_' + k.upper(): v for k, v in headers.items()})
    if 'HTTP_CONTENT_TYPE' in environ:
        environ['CONTENT_TYPE'] = environ.pop('HTTP_CONTENT_TYPE')
    setup_testing_defaults(environ)
    answer = {}
    chunks = application(environ, lambda status, hdrs, *_: answer.update(
        status=int(status.split()[0]), headers=dict(hdrs)))
    return answer['status'], answer['headers'], b''.join(chunks).decode()


@pytest.fixture
def rt(tmp_ini, redis_url):
    return Runtime(load(str(tmp_ini(redis={'url': redis_url}))))


def test_every_error_class_carries_its_status():
    assert [cls('f', 'm').http_status if cls is errors.ValidationError else cls('m').http_status
            for cls in (errors.ValidationError, errors.NotFound, errors.Conflict,
                        errors.Unavailable, errors.ConfigError)] == [422, 404, 409, 503, 500]
    assert Gone('x').http_status == 404


def test_a_subclass_gets_its_parents_status_in_the_api():
    @api_route
    def route():
        raise Gone('no such thing')
    answer = route()
    assert answer.status_code == 404
    assert json.loads(answer.body) == {'error': 'no such thing', 'details': {}}


def test_a_subclass_gets_its_parents_status_on_a_page(rt):
    """Today's ERROR_STATUS[type(exc)] raised KeyError here, so the page was a 500."""
    application = web_app.create_app(rt)

    @application.get('/gone')
    @dashboard.page(rt)
    def gone():
        raise Gone('that one is gone')
    status, headers, html = wsgi(application, 'GET', '/gone')
    assert status == 404 and headers['Content-Type'].startswith('text/html')
    assert 'that one is gone' in html


def test_the_api_is_guarded_without_the_dashboard(rt, monkeypatch):
    """CSRF and Origin checks come from app.py, not from installing the dashboard."""
    monkeypatch.setattr(web_app, 'ROUTES', (api, admin_api))
    application = web_app.create_app(rt)
    assert not any(route.rule == '/' for route in application.routes)
    status, _, body = wsgi(application, 'POST', '/api/queues/default/pause',
                           cookie='mailq_session=' + 'x' * 40)
    assert status == 403 and 'CSRF' in json.loads(body)['error']
    status, _, body = wsgi(application, 'POST', '/api/queues/default/pause',
                           origin='https://evil.example')
    assert status == 403 and 'cross-site' in json.loads(body)['error']
    status, headers, _ = wsgi(application, 'POST', '/api/queues/default/pause')
    assert status == 200 and headers['X-Frame-Options'] == 'DENY'
    assert rt.redis.sismember(rt.keys.paused, 'default')


def test_the_web_starts_while_redis_refuses_writes(tmp_ini, tmp_path, caplog):
    """A Redis that answers but refuses for now (NOREPLICAS here: min-replicas-to-write
    with no replica; LOADING, BUSY, OOM and MISCONF alike) is an outage at start, as for
    the worker: the web says so and serves, the API answering 503 until Redis is back,
    instead of failing to start on the first write."""
    server = TunedRedisServer('--min-replicas-to-write', '1', tmpdir=tmp_path).start()
    try:
        rt = Runtime(load(str(tmp_ini(redis={'url': server.url}))))
        serve = web_app.bind(rt, '127.0.0.1', 0, place=False)
        serve.keywords['sockets'][0].close()
        assert 'NOREPLICAS' in caplog.text
        status, _, body = wsgi(web_app.create_app(rt), 'POST', '/api/mails',
                               json.dumps({'to': 'a@example.com', 'subject': 's',
                                           'text': 't'}).encode(),
                               content_type='application/json')
        assert status == 503, body
    finally:
        server.cleanup()


def test_one_table_of_history_ranges():
    """?days= is checked against the ranges admin.history draws, not a copy of them."""
    from mailq import admin
    from mailq.web import params
    assert params.HISTORY_DAYS is admin.HISTORY_DAYS


def both_paths(rt, body, **headers):
    """The same request through the hot route (hot.py) and through Bottle alone:
    [(status, headers, JSON body)] of each."""
    application = web_app.create_app(rt)
    answers = []
    for served in (application, application.wsgi):     # wsgi(): Bottle's own entry
        status, hdrs, text = wsgi(served, 'POST', '/api/mails', body, **headers)
        answers.append((status, hdrs, json.loads(text)))
    return answers


def mail_body(**fields):
    return json.dumps({'to': 'a@example.com', 'subject': 's', 'text': 't', **fields}).encode()


JSON = {'content_type': 'application/json'}


@pytest.mark.parametrize('body, headers', [
    (mail_body(), JSON),
    (mail_body(), {}),                                            # no Content-Type
    (mail_body(), {'content_type': 'application/merge-patch+json; charset=utf-8'}),
    (mail_body(to='not an address'), JSON),                       # 422 naming the field
    (mail_body(queue='nope'), JSON),
    (b'{"to": ', JSON),                                           # malformed: Bottle's 400
    (b'\xff\xfe', JSON),
    (b'[' * 100000, JSON),
    (b'x' * (10 * 1024 * 1024 + 1), JSON),                        # over the limit: 413
    (mail_body(), {'content_type': 'text/plain'}),                # 415
    (mail_body(), {**JSON, 'host': 'evil.example'}),              # DNS rebinding: 400
    (mail_body(), {**JSON, 'cookie': 'mailq_session=' + 'x' * 40}),   # CSRF: 403
    (mail_body(), {**JSON, 'origin': 'https://evil.example'}),    # cross-site: 403
    (mail_body(), {**JSON, 'sec_fetch_site': 'cross-site'}),
])
def test_the_hot_route_answers_as_bottle_does(rt, body, headers):
    """POST /api/mails skips Bottle when every check would pass; either way the status,
    the headers (security headers included) and the shape of the answer are the same."""
    (status, hot_headers, hot), (bottle_status, bottle_headers, plain) = both_paths(
        rt, body, **headers)
    assert (status, hot_headers.keys()) == (bottle_status, bottle_headers.keys())
    assert {k: v for k, v in hot_headers.items() if k != 'Content-Length'} == \
        {k: v for k, v in bottle_headers.items() if k != 'Content-Length'}
    if status == 202:
        assert hot.keys() == plain.keys() and hot['status'] == plain['status'] == 'queued'
    else:
        assert hot == plain


def test_the_hot_route_reads_the_idempotency_key_header(rt):
    body = mail_body()
    (_, _, first), (_, _, again) = both_paths(rt, body, **JSON, idempotency_key='k1')
    (_, _, third), _ = both_paths(rt, body, **JSON, idempotency_key='k1')
    assert again == third
    assert again['id'] == third['id'] == first['id'] and third['duplicate'] is True
    (status, _, conflict), (plain_status, _, plain) = both_paths(
        rt, mail_body(subject='other'), **JSON, idempotency_key='k1')
    assert status == plain_status == 409 and conflict == plain


def test_the_hot_route_needs_the_login_when_one_is_set(tmp_ini, redis_url):
    rt = Runtime(load(str(tmp_ini(redis={'url': redis_url},
                                  web={'api_token': 't' * 32}))))
    (status, headers, body), (plain_status, _, plain) = both_paths(rt, mail_body(), **JSON)
    assert status == plain_status == 401 and body == plain
    assert headers['Www-Authenticate'].startswith('Basic')     # Bottle's spelling
    (status, _, body), _ = both_paths(rt, mail_body(), **JSON,
                                      authorization='Bearer ' + 't' * 32)
    assert status == 202 and body['status'] == 'queued'


def test_a_bug_behind_the_hot_route_is_a_logged_json_500(rt, monkeypatch, caplog):
    from mailq import service

    def broken(*args, **kwargs):
        raise KeyError('a bug')
    monkeypatch.setattr(service, 'send', broken)
    (status, headers, body), (plain_status, plain_headers, plain) = both_paths(
        rt, mail_body(), **JSON)
    assert status == plain_status == 500 and body == plain == {'error': 'internal error',
                                                                 'details': {}}
    assert headers['Content-Type'] == plain_headers['Content-Type'] == 'application/json'
    assert caplog.text.count('unhandled error in POST /api/mails') == 2


def test_the_hot_route_takes_only_what_every_check_lets_through(rt):
    hot = web_app.create_app(rt).hot

    def environ(body=mail_body(), **headers):
        env = {'REQUEST_METHOD': 'POST', 'PATH_INFO': '/api/mails',
               'wsgi.input': io.BytesIO(body), 'CONTENT_LENGTH': str(len(body)),
               'CONTENT_TYPE': 'application/json', 'HTTP_HOST': '127.0.0.1:8080'}
        env.update(headers)
        return env
    assert hot(environ())[0] == '202 Accepted'
    assert hot(environ(mail_body(to='x')))[0] == '422 Unprocessable Entity'
    for refused in ({'HTTP_COOKIE': 'a=b'}, {'HTTP_ORIGIN': 'http://127.0.0.1:8080'},
                    {'HTTP_SEC_FETCH_SITE': 'same-origin'}, {'HTTP_HOST': 'evil.example'},
                    {'CONTENT_TYPE': 'text/plain'}, {'CONTENT_LENGTH': ''},
                    {'HTTP_TRANSFER_ENCODING': 'chunked'}, {'REQUEST_METHOD': 'PUT'},
                    {'PATH_INFO': '/api/mails/batch'}):
        assert hot(environ(**refused)) is None, refused
    malformed = environ(b'{"to":')
    assert hot(malformed) is None and malformed['wsgi.input'].read() == b'{"to":'
