"""Dashboard pages and actions, and the admin JSON API, against a real Redis.

Mails reach their states the real way: the API accepts them, and an
in-process Processor delivers them to the aiosmtpd server (or the outbox)
through the same store scripts a worker uses.
"""
import base64
import dataclasses
import http.client
import json
import re
import time
import urllib.parse

import pytest

from mailq import service
from mailq.heartbeat import Heartbeat, worker_info
from mailq.processor import Processor
from mailq.transport import create_transport
from support.ini import REPORT_JOB, smtp_section
from support.procs import REPO_ROOT

AUTH = 'Basic ' + base64.b64encode(b'admin:s3cret').decode()
PAGES = ('/', '/?days=7', '/?days=90', '/busy', '/queues', '/queues/mailers', '/scheduled',
         '/retrying', '/dead', '/outbox', '/cron', '/cron/report')


class Session:
    """A cookie-keeping HTTP client that does not follow redirects (like a browser tab)."""

    def __init__(self, url, auth=AUTH):
        parts = urllib.parse.urlsplit(url)
        self.host, self.port = parts.hostname, parts.port
        self.auth = auth
        self.cookies = {}

    def request(self, method, path, body=None, headers=None):
        conn = http.client.HTTPConnection(self.host, self.port, timeout=15)
        headers = dict(headers or {})
        if self.auth:
            headers.setdefault('Authorization', self.auth)
        if self.cookies:
            headers['Cookie'] = '; '.join(f'{k}={v}' for k, v in self.cookies.items())
        conn.request(method, path, body=body, headers=headers)
        resp = conn.getresponse()
        data = resp.read()
        for header in resp.headers.get_all('Set-Cookie') or []:
            name, _, rest = header.partition('=')
            self.cookies[name] = rest.split(';')[0]
        conn.close()
        return resp.status, resp.headers, data.decode('utf-8', 'replace')

    def get(self, path, **kw):
        return self.request('GET', path, **kw)

    def form(self, path, fields, token=True, headers=None):
        """POST a form the way the page would (with the page's CSRF token)."""
        fields = list(fields.items()) if isinstance(fields, dict) else list(fields)
        if token:
            fields.append(('csrf', self.token()))
        return self.request('POST', path, urllib.parse.urlencode(fields),
                            {'Content-Type': 'application/x-www-form-urlencoded',
                             **(headers or {})})

    def api(self, method, path, body=None, headers=None):
        status, hdrs, text = self.request(method, path, json.dumps(body) if body is not None
                                          else None, {'Content-Type': 'application/json',
                                                      **(headers or {})})
        return status, hdrs, json.loads(text) if 'json' in hdrs.get('Content-Type', '') else text

    def token(self, path='/queues'):
        return csrf_token(self.get(path)[2])


def csrf_token(html):
    return re.search(r'name="csrf" value="([^"]+)"', html).group(1)


@pytest.fixture
def ini(tmp_ini, redis_url, smtp_server):
    return tmp_ini(
        redis={'url': redis_url},
        worker={'queues': 'mailers, default', 'max_retries': '3', 'dead_max': '100'},
        smtp=smtp_section(smtp_server),
        web={'username': 'admin', 'password': 's3cret', 'api_token': 'tok3n'},
        templates={'path': str(REPO_ROOT / 'templates' / 'mail')},
        **REPORT_JOB)


@pytest.fixture
def rt(app):
    return app.runtime


@pytest.fixture
def browser(app):
    return Session(app.url)


def send(rt, **fields):
    data = {'to': 'ann@example.com', 'subject': 'Hello', 'text': 'Hi', **fields}
    return service.send(rt, data)['id']


def deliver_next(rt, queue='mailers', outbox=False):
    """What one worker thread does with the next mail of `queue`; returns its id."""
    transport = create_transport(dataclasses.replace(rt.config.smtp, transport='outbox')
                                 if outbox else rt.config.smtp)
    processor = Processor(rt.store, transport, rt.config.worker, rt.config.log, rt.new_task,
                          'testhost:1:feed01')
    fetched_queue, task, claim = rt.store.take(processor.worker_id, [queue],
                                               processor.busy_field())
    mail_id = json.loads(task)['args'][0]
    processor.process(mail_id, fetched_queue, task, claim)
    transport.close()
    return mail_id


