"""Issue 11 against real `python mailq.py web` processes and a private redis-server:
DNS rebinding (Host), slow clients, `back` redirects, what anonymous /healthz shows,
raw message downloads, 415 for non-JSON bodies, and distinct 401 messages."""
import base64
import http.client
import json
import re
import socket
import sys
import time
import urllib.parse

import pytest

from support.ini import write_ini
from support.procs import REPO_ROOT, free_port, start_process, stop_process, wait_http
from support.records import record_ids
from support.web_proc import WebProcess

USER, PASSWORD = 'admin', 'hard-s3cret'
MAIL = {'to': 'v@example.com', 'subject': 'x', 'text': 'y'}


def basic(user=USER, password=PASSWORD):
    return 'Basic ' + base64.b64encode(f'{user}:{password}'.encode()).decode()


def call(web, method, path, body=None, headers=None, timeout=10):
    """(status, headers with lower-case names, parsed JSON or text): exactly the given
    headers (http.client adds Host only when none is given), body as given."""
    conn = http.client.HTTPConnection('127.0.0.1', web.port, timeout=timeout)
    try:
        conn.request(method, path, body=body, headers=headers or {})
        resp = conn.getresponse()
        raw = resp.read().decode('utf-8', 'replace')
        answer = {k.lower(): v for k, v in resp.getheaders()}
        if 'json' in answer.get('content-type', ''):
            return resp.status, answer, json.loads(raw)
        return resp.status, answer, raw
    finally:
        conn.close()


def post_json(web, path, data, **headers):
    return call(web, 'POST', path, json.dumps(data).encode(),
                {'Content-Type': 'application/json', **headers})


def mails_in(redis_server, prefix):
    return len(record_ids(redis_server.client(), prefix))


@pytest.fixture(scope='module')
def open_web(redis_server, tmp_path_factory):
    """The default set-up: loopback, no credentials, transport = outbox."""
    ini = write_ini(tmp_path_factory.mktemp('open') / 'mailq.ini', {
        'redis': {'url': redis_server.url, 'prefix': 'open'}})
    web = WebProcess(ini)
    yield web
    web.stop()


@pytest.fixture(scope='module')
def authed_web(redis_server, tmp_path_factory):
    ini = write_ini(tmp_path_factory.mktemp('authed') / 'secret-name.ini', {
        'redis': {'url': redis_server.url, 'prefix': 'authed'},
        'web': {'username': USER, 'password': PASSWORD,
                'allowed_hosts': 'mailq.example, .example.org'}})
    web = WebProcess(ini)
    yield web
    web.stop()


# -- 1. DNS rebinding: the Host header must name this server

def test_a_rebinding_page_can_neither_send_nor_read(open_web, redis_server):
    """The issue's curl lines: a page served as attacker.example, resolved to 127.0.0.1."""
    before = mails_in(redis_server, 'open')
    evil = f'attacker.example:{open_web.port}'
    status, headers, body = call(open_web, 'POST', '/api/mails', json.dumps(MAIL).encode(), {
        'Host': evil, 'Origin': f'http://{evil}', 'Sec-Fetch-Site': 'same-origin',
        'Content-Type': 'text/plain'})
    assert status == 400 and headers['content-type'] == 'application/json'
    assert 'allowed_hosts' in body['error'] and body['details'] == {'header': 'Host'}
    assert mails_in(redis_server, 'open') == before
    for path in ('/api/outbox', '/outbox', '/healthz', '/no/such/route', '/static/app.js'):
        status, headers, body = call(open_web, 'GET', path, headers={'Host': evil})
        assert status == 400 and headers['content-type'] == 'application/json', path
    for host in ('attacker.example', '127.0.0.1.attacker.example', '127.0.0.2', '', '[::1'):
        assert call(open_web, 'GET', '/api/stats', headers={'Host': host})[0] == 400, host


def test_loopback_names_and_the_listed_hosts_are_served(open_web, authed_web):
    port = open_web.port
    for host in (f'127.0.0.1:{port}', f'localhost:{port}', f'LOCALHOST.:{port}',
                 f'[::1]:{port}', '127.0.0.1'):
        assert call(open_web, 'GET', '/api/stats', headers={'Host': host})[0] == 200, host
    auth = {'Authorization': basic()}
    for host in ('mailq.example', 'mailq.example:8443', 'example.org', 'a.b.example.org'):
        status, _, _ = call(authed_web, 'GET', '/api/stats', headers={'Host': host, **auth})
        assert status == 200, host
    for host in ('mailq.example.evil', 'evilexample.org', 'attacker.example'):
        status, _, _ = call(authed_web, 'GET', '/api/stats', headers={'Host': host, **auth})
        assert status == 400, host


