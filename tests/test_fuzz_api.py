"""Hostile input against a real `mailq web` process: every answer is JSON, a 202 or
a 4xx, never a 500 and never a hang; no accepted mail carries an injected header.
The limits of [limits] are each checked at their edge."""
import base64
import email.parser
import email.policy
import json

import pytest
from hypothesis import HealthCheck, given, settings, strategies as st

from support.ini import write_ini
from support.procs import REPO_ROOT
from support.records import stored_message
from support.web_proc import WebProcess

LIMITS = {'max_body_bytes': '65536', 'max_attachment_bytes': '2048', 'max_recipients': '10',
          'max_batch': '5', 'render_timeout': '0.5'}
FUZZ = settings(max_examples=120, deadline=None, derandomize=True,
                suppress_health_check=[HealthCheck.function_scoped_fixture,
                                       HealthCheck.too_slow])
BUILT_HEADERS = {'from', 'to', 'cc', 'reply-to', 'subject', 'date', 'message-id',
                 'mime-version', 'content-type', 'content-transfer-encoding',
                 'content-disposition'}


@pytest.fixture(scope='module')
def web(redis_server, tmp_path_factory):
    ini = write_ini(tmp_path_factory.mktemp('fuzz') / 'mailq.ini', {
        'redis': {'url': redis_server.url, 'prefix': 'fuzz'},
        'smtp': {'transport': 'outbox', 'from': 'mailq@example.com'},
        'templates': {'path': str(REPO_ROOT / 'tests' / 'templates_hostile')},
        'limits': LIMITS})
    server = WebProcess(ini)
    yield server
    server.stop()


def check_answer(web, status, headers, data):
    assert status < 500, (status, data)
    assert headers.get('Content-Type', '').startswith('application/json'), headers
    assert isinstance(data, dict), data
    if status == 202:
        return data
    assert 400 <= status < 500 and 'error' in data, (status, data)
    return None


def assert_no_injected_header(web, mail_id, sent):
    raw = stored_message(web.redis, mail_id, 'fuzz')
    msg = email.parser.BytesParser(policy=email.policy.default).parsebytes(raw)
    allowed = BUILT_HEADERS | {name.lower() for name in (sent.get('headers') or {})}
    names = set()
    for part in msg.walk():
        names |= {name.lower() for name in part.keys()}
    assert names <= allowed, (names - allowed, raw[:500])
    assert b'\0' not in raw and b'\r\n\r\n' in raw
    for line in raw.split(b'\r\n\r\n', 1)[0].split(b'\r\n'):
        assert line[:1] in b' \t' or b':' in line, line    # every header line is a header
    assert 'bcc' not in names


# -- strategies

NASTY = st.sampled_from(['\r', '\n', '\r\n', '\0', '\r\nBcc: evil@example.net',
                         '\nX-Injected: 1', '\u2028', '\x85', '\ud800'[:0] + '\x0b'])
TEXT = st.one_of(st.text(max_size=40),
                 st.builds(lambda a, n, b: a + n + b, st.text(max_size=10), NASTY,
                           st.text(max_size=10)))
ADDRESS = st.one_of(
    st.sampled_from(['user@example.com', 'Näme <user@example.com>', 'user@bücher.example',
                     'user@xn--bcher-kva.example', '"quoted local"@example.com',
                     '"a\\"b"@example.com', 'user@[127.0.0.1]', 'a@b@c', '@example.com',
                     'user@', 'user@-bad-.com', 'üser@example.com', 'a' * 70 + '@example.com',
                     'user@' + 'x' * 250 + '.com', 'x@example.com, y@example.com',
                     'Group: a@example.com;', 'user@example.com\r\nBcc: evil@example.net',
                     '=?utf-8?q?evil?= <user@example.com>', 'user@exa mple.com']),
    TEXT)
ADDRESSES = st.one_of(ADDRESS, st.lists(ADDRESS, max_size=14), st.integers(), st.none())
B64 = st.one_of(st.binary(max_size=300).map(lambda b: base64.b64encode(b).decode()),
                st.sampled_from(['not base64!', '====', 'YQ', 'YQ==\n', '\u00e9\u00e9']),
                st.just(base64.b64encode(b'x' * 3000).decode()), st.integers())
ATTACHMENT = st.fixed_dictionaries({'filename': TEXT, 'content': B64},
                                   optional={'content_type': st.one_of(TEXT,
                                                                       st.just('text/plain'))})
SEND_AT = st.one_of(st.sampled_from(['1970-01-01T00:00:00Z', '0001-01-01T00:00:00+00:00',
                                     '9999-12-31T23:59:59Z', '2030-01-01T00:00:00',
                                     '2026-13-45T99:99:99Z', 'tomorrow', '']),
                    TEXT, st.integers(), st.floats(allow_nan=True))