def make_dead(rt, smtp_server, **fields):
    smtp_server.fail_rcpt(None, 550, '5.1.1 No such user')
    mail_id = send(rt, **fields)
    deliver_next(rt)
    smtp_server.fail_rcpt(None, None)
    return mail_id


def make_retrying(rt, smtp_server, **fields):
    smtp_server.fail_data(451, '4.3.0 Try again later')
    mail_id = send(rt, **fields)
    deliver_next(rt)
    return mail_id


def status_of(rt, mail_id):
    value = rt.redis.hget(rt.keys.record(mail_id), 'status')
    return value.decode() if value else None


# -- pages, headers, errors

def test_every_page_renders_with_security_headers(browser, rt, smtp_server):
    send(rt)
    send(rt, delay=3600)
    make_dead(rt, smtp_server)
    make_retrying(rt, smtp_server)
    for path in PAGES:
        status, headers, html = browser.get(path)
        assert status == 200, (path, html[:500])
        assert headers['Content-Type'].startswith('text/html')
        assert "script-src 'self'" in headers['Content-Security-Policy']
        assert "frame-ancestors 'none'" in headers['Content-Security-Policy']
        assert headers['X-Content-Type-Options'] == 'nosniff'
        assert headers['Cache-Control'] == 'no-store'
        assert headers['Referrer-Policy'] == 'same-origin'
        assert 'class="summary"' in html and 'Processed' in html and 'Dead' in html
        assert '<script>' not in html     # only <script src=/static/...>


def test_summary_bar_counts(browser, rt, smtp_server):
    send(rt)
    send(rt, delay=3600)
    make_dead(rt, smtp_server)
    html = browser.get('/busy')[2]
    counts = dict(re.findall(r'data-stat="(\w+)">([\d,]+)<', html))
    assert counts == {'processed': '1', 'failed': '1', 'busy': '0', 'enqueued': '1',
                      'scheduled': '1', 'retrying': '0', 'dead': '1'}


def test_static_assets_are_served_by_mailq(browser):
    status, headers, body = browser.get('/static/dashboard.js')
    assert status == 200 and 'javascript' in headers['Content-Type']
    assert 'fetch(' in body and 'localStorage' in body
    status, headers, _ = browser.get('/static/dashboard.css')
    assert status == 200 and headers['Content-Type'].startswith('text/css')
    assert browser.get('/static/nope.js')[0] == 404
    assert browser.get('/static/..%2fdashboard.py')[0] == 404


def test_dashboard_401_asks_the_browser_to_log_in_api_stays_json(app):
    anonymous = Session(app.url, auth=None)
    status, headers, body = anonymous.get('/dead')
    assert status == 401 and headers['WWW-Authenticate'].startswith('Basic realm="mailq"')
    assert headers['Content-Type'].startswith('text/html') and 'Dead' not in body
    status, headers, body = anonymous.get('/api/dead')
    assert status == 401 and headers['Content-Type'] == 'application/json'
    assert json.loads(body)['error'] == 'authentication required'
    wrong = Session(app.url, auth='Basic ' + base64.b64encode(b'admin:nope').decode())
    assert wrong.get('/')[0] == 401
    assert Session(app.url, auth='Bearer tok3n').get('/')[0] == 200


def test_errors_are_html_on_pages_and_json_in_the_api(browser):
    status, headers, html = browser.get('/no/such/page')
    assert status == 404 and headers['Content-Type'].startswith('text/html')
    assert '<h1>404</h1>' in html
    status, _, html = browser.get('/mails/doesnotexist')
    assert status == 404 and "no mail &#39;doesnotexist&#39;" in html
    status, headers, body = browser.api('GET', '/api/mails/doesnotexist/message')
    assert status == 404 and body['error'] == "no mail 'doesnotexist'"
    assert browser.get('/dead?page=zero')[0] == 422
    assert browser.api('GET', '/api/stats/history?days=12')[0] == 422