@pytest.mark.parametrize('where', ['config', 'flag'])
def test_the_address_mailq_listens_on_is_an_allowed_host(redis_server, tmp_path, where):
    """By default allowed_hosts also holds the configured host ([web] host or --host)."""
    port = free_port()
    web = {'host': '127.0.0.2'} if where == 'config' else {}
    ini = write_ini(tmp_path / 'mailq.ini', {
        'redis': {'url': redis_server.url, 'prefix': 'bound'}, 'web': web})
    flags = ['--host', '127.0.0.2'] if where == 'flag' else []
    proc = start_process([sys.executable, REPO_ROOT / 'mailq.py', 'web', '-c', ini,
                          '--port', port, *flags])
    try:
        wait_http(f'http://127.0.0.2:{port}/healthz')
        for host, wanted in ((f'127.0.0.2:{port}', 200), ('127.0.0.2', 200),
                             (f'localhost:{port}', 200), (f'127.0.0.3:{port}', 400)):
            conn = http.client.HTTPConnection('127.0.0.2', port, timeout=10)
            conn.request('GET', '/api/stats', headers={'Host': host})
            assert conn.getresponse().status == wanted, host
            conn.close()
    finally:
        stop_process(proc)


def test_the_host_check_comes_before_the_login(authed_web):
    status, headers, body = call(authed_web, 'GET', '/api/stats',
                                 headers={'Host': 'attacker.example'})
    assert status == 400 and 'www-authenticate' not in headers and 'Host' in body['error']
    assert call(authed_web, 'GET', '/api/stats', headers={'Host': '127.0.0.1'})[0] == 401


def test_origin_must_match_scheme_host_and_port(open_web, redis_server):
    here = f'127.0.0.1:{open_web.port}'
    before = mails_in(redis_server, 'open')
    for origin in (f'https://{here}', f'http://{here}0', 'http://127.0.0.1',
                   f'http://localhost:{open_web.port}', 'null'):
        status, _, body = post_json(open_web, '/api/mails', MAIL, Host=here, Origin=origin)
        assert status == 403 and 'cross-site' in body['error'], origin
    assert mails_in(redis_server, 'open') == before
    status, _, body = post_json(open_web, '/api/mails', MAIL, Host=here, Origin=f'http://{here}')
    assert status == 202 and body['status'] == 'queued'


def test_behind_a_trusted_proxy_the_https_origin_matches(redis_server, tmp_path, open_web):
    """TLS ends at the proxy: X-Forwarded-Proto is believed from [web] trusted_proxy only."""
    ini = write_ini(tmp_path / 'mailq.ini', {
        'redis': {'url': redis_server.url, 'prefix': 'proxied'},
        'web': {'allowed_hosts': 'mailq.example', 'trusted_proxy': '127.0.0.1'}})
    proxied = WebProcess(ini)
    try:
        headers = {'Host': 'mailq.example', 'Origin': 'https://mailq.example',
                   'X-Forwarded-Proto': 'https'}
        assert post_json(proxied, '/api/mails', MAIL, **headers)[0] == 202
        assert post_json(proxied, '/api/mails', MAIL, **{
            **headers, 'Origin': 'http://mailq.example'})[0] == 403
    finally:
        proxied.stop()
    here = f'127.0.0.1:{open_web.port}'           # no trusted proxy: the header is dropped
    status, _, body = post_json(open_web, '/api/mails', MAIL, Host=here,
                                Origin=f'https://{here}', **{'X-Forwarded-Proto': 'https'})
    assert status == 403 and 'cross-site' in body['error']


# -- 2. slow clients

def half_open(port, count):
    """`count` connections that each sent half a request and then nothing."""
    socks = []
    for _ in range(count):
        sock = socket.create_connection(('127.0.0.1', port), timeout=5)
        sock.sendall(b'GET /healthz HTTP/1.1\r\nHost: 127.0.0.1\r\nX-Slow: ')
        socks.append(sock)
    return socks


def timed_healthz(web, timeout=5):
    """Seconds /healthz took to answer 200 (inf when it did not within `timeout`)."""
    start = time.monotonic()
    try:
        status = call(web, 'GET', '/healthz', timeout=timeout)[0]
    except OSError:         # socket.timeout: still waiting in the listen backlog
        return float('inf')
    assert status == 200
    return time.monotonic() - start


def test_healthz_answers_in_under_a_second_with_300_half_open_connections(open_web):
    socks = half_open(open_web.port, 300)
    try:
        time.sleep(1)                   # let the server accept them all
        took = [timed_healthz(open_web) for _ in range(5)]
        print(f'/healthz under 300 half-open connections: {max(took) * 1000:.0f} ms (max of 5)')
        assert max(took) < 1.0, took
        still_open = sum(1 for s in socks if _is_open(s))
        assert still_open == 300        # they were held, not refused
    finally:
        for sock in socks:
            sock.close()