MAIL = st.fixed_dictionaries(
    {'to': ADDRESSES},
    optional={'cc': ADDRESSES, 'bcc': ADDRESSES, 'reply_to': ADDRESSES, 'from': ADDRESS,
              'subject': TEXT, 'text': TEXT, 'html': TEXT,
              'headers': st.dictionaries(TEXT, TEXT, max_size=3),
              'attachments': st.lists(ATTACHMENT, max_size=3),
              'send_at': SEND_AT, 'delay': st.one_of(st.floats(), st.integers()),
              'queue': st.sampled_from(['mailers', 'default', 'nope', '']),
              'idempotency_key': TEXT,
              'unknown': st.integers()})
TEMPLATED = st.fixed_dictionaries({
    'to': st.just('user@example.com'),
    'template': st.sampled_from(['ok', 'header', 'missing', '../etc/passwd', 'ok.txt']),
    'context': st.one_of(st.dictionaries(st.sampled_from(['name', 'subject', 'n']), TEXT),
                         st.lists(st.integers()), st.text())})


@FUZZ
@given(body=st.binary(max_size=3000))
def test_raw_bytes_bodies(web, body):
    for path in ('/api/mails', '/api/mails/batch'):
        check_answer(web, *web.request('POST', path, body))


@FUZZ
@given(mail=st.one_of(MAIL, TEMPLATED))
def test_structured_mails(web, mail):
    data = check_answer(web, *web.request('POST', '/api/mails', mail))
    if data:
        assert_no_injected_header(web, data['id'], mail)


@FUZZ
@given(mails=st.one_of(st.lists(st.one_of(MAIL, TEMPLATED), max_size=7), st.integers(),
                       st.dictionaries(st.text(max_size=5), st.integers(), max_size=2)))
def test_batches(web, mails):
    data = check_answer(web, *web.request('POST', '/api/mails/batch', {'mails': mails}))
    if data:
        for sent, accepted in zip(mails, data['mails']):
            assert_no_injected_header(web, accepted['id'], sent)


@pytest.fixture(scope='module', autouse=True)
def _redis_handle(web, redis_server):
    web.redis = redis_server.client()


# -- each limit at its edge

def ok_mail(**fields):
    return {'to': 'user@example.com', 'subject': 'limits', 'text': 'x', **fields}


def test_body_size_limit(web):
    fits = ok_mail(text='x' * 60000)
    assert web.request('POST', '/api/mails', fits)[0] == 202
    status, _, data = web.request('POST', '/api/mails', ok_mail(text='x' * 65600))
    assert status == 413 and data['details']['limit'] == 65536
    status, _, data = web.request('POST', '/api/mails', ok_mail(text='x' * 500000))
    assert status == 413 and 'Too Large' in data['error']     # waitress's answer, as JSON


def test_body_size_limit_without_content_length(web):
    """A chunked body must not get past the limit by not announcing its size."""
    import http.client
    conn = http.client.HTTPConnection('127.0.0.1', web.port, timeout=20)
    body = json.dumps(ok_mail(text='x' * 200000)).encode()
    conn.request('POST', '/api/mails', body=iter([body]),
                 headers={'Content-Type': 'application/json', 'Transfer-Encoding': 'chunked'})
    resp = conn.getresponse()
    assert resp.status in (400, 413) and json.loads(resp.read())['error']
    conn.close()


def test_attachment_size_limit(web):
    fits = [{'filename': 'a.bin', 'content': base64.b64encode(b'a' * 2048).decode()}]
    assert web.request('POST', '/api/mails', ok_mail(attachments=fits))[0] == 202
    over = [{'filename': 'a.bin', 'content': base64.b64encode(b'a' * 2049).decode()}]
    status, _, data = web.request('POST', '/api/mails', ok_mail(attachments=over))
    assert status == 422 and data['details']['field'].startswith('attachments[0]')


def test_recipients_limit(web):
    ten = [f'u{i}@example.com' for i in range(10)]
    assert web.request('POST', '/api/mails', ok_mail(to=ten[:5], bcc=ten[5:]))[0] == 202
    status, _, data = web.request('POST', '/api/mails', ok_mail(to=ten, cc='x@example.com'))
    assert status == 422 and 'too many recipients' in data['error']


def test_batch_limit(web):
    assert web.request('POST', '/api/mails/batch', {'mails': [ok_mail()] * 5})[0] == 202
    status, _, data = web.request('POST', '/api/mails/batch', {'mails': [ok_mail()] * 6})
    assert status == 422 and 'at most 5' in data['error']


@pytest.mark.parametrize('template, context', [
    ('loop', {'n': 99999}),
    ('loop_data', {'items': list(range(1000))}),
    ('recurse', {}),
    ('include_self', {}),
    ('blowup', {'n': 10 ** 10}),
])
def test_hostile_templates_are_refused_in_time(web, template, context):
    status, _, data = web.request('POST', '/api/mails', {
        'to': 'user@example.com', 'template': template, 'context': context}, timeout=20)
    assert status == 422, (status, data)
    assert data['details']['field'] == 'template'


def test_template_header_injection_through_context(web):
    status, _, data = web.request('POST', '/api/mails', {
        'to': 'user@example.com', 'template': 'header',
        'context': {'subject': 'hi\r\nBcc: evil@example.net'}})
    assert status == 422 and 'CR, LF' in data['error']