def test_hand_edited_urls_are_4xx_or_ignored_never_500(browser):
    status, headers, html = browser.get('/dead?page=1000000000000000000')
    assert status == 422 and headers['Content-Type'].startswith('text/html')
    assert 'page: must be between 1 and 1000000000' in html
    assert browser.get('/queues/mailers?page=1000000001')[0] == 422
    status, _, html = browser.get('/dead?did=delete&n=%B2&skipped=%B2')   # '²' is a digit
    assert status == 200 and 'Deleted' in html and 'skipped (they' not in html


def test_a_bug_in_a_page_is_logged_once_and_shown_as_a_500_page(app, caplog):
    """Logged through `logging` (JSON format, redaction), not as Bottle's raw traceback."""
    from mailq.web.app import create_app
    from test_api import wsgi_get
    wsgi = create_app(app.runtime)

    @wsgi.get('/boom')
    def boom():
        raise RuntimeError('boom 43')

    with caplog.at_level('ERROR', logger='mailq.web'):
        status, headers, body, stderr = wsgi_get(wsgi, '/boom', {'HTTP_AUTHORIZATION': AUTH})
    assert status == 500 and headers['Content-Type'].startswith('text/html')
    assert b'<h1>500</h1>' in body and b'boom 43' not in body and stderr == ''
    records = [r for r in caplog.records if r.exc_info]
    assert len(records) == 1 and records[0].name == 'mailq.web'
    assert 'GET /boom' in records[0].getMessage()


# -- CSRF and cross-site requests

def test_post_without_a_valid_token_is_refused(browser, rt):
    mail_id = send(rt, delay=3600)
    status, headers, html = browser.form('/scheduled/delete', {'one': mail_id}, token=False)
    assert status == 403 and 'CSRF' in html and headers['Content-Type'].startswith('text/html')
    forged = base64.urlsafe_b64encode(b'x' * 64).decode()
    assert browser.form('/scheduled/delete', [('one', mail_id), ('csrf', forged)],
                        token=False)[0] == 403
    other = Session(browser_url(browser))       # a token of another session
    other.get('/')
    assert browser.form('/scheduled/delete', [('one', mail_id), ('csrf', other.token())],
                        token=False)[0] == 403
    assert status_of(rt, mail_id) == 'scheduled'
    status, headers, _ = browser.form('/scheduled/delete', {'one': mail_id, 'back': '/scheduled'})
    assert status == 303 and headers['Location'].endswith('/scheduled?did=delete&n=1')
    assert status_of(rt, mail_id) is None


def browser_url(session):
    return f'http://{session.host}:{session.port}'


def test_tokens_are_masked_per_render(browser):
    first, second = browser.token(), browser.token()
    assert first != second
    for token in (first, second):
        assert browser.form('/queues/mailers/pause', [('csrf', token)], token=False)[0] == 303


def test_cross_site_posts_are_refused_even_with_a_token(browser, rt):
    mail_id = send(rt, delay=3600)
    token = browser.token()
    for headers in ({'Origin': 'https://evil.example'}, {'Sec-Fetch-Site': 'cross-site'},
                    {'Origin': 'null'}, {'Sec-Fetch-Site': 'same-site'}):
        status, _, html = browser.form('/scheduled/delete', [('one', mail_id), ('csrf', token)],
                                       token=False, headers=headers)
        assert status == 403 and 'cross-site' in html
    assert status_of(rt, mail_id) == 'scheduled'
    same = {'Origin': browser_url(browser), 'Sec-Fetch-Site': 'same-origin'}
    assert browser.form('/scheduled/delete', {'one': mail_id}, headers=same)[0] == 303
    assert status_of(rt, mail_id) is None