def _is_open(sock):
    sock.setblocking(False)
    try:
        return sock.recv(1) != b''
    except BlockingIOError:
        return True
    except OSError:
        return False
    finally:
        sock.setblocking(True)


def test_connection_limit_is_the_configured_one(redis_server, tmp_path):
    """[web] connection_limit reaches waitress: past it, /healthz waits in the backlog
    (the control for the test above, whose 300 fit under the default 1000)."""
    ini = write_ini(tmp_path / 'mailq.ini', {
        'redis': {'url': redis_server.url, 'prefix': 'limited'},
        'web': {'connection_limit': '10'}})
    web = WebProcess(ini)
    try:
        socks = half_open(web.port, 12)
        time.sleep(1)
        assert timed_healthz(web, timeout=2) == float('inf')
        for sock in socks:
            sock.close()
        time.sleep(1)
        assert timed_healthz(web) < 1.0
    finally:
        web.stop()


def test_idle_connections_are_closed_after_channel_timeout(redis_server, tmp_path):
    ini = write_ini(tmp_path / 'mailq.ini', {
        'redis': {'url': redis_server.url, 'prefix': 'slow'},
        'web': {'channel_timeout': '1', 'cleanup_interval': '0.5'}})
    web = WebProcess(ini)
    try:
        sock = half_open(web.port, 1)[0]
        sock.settimeout(10)
        start = time.monotonic()
        assert sock.recv(100) == b''        # closed by the server, not answered
        assert time.monotonic() - start < 5
        sock.close()
    finally:
        web.stop()


# -- 3. `back` stays on this site

def form_session(web):
    """(cookie header, CSRF token) of a browser that loaded a page."""
    status, headers, html = call(web, 'GET', '/busy')
    assert status == 200
    cookie = headers['set-cookie'].split(';')[0]
    return cookie, re.search(r'name="csrf" value="([^"]+)"', html).group(1)


@pytest.mark.parametrize('back, path, query', [
    ('/\t/evil.example', '/', 'did=quiet'),
    ('/\n/evil.example', '/', 'did=quiet'),
    ('/\r\n/evil.example/x', '/', 'did=quiet'),
    ('/ /evil.example', '/', 'did=quiet'),
    ('/\\evil.example', '/', 'did=quiet'),
    ('//evil.example', '/', 'did=quiet'),
    ('///evil.example', '/evil.example', 'did=quiet'),     # urlsplit: a path on this site
    ('https://evil.example/', '/', 'did=quiet'),
    ('javascript:alert(1)', '/', 'did=quiet'),
    ('/\x00/evil.example', '/', 'did=quiet'),
    ('/\u2028/evil.example', '/', 'did=quiet'),
    ('evil.example', '/', 'did=quiet'),
    ('/scheduled?page=2&q=ann&did=x#top', '/scheduled', 'page=2&q=ann&did=quiet'),
    ('/%09/evil.example', '/%09/evil.example', 'did=quiet'),    # a local path, as sent
])
def test_back_never_leaves_the_site(open_web, back, path, query):
    cookie, token = form_session(open_web)
    body = urllib.parse.urlencode({'all': '1', 'back': back, 'csrf': token})
    status, headers, _ = call(open_web, 'POST', '/busy/quiet', body, {
        'Cookie': cookie, 'Content-Type': 'application/x-www-form-urlencoded'})
    assert status == 303
    target = urllib.parse.urlsplit(headers['location'])
    assert (target.scheme, target.netloc) == ('http', f'127.0.0.1:{open_web.port}')
    assert (target.path, target.query) == (path, query)
    assert not re.search(r'[\s\\]', headers['location'])


# -- 5. anonymous /healthz

def test_anonymous_healthz_says_only_ok_per_check(authed_web):
    status, _, body = call(authed_web, 'GET', '/healthz')
    assert status == 200
    assert body == {'ok': True, 'checks': {'config': True, 'redis': True, 'smtp': True,
                                           'templates': True, 'cron': True}}
    wrong = call(authed_web, 'GET', '/healthz', headers={'Authorization': basic('x', 'y')})
    assert wrong[:1] == (200,) and wrong[2] == body


def test_authenticated_healthz_has_the_details(authed_web):
    status, _, body = call(authed_web, 'GET', '/healthz', headers={'Authorization': basic()})
    assert status == 200 and body['ok'] is True and body['redis_version']
    assert 'secret-name.ini' in body['checks']['config']['detail']
    assert 'welcome' in body['checks']['templates']['detail']


def test_healthz_without_configured_credentials_has_the_details(open_web):
    """Loopback only, no credentials: every route is open to this caller anyway."""
    status, _, body = call(open_web, 'GET', '/healthz')
    assert status == 200 and body['checks']['config']['detail'].endswith('mailq.ini ok')


# -- 6. the raw message is a download

def test_raw_message_is_served_as_a_download(open_web):
    """The API's and the dashboard's raw message, with the attachment route's headers."""
    attached = {'filename': 'a.txt', 'content': base64.b64encode(b'hi').decode()}
    status, _, accepted = post_json(open_web, '/api/mails', {
        **MAIL, 'subject': 'Raw one', 'attachments': [attached]})
    assert status == 202
    mail_id = accepted['id']
    names = ('content-disposition', 'x-content-type-options', 'content-security-policy')
    _, attachment, _ = call(open_web, 'GET', f'/mails/{mail_id}/attachments/0')
    for path in (f'/api/mails/{mail_id}/raw', f'/mails/{mail_id}/raw'):
        status, headers, text = call(open_web, 'GET', path)
        assert status == 200 and 'Subject: Raw one' in text, path
        assert headers['content-type'].startswith('message/rfc822')
        assert headers['content-disposition'].startswith(f'attachment; filename="{mail_id}.eml"')
        assert headers['x-content-type-options'] == 'nosniff'
        assert headers['content-security-policy'].startswith('sandbox')
        assert [headers[n].split(';')[0] for n in names] == [
            attachment[n].split(';')[0] for n in names], path


# -- 20. 415 for a body that is not JSON; distinct 401 messages

@pytest.mark.parametrize('content_type', [
    'application/x-www-form-urlencoded', 'text/plain', 'multipart/form-data; boundary=x',
    'text/html'])
def test_a_body_that_is_not_json_is_415(open_web, redis_server, content_type):
    before = mails_in(redis_server, 'open')
    for path, body in (('/api/mails', b'to=v%40example.com&subject=x&text=y'),
                       ('/api/mails', json.dumps(MAIL).encode()),
                       ('/api/scheduled/delete', b'{"all": true}')):
        status, headers, answer = call(open_web, 'POST', path, body,
                                       {'Content-Type': content_type})
        assert status == 415 and headers['content-type'] == 'application/json', path
        assert 'application/json' in answer['error'] and answer['details'] == {
            'header': 'Content-Type'}
    assert mails_in(redis_server, 'open') == before


def test_json_bodies_are_still_read(open_web):
    for content_type in ('application/json', 'application/json; charset=utf-8',
                         'application/merge-patch+json', None):
        headers = {'Content-Type': content_type} if content_type else {}
        status, _, body = call(open_web, 'POST', '/api/mails', json.dumps(MAIL).encode(),
                               headers)
        assert status == 202, (content_type, body)
    status, _, body = call(open_web, 'POST', '/api/mails', b'{nope',
                           {'Content-Type': 'application/json'})
    assert status == 400 and body['error'].startswith('malformed JSON')


def test_wrong_and_missing_credentials_are_told_apart(authed_web):
    missing = call(authed_web, 'GET', '/api/stats')
    wrong_password = call(authed_web, 'GET', '/api/stats',
                          headers={'Authorization': basic(USER, 'nope')})
    wrong_user = call(authed_web, 'GET', '/api/stats',
                      headers={'Authorization': basic('nobody', PASSWORD)})
    garbage = call(authed_web, 'GET', '/api/stats', headers={'Authorization': 'Basic !!'})
    assert missing[0] == wrong_password[0] == wrong_user[0] == garbage[0] == 401
    assert missing[2]['error'] == 'authentication required'
    assert wrong_password[2]['error'] == 'invalid credentials'
    assert wrong_user[2] == wrong_password[2] == garbage[2]     # never says which part
    for answer in (missing, wrong_password):
        assert answer[1]['www-authenticate'].startswith('Basic realm="mailq"')
    page_missing = call(authed_web, 'GET', '/dead')
    page_wrong = call(authed_web, 'GET', '/dead', headers={'Authorization': basic(USER, 'x')})
    assert page_missing[0] == page_wrong[0] == 401
    assert 'Authentication required' in page_missing[2]
    assert 'Invalid credentials' in page_wrong[2]


# -- issue 10: one check of `days` for the page and the API

@pytest.mark.parametrize('value', ['12', 'abc', '%B2', '9' * 5000, ''])
def test_a_bad_days_is_422_on_the_page_and_in_the_api(open_web, value):
    status, headers, html = call(open_web, 'GET', f'/?days={value}')
    assert status == 422 and headers['content-type'].startswith('text/html')
    assert 'days: must be 7, 30, 90 or 180' in html
    status, _, body = call(open_web, 'GET', f'/api/stats/history?days={value}')
    assert status == 422 and body['details']['field'] == 'days'


def test_good_days_are_served_on_both(open_web):
    for value in ('7', '30', '90'):
        assert call(open_web, 'GET', f'/?days={value}')[0] == 200
        status, _, body = call(open_web, 'GET', f'/api/stats/history?days={value}')
        assert status == 200 and len(body['days']) == int(value)
    assert call(open_web, 'GET', '/')[0] == 200