def test_api_posts_from_programs_need_no_token(app, rt):
    program = Session(app.url)                  # Basic auth header, no cookie
    mail_id = send(rt, delay=3600)
    status, _, body = program.api('POST', '/api/scheduled/enqueue', {'ids': [mail_id]})
    assert status == 200 and body == {'action': 'enqueue', 'done': 1, 'skipped': []}
    bearer = Session(app.url, auth='Bearer tok3n')
    assert bearer.api('POST', '/api/queues/default/pause')[0] == 200
    # cross-site is refused for the API too
    status, _, body = program.api('POST', '/api/queues/default/resume',
                                  headers={'Origin': 'https://evil.example'})
    assert status == 403 and 'cross-site' in body['error']


def test_api_posts_with_the_dashboard_cookie_need_the_token(browser, rt):
    browser.get('/')                              # now the client has a session cookie
    status, _, body = browser.api('POST', '/api/queues/default/pause')
    assert status == 403 and 'CSRF' in body['error']
    assert not rt.redis.sismember(rt.keys.paused, 'default')
    status, _, body = browser.api('POST', '/api/queues/default/pause',
                                  headers={'X-CSRF-Token': browser.token()})
    assert status == 200 and body == {'queue': 'default', 'paused': True}


# -- lists: pagination and filter

def test_lists_are_paginated_by_25_and_filterable(browser, rt):
    for i in range(60):
        send(rt, subject=f'Invoice {i:02d}' if i % 3 == 0 else f'News {i:02d}')
    html = browser.get('/queues/mailers')[2]
    assert html.count('name="id"') == 25 and 'page 1 of 3' in html and '60 mail(s)' in html
    assert 'rel="next"' in html and 'rel="last"' in html and 'rel="prev"' not in html
    html = browser.get('/queues/mailers?page=3')[2]
    assert html.count('name="id"') == 10 and 'rel="next"' not in html
    assert 'Invoice 00' in html         # newest first: the first mail is on the last page
    html = browser.get('/queues/mailers?q=invoice')[2]
    assert html.count('name="id"') == 20 and 'page 1 of 1' in html and 'News' not in html
    status, _, body = browser.api('GET', '/api/queues/mailers?q=INVOICE%2001&page=1')
    assert status == 200 and body['total'] == 0
    body = browser.api('GET', '/api/queues/mailers?q=invoice%2003')[2]
    assert body['total'] == 1 and body['rows'][0]['subject'] == 'Invoice 03'


def test_filter_pages_through_more_than_one_chunk(rt):
    """The filter runs in Redis chunk by chunk; its pages must be the matches, in
    list order, whatever chunk they fall in."""
    from mailq import admin
    ids = [send(rt, delay=3600 + n, subject=f'Match {n}' if n % 7 == 0 else f'Other {n}')
           for n in range(2100)]
    expected = ids[::7]                       # scheduled: the soonest first
    first = admin.listing(rt, 'scheduled', page=1, query='match')
    assert first['total'] == len(expected) == 300 and first['pages'] == 12
    got = [row['id'] for page in range(1, 13)
           for row in admin.listing(rt, 'scheduled', page=page, query='MATCH')['rows']]
    assert got == expected
    row = first['rows'][0]
    assert row['subject'] == 'Match 0'
    assert abs(row['at_ts'] - float(rt.store.get(ids[0]).fields['send_at'])) < 1e-3
    assert admin.listing(rt, 'scheduled', page=13, query='match')['rows'] == []


def test_a_filter_reads_a_bounded_window_and_search_older_goes_on(browser, rt, monkeypatch):
    """Each filtered page scans at most FILTER_SCAN members; the `scan` position it
    returns resumes where it stopped, and together the windows find every match once."""
    from mailq import admin
    from mailq.store import containers
    monkeypatch.setattr(containers, 'FILTER_SCAN', 1000)
    ids = [send(rt, delay=3600 + n, subject=f'Match {n}' if n % 7 == 0 else f'Other {n}')
           for n in range(2100)]
    found, scan, windows = [], 0, []
    while scan is not None:
        first = admin.listing(rt, 'scheduled', query='match', scan_from=scan)
        windows.append((scan, first['total']))
        for page in range(1, first['pages'] + 1):
            found += [row['id'] for row in admin.listing(rt, 'scheduled', page=page,
                                                         query='match', scan_from=scan)['rows']]
        scan = first['scan']['next']
    assert windows == [(0, 143), (1000, 143), (2000, 14)]
    assert found == ids[::7]
    html = browser.get('/scheduled?q=match&scan=1000&page=2')[2]
    assert 'match(es) in mails 1,001 to 2,000' in html
    assert 'href="/scheduled?q=match&amp;scan=2000" class="search-on"' in html
    assert 'href="/scheduled?q=match&amp;scan=1000" rel="first"' in html
    assert 'class="search-on"' not in browser.get('/scheduled?q=match&scan=2000')[2]
    assert browser.api('GET', '/api/scheduled?q=match&scan=-1')[0] == 422


def test_filter_matches_the_last_error(browser, rt, smtp_server):
    make_dead(rt, smtp_server, to='bob@example.com')
    send(rt)
    body = browser.api('GET', '/api/dead?q=no%20such%20user')[2]
    assert body['total'] == 1 and body['rows'][0]['to'] == 'bob@example.com'
    assert 'No such user' in body['rows'][0]['last_error']


# -- actions

def test_scheduled_send_now_and_delete(browser, rt):
    ids = [send(rt, delay=3600) for _ in range(4)]
    assert browser.form('/scheduled/enqueue', {'one': ids[0]})[0] == 303
    assert status_of(rt, ids[0]) == 'queued'
    assert rt.redis.llen(rt.keys.queue('mailers')) == 1
    status, _, _ = browser.form('/scheduled/delete', [('id', ids[1]), ('id', ids[2])])
    assert status == 303 and status_of(rt, ids[1]) is None and status_of(rt, ids[2]) is None
    assert rt.redis.zcard(rt.keys.schedule) == 1
    assert not rt.redis.exists(rt.keys.log(ids[1]))
    assert browser.form('/scheduled/retry', {'one': ids[3]})[0] == 422


def test_scheduled_send_all_now_and_delete_all(browser, rt):
    """The README promises actions "for all" on Scheduled, like Retrying and Dead."""
    ids = [send(rt, delay=3600) for _ in range(3)]
    html = browser.get('/scheduled')[2]
    for verb, label in (('enqueue', 'Send all now'), ('delete', 'Delete all')):
        assert re.search(rf'<button name="all" value="1" formaction="/scheduled/{verb}"'
                         rf'[^>]*>{label}</button>', html)
    form = html[html.index('<form method="post" id="rows"'):]
    assert form.index('name="csrf"') < form.index('Send all now') < form.index('</form>')
    status, headers, _ = browser.form('/scheduled/enqueue', {'all': '1', 'back': '/scheduled'})
    assert status == 303 and 'did=enqueue&n=3' in headers['Location']
    assert all(status_of(rt, i) == 'queued' for i in ids)
    assert rt.redis.zcard(rt.keys.schedule) == 0
    more = [send(rt, delay=3600) for _ in range(2)]
    assert browser.form('/scheduled/delete', {'all': '1'})[0] == 303
    assert all(status_of(rt, i) is None for i in more)
    assert all(status_of(rt, i) == 'queued' for i in ids)


def test_sent_now_mail_is_delivered_once(rt, smtp_server):
    mail_id = send(rt, delay=3600)
    from mailq import admin
    assert admin.act(rt, 'scheduled', 'enqueue', [mail_id])['done'] == 1
    assert admin.act(rt, 'scheduled', 'enqueue', [mail_id]) == {
        'action': 'enqueue', 'done': 0, 'skipped': [mail_id]}
    deliver_next(rt)
    assert smtp_server.wait_for(1)[0].rcpt_tos == ['ann@example.com']
    assert status_of(rt, mail_id) == 'sent'
    rt.store.move_due(now=time.time() + 7200)        # the old scheduled task is gone
    assert rt.redis.llen(rt.keys.queue('mailers')) == 0


def test_retrying_retry_kill_delete_and_all(browser, rt, smtp_server):
    ids = [make_retrying(rt, smtp_server) for _ in range(5)]
    html = browser.get('/retrying')[2]
    assert html.count('name="id"') == 5 and 'Try again later' in html
    assert browser.form('/retrying/retry', {'one': ids[0]})[0] == 303
    assert status_of(rt, ids[0]) == 'queued'
    assert rt.redis.hget(rt.keys.record(ids[0]), 'attempts') == b'1'   # kept for retry now
    assert browser.form('/retrying/kill', [('id', ids[1])])[0] == 303
    assert status_of(rt, ids[1]) == 'dead' and rt.redis.zscore(rt.keys.dead, ids[1])
    assert browser.form('/retrying/delete', {'one': ids[2]})[0] == 303
    assert status_of(rt, ids[2]) is None
    status, headers, _ = browser.form('/retrying/kill', {'all': '1', 'back': '/retrying'})
    assert status == 303 and 'did=kill&n=2' in headers['Location']
    assert rt.redis.zcard(rt.keys.retry) == 0 and rt.redis.zcard(rt.keys.dead) == 3
    # the queue got exactly one (fresh) task, for the mail retried now
    deliver_next(rt)
    assert status_of(rt, ids[0]) == 'sent'
    assert smtp_server.wait_for(1)


def test_dead_retry_gives_a_fresh_budget_and_delivers(browser, rt, smtp_server):
    mail_id = make_dead(rt, smtp_server)
    html = browser.get('/dead')[2]
    assert mail_id in html and 'No such user' in html
    assert browser.form('/dead/retry', {'one': mail_id})[0] == 303
    record = rt.store.get(mail_id).fields
    assert record['status'] == 'queued' and record['attempts'] == '0'
    assert rt.redis.zscore(rt.keys.dead, mail_id) is None
    deliver_next(rt)
    assert smtp_server.wait_for(1) and status_of(rt, mail_id) == 'sent'
    assert [a['outcome'] for a in rt.store.get(mail_id).attempts] == ['dead', 'sent']


def test_dead_retry_all_and_delete_all(browser, rt, smtp_server):
    ids = [make_dead(rt, smtp_server) for _ in range(3)]
    status, _, body = browser.api('POST', '/api/dead/retry', {'all': True},
                                  headers={'X-CSRF-Token': browser.token()})
    assert status == 200 and body['done'] == 3
    assert rt.redis.llen(rt.keys.queue('mailers')) == 3
    for _ in ids:
        smtp_server.fail_rcpt(None, 550)
        deliver_next(rt)
    smtp_server.fail_rcpt(None, None)
    assert rt.redis.zcard(rt.keys.dead) == 3
    assert browser.form('/dead/delete', {'all': '1'})[0] == 303
    assert rt.redis.zcard(rt.keys.dead) == 0 and all(status_of(rt, i) is None for i in ids)


def test_queue_delete_clear_pause_resume(browser, rt):
    ids = [send(rt) for _ in range(30)]
    other = send(rt, queue='default')
    assert browser.form('/queues/mailers/delete', {'one': ids[0]})[0] == 303
    assert status_of(rt, ids[0]) is None and rt.redis.llen(rt.keys.queue('mailers')) == 29
    html = browser.get('/queues')[2]
    assert '/queues/mailers/pause' in html and '29' in html
    assert browser.form('/queues/mailers/pause', {})[0] == 303
    assert rt.redis.sismember(rt.keys.paused, 'mailers')
    assert 'paused' in browser.get('/queues/mailers')[2]
    assert rt.store.take('w:1:x', ['mailers', 'default'], 't1')[0] == 'default'   # skips paused
    assert browser.form('/queues/mailers/resume', {})[0] == 303
    assert not rt.redis.sismember(rt.keys.paused, 'mailers')
    assert browser.form('/queues/mailers/clear', {})[0] == 303
    assert rt.redis.llen(rt.keys.queue('mailers')) == 0
    assert all(status_of(rt, i) is None for i in ids)
    assert status_of(rt, other) == 'sending'        # taken above, in flight: untouched
    assert rt.redis.llen(rt.keys.inflight('w:1:x')) == 1
    assert browser.form('/queues/nope/pause', {})[0] == 404


def test_queue_latency_is_the_age_of_the_oldest_mail(browser, rt):
    send(rt)
    rt.redis.hset(rt.keys.record(json.loads(rt.redis.lindex(rt.keys.queue('mailers'), -1))
                                 ['args'][0]), 'created_at', time.time() - 120)
    send(rt)
    queues = {q['name']: q for q in browser.api('GET', '/api/queues')[2]['queues']}
    assert queues['mailers']['size'] == 2 and 119 <= queues['mailers']['latency'] < 600
    assert queues['default'] == {'name': 'default', 'size': 0, 'paused': False, 'latency': 0.0}


def test_outbox_list_detail_delete_and_clear(browser, rt):
    attachment = {'filename': 'report.csv', 'content_type': 'text/csv',
                  'content': base64.b64encode(b'a,b\n1,2\n').decode()}
    with_file = send(rt, subject='With file', attachments=[attachment])
    deliver_next(rt, outbox=True)
    plain = send(rt, subject='Plain')
    deliver_next(rt, outbox=True)
    html = browser.get('/outbox')[2]
    assert 'With file' in html and 'Plain' in html and html.count('📎') == 1
    html = browser.get(f'/mails/{with_file}')[2]
    assert 'report.csv' in html
    status, headers, body = browser.get(f'/mails/{with_file}/attachments/0')
    assert status == 200 and body == 'a,b\n1,2\n'
    assert headers['Content-Disposition'].startswith('attachment; filename="report.csv"')
    assert browser.form('/outbox/delete', {'one': plain})[0] == 303
    assert rt.redis.zcard(rt.keys.outbox) == 1 and status_of(rt, plain) is None
    assert browser.form('/outbox/delete', {'all': '1'})[0] == 303
    assert rt.redis.zcard(rt.keys.outbox) == 0 and status_of(rt, with_file) is None


def test_mail_detail_sandboxes_html_and_shows_attempts(browser, rt, smtp_server):
    html_part = '<p id="x">Hi</p><script>parent.document.title="pwned"</script>'
    mail_id = make_retrying(rt, smtp_server, html=html_part, subject='Sandbox <b>me</b>')
    status, headers, page = browser.get(f'/mails/{mail_id}')
    assert status == 200
    iframe = re.search(r'<iframe[^>]*>', page).group(0)
    assert 'sandbox=""' in iframe and 'allow-scripts' not in iframe
    assert 'srcdoc="&lt;p id=&#34;x&#34;&gt;Hi&lt;/p&gt;&lt;script&gt;' in iframe
    assert '<script>parent' not in page and 'Sandbox &lt;b&gt;me&lt;/b&gt;' in page
    assert '451' in page and 'Try again later' in page     # the attempt's SMTP reply
    assert 'Message-ID' in page and 'ann@example.com' in page
    assert '/mails/%s/retry' % mail_id in page and '/mails/%s/kill' % mail_id in page
    status, headers, raw = browser.get(f'/mails/{mail_id}/raw')
    assert status == 200 and headers['Content-Type'] == 'message/rfc822'
    assert "sandbox" in headers['Content-Security-Policy'] and 'Subject: Sandbox' in raw


def test_mail_actions_follow_its_state(browser, rt, smtp_server):
    dead = make_dead(rt, smtp_server)
    queued = send(rt)
    status, _, body = browser.api('POST', f'/api/mails/{queued}/kill',
                                  headers={'X-CSRF-Token': browser.token()})
    assert status == 409 and 'queued' in body['error']
    assert browser.form(f'/mails/{dead}/retry', {'back': f'/mails/{dead}'})[0] == 303
    assert status_of(rt, dead) == 'queued'
    status, headers, _ = browser.form(f'/mails/{dead}/delete', {'back': '/queues/mailers'})
    assert status == 303 and '/queues/mailers?did=delete' in headers['Location']
    assert status_of(rt, dead) is None
    assert browser.form(f'/mails/{dead}/delete', {})[0] == 404
    status, _, html = browser.form(f'/mails/{queued}/enqueue', {})
    assert status == 409 and 'not possible' in html


def test_redirect_back_stays_on_this_site(browser, rt):
    mail_id = send(rt, delay=3600)
    status, headers, _ = browser.form('/scheduled/enqueue', {'one': mail_id,
                                                            'back': '//evil.example/x'})
    target = urllib.parse.urlsplit(headers['Location'])
    assert status == 303 and target.path == '/' and target.query.startswith('did=enqueue')
    assert target.netloc == f'{browser.host}:{browser.port}'


# -- busy, overview, cron

def test_busy_shows_workers_and_delivers_quiet_and_stop(browser, rt):
    quiet, stopped = [], []
    beat = Heartbeat(rt.store, 'testhost:4242:abcdef',
                     worker_info('testhost', 5, [('mailers', 0)], 'thread'), rt.config.worker,
                     on_quiet=lambda: quiet.append(1), on_stop=lambda: stopped.append(1))
    beat.beat()
    rt.redis.hset(rt.keys.busy(beat.worker_id), '4242:1', json.dumps(
        {'id': 'abc123', 'queue': 'mailers', 'to': 'zoe@example.com', 'subject': 'Now',
         'since': time.time() - 3}))
    html = browser.get('/busy')[2]
    assert 'testhost:4242' in html and 'zoe@example.com' in html and 'abc123' in html
    assert browser.form('/busy/quiet', {'worker': beat.worker_id})[0] == 303
    beat.beat()
    assert quiet == [1] and 'quiet' in browser.get('/busy')[2]
    status, _, body = browser.api('POST', f'/api/workers/{beat.worker_id}/stop',
                                  headers={'X-CSRF-Token': browser.token()})
    assert status == 202 and body['command'] == 'stop'
    beat.beat()
    assert stopped == [1]
    assert browser.form('/busy/stop', {'worker': 'gone:1:x'})[0] == 404
    workers = browser.api('GET', '/api/workers')[2]['workers']
    assert workers[0]['host'] == 'testhost' and workers[0]['busy'][0]['id'] == 'abc123'


def test_overview_history_and_redis_box(browser, rt):
    today = time.strftime('%Y-%m-%d', time.gmtime())
    rt.redis.set(rt.keys.stat('processed', today), 12)
    rt.redis.set(rt.keys.stat('failed', today), 3)
    rt.redis.hset(rt.keys.stat('outcomes', today), mapping={
        'sent': 9, 'retrying': 2, 'dead': 1, 'queue:mailers': 10, 'queue:default': 2})
    days = browser.api('GET', '/api/stats/history?days=7')[2]['days']
    assert len(days) == 7 and days[-1] == {'day': today, 'processed': 12, 'failed': 3,
                                           'sent': 9, 'retrying': 2, 'dead': 1,
                                           'queues': {'mailers': 10, 'default': 2}}
    assert days[0]['sent'] == 0 and days[0]['queues'] == {'mailers': 0, 'default': 0}
    assert len(browser.api('GET', '/api/stats/history?days=180')[2]['days']) == 180
    assert browser.api('GET', '/api/stats/history?days=365')[0] == 422
    html = browser.get('/?days=7')[2]
    assert f'{today}: 12 processed, 3 failed' in html and 'poll-interval' in html
    assert 'persistence' in html.lower() and 'appendonly yes' in html   # test Redis: no disk
    info = browser.api('GET', '/api/redis')[2]
    assert info['persistence'] is False and info['version']


def test_cron_page_run_now_pause_resume(browser, rt):
    html = browser.get('/cron')[2]
    assert 'report' in html and '0 8 * * *' in html
    status, headers, _ = browser.form('/cron/report/run', {'back': '/cron'})
    assert status == 303 and 'did=run' in headers['Location']
    assert rt.redis.llen(rt.keys.queue('mailers')) == 1
    assert browser.form('/cron/report/pause', {'back': '/cron'})[0] == 303
    assert 'paused' in browser.get('/cron/report')[2]
    assert browser.form('/cron/report/resume', {'back': '/cron'})[0] == 303
    html = browser.get('/cron/report')[2]
    assert 'Run history' in html and 'ok' in html
    assert browser.get('/cron/nope')[0] == 404
