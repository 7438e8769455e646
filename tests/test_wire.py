"""What goes over the wire, proved by its bytes (issue 11, items 4 and 7 to 13).

Mail goes from the API through a real worker process and real Redis to a raw-socket
SMTP server (support/raw_smtp.py) that records every command and every byte."""
import base64
import dataclasses
import email
import email.policy
import re
import signal

import pytest
from hypothesis import given, settings, strategies as st

from mailq.compose import compose
from mailq.config import load
from mailq.errors import ValidationError
from mailq.runtime import Runtime
from mailq.templates import MailTemplates
from support.mailq_app import WebApp, start_worker, stop_process
from support.procs import REPO_ROOT
from support.raw_smtp import RawSMTPServer
from test_delivery import wait_status

CONFIG = load(str(REPO_ROOT / 'mailq.ini'), environ={})
TEMPLATES = MailTemplates(REPO_ROOT / 'templates' / 'mail')
MAIL = {'to': 'ann@example.com', 'subject': 'Hello', 'text': 'Hi Ann'}
NO_8BITMIME = ('PIPELINING', 'SIZE 10485760')


def attachment(content, filename='a.bin', content_type=None):
    item = {'filename': filename, 'content': base64.b64encode(content).decode()}
    return {**item, 'content_type': content_type} if content_type else item


@pytest.fixture
def wire(tmp_ini, redis_url):
    """wire(extensions=..., workers=4, worker_args=(), data_reply=..., data_delay=...) ->
    (web, worker process, raw server); everything is stopped after the test."""
    started = []

    def make(workers=4, worker_args=(), **server_options):
        server = RawSMTPServer(**server_options)
        ini = tmp_ini(redis={'url': redis_url},
                      worker={'retry_base': '1', 'retry_max_delay': '2'},
                      smtp={'transport': 'smtp', 'host': '127.0.0.1', 'port': str(server.port),
                            'timeout': '5', 'from': 'mailq@example.com'},
                      templates={'path': str(REPO_ROOT / 'templates' / 'mail')})
        web, proc = WebApp(ini), start_worker(ini, '-w', str(workers), *worker_args)
        started.append((web, proc, server))
        return web, proc, server

    yield make
    for web, proc, server in started:
        stop_process(proc)
        web.close()
        server.stop()


def deliver(wire_setup, mail):
    """POST `mail`, wait for it to be sent; (record, MAIL FROM line, parsed, raw bytes)."""
    web, _, server = wire_setup
    status, _, body = web.post('/api/mails', mail)
    assert status == 202, body
    record = wait_status(web, body['id'], 'sent')
    mail_from, raw = server.wait_messages(1)[-1]
    msg = email.message_from_bytes(raw, policy=email.policy.default)
    return record, mail_from_line(mail_from), msg, raw


def mail_from_line(line):
    """MAIL FROM line with the verb upper-cased (smtplib sends "mail FROM:")."""
    return line[:10].upper() + line[10:]


def leaves(msg):
    return [p for p in msg.walk() if not p.is_multipart()]


def content(part):
    """The decoded content, text with LF line ends (quoted-printable keeps CRLF)."""
    data = part.get_content()
    return data.replace('\r\n', '\n') if isinstance(data, str) else data


# -- 4: every parser failure is a 422 naming the field -----------------------

ODD_ADDRESSES = ['. <a@example.com>', ':; <a@example.com>', '.x <a@example.com>',
                 'a@example.com, . <b@example.com>']


@pytest.mark.parametrize('value', ODD_ADDRESSES)
@pytest.mark.parametrize('field', ['to', 'from', 'cc', 'bcc', 'reply_to'])
def test_odd_addresses_are_422_naming_the_field(web, field, value):
    status, _, body = web.post('/api/mails', {**MAIL, field: value})
    assert status == 422, body
    assert body['details']['field'] == field and 'not a valid address' in body['error']


def test_odd_address_in_a_batch_names_the_mail_and_field(web):
    status, _, body = web.post('/api/mails/batch', {'mails': [MAIL, {**MAIL, 'cc': ':; <a@x.io>'}]})
    assert status == 422 and body['details']['field'] == 'mails[1].cc'


ADDRESS_CHARS = st.sampled_from(list('.:;,<>@"()[]\\ aZ9-_=+!#\'é') + ['=?', '<a@b.io>'])


@settings(max_examples=400, deadline=None)
@given(text=st.lists(ADDRESS_CHARS, max_size=12).map(''.join) | st.text(max_size=30))
def test_any_address_text_is_accepted_or_a_validation_error(text):
    for field in ('to', 'from', 'reply_to'):
        try:
            mail = compose({**MAIL, field: text}, config=CONFIG, templates=TEMPLATES)
        except ValidationError as exc:
            assert exc.field == field
        else:
            assert mail.raw.isascii()


# -- 7: content types are ASCII -------------------------------------------------

@pytest.mark.parametrize('content_type', ['text/h\u00e9ml', 'te\u0445t/plain', 'text/plain\u00a0',
                                          'text/\uff48tml', 'text/plain; name=x'])
def test_non_ascii_content_type_is_422(web, content_type):
    mail = {**MAIL, 'attachments': [attachment(b'hi', 'a.txt', content_type)]}
    status, _, body = web.post('/api/mails', mail)
    assert status == 422 and body['details']['field'] == 'attachments[0].content_type'


# -- 8: QUIT on a graceful stop ---------------------------------------------

@pytest.mark.parametrize('sig, worker_type', [(signal.SIGTERM, 'thread'),
                                              (signal.SIGINT, 'thread'),
                                              (signal.SIGTERM, 'process')])
def test_graceful_stop_ends_every_session_with_quit(wire, sig, worker_type):
    web, proc, server = wire(workers=4, worker_args=('-k', worker_type), data_delay=0.3)
    ids = [web.post('/api/mails', {**MAIL, 'to': f'u{i}@example.com'})[2]['id']
           for i in range(8)]
    for mail_id in ids:
        wait_status(web, mail_id, 'sent')
    sessions = [s for s in server.sessions if s.messages]
    assert len(sessions) >= 2, 'the threads should have had sessions of their own'
    assert not any(s.quit for s in sessions)        # they are kept open between mails
    assert stop_process(proc, sig=sig) == 0
    server.wait(lambda: all(s.closed for s in server.sessions), what='all sessions closed')
    last = [s.commands[-1].upper() for s in server.sessions]
    assert last == [b'QUIT'] * len(server.sessions), last


# -- 9: never 8-bit without BODY=8BITMIME --------------------------------------------

def test_attachment_mail_with_8bit_text_goes_7bit(wire):
    setup = wire(extensions=NO_8BITMIME)
    text = 'Grüße, Jürgen\n' + 'ä' * 50 + '\n'
    mail = {**MAIL, 'text': text, 'html': '<p>Grüße</p>',
            'attachments': [attachment('naïve\n'.encode(), 'n.txt', 'text/plain')]}
    _, mail_from, msg, raw = deliver(setup, mail)
    assert raw.isascii(), [line for line in raw.split(b'\r\n') if not line.isascii()][:3]
    assert b'8bit' not in raw.lower() and mail_from == b'MAIL FROM:<mailq@example.com>'
    plain, html, attached = leaves(msg)
    assert content(plain) == text and content(html) == '<p>Grüße</p>\n'
    assert content(attached) == 'naïve\n'


OLD_8BIT = ('From: mailq@example.com\r\nTo: ann@example.com\r\nSubject: old\r\n'
            'Message-ID: <old@example.com>\r\nMIME-Version: 1.0\r\n'
            'Content-Type: multipart/mixed; boundary="b"\r\n\r\n'
            '--b\r\nContent-Type: text/plain; charset="utf-8"\r\n'
            'Content-Transfer-Encoding: 8bit\r\n\r\nGrüße\r\n'
            '--b\r\nContent-Type: application/octet-stream\r\n'
            'Content-Transfer-Encoding: base64\r\n\r\naGk=\r\n--b--\r\n').encode()


@pytest.mark.parametrize('extensions', [('PIPELINING', '8BITMIME'), ('8BITMIME',), NO_8BITMIME,
                                        ()])
def test_stored_8bit_mail_goes_with_body_8bitmime_or_as_7bit(wire, extensions):
    """A mail stored 8-bit (by mailq before this fix) is sent with BODY=8BITMIME where
    the server offers it (RFC 6152), and converted to 7-bit where it does not; with
    and without PIPELINING."""
    offered = '8BITMIME' in extensions
    web, _, server = wire(extensions=extensions)
    rt = Runtime(web.config)
    mail = dataclasses.replace(compose(MAIL, config=rt.config, templates=rt.templates),
                               raw=OLD_8BIT)
    rt.store.accept(mail, rt.new_task(mail.id, mail.queue))
    wait_status(web, mail.id, 'sent')
    mail_from, raw = server.wait_messages(1)[0]
    mail_from = mail_from_line(mail_from)
    msg = email.message_from_bytes(raw, policy=email.policy.default)
    if offered:
        assert mail_from == b'MAIL FROM:<mailq@example.com> BODY=8BITMIME' and raw == OLD_8BIT
    else:
        assert mail_from == b'MAIL FROM:<mailq@example.com>' and raw.isascii()
        assert msg['Message-ID'] == '<old@example.com>' and msg['Subject'] == 'old'
    assert [content(p) for p in leaves(msg)] == ['Grüße', b'hi']


# -- 10: numeric Date zone ----------------------------------------------------------

def test_date_has_a_numeric_zone_on_both_paths(wire):
    setup = wire()
    for n, extra in enumerate(({}, {'attachments': [attachment(b'x')]})):
        deliver(setup, {**MAIL, **extra})
        raw = setup[2].wait_messages(n + 1)[n][1]
        date = re.search(rb'^Date: (.*)\r$', raw, re.M).group(1)
        assert re.fullmatch(rb'[A-Z][a-z]{2}, \d\d [A-Z][a-z]{2} \d{4} \d\d:\d\d:\d\d \+0000',
                            date), date


# -- 11: text attachments say their charset -----------------------------------------

def test_text_attachments_carry_their_charset(wire):
    web, _, server = setup = wire()
    csv = 'name,city\nJürgen,Köln\n'.encode()
    _, _, msg, raw = deliver(setup, {**MAIL, 'attachments': [
        attachment(csv, 'a.csv', 'text/csv; charset=UTF-8'),
        attachment('été\n'.encode(), 'b.txt', 'text/plain'),           # valid UTF-8, no charset
        attachment('été\n'.encode('latin-1'), 'c.txt', 'text/plain; charset="iso-8859-1"'),
        attachment(b'plain ascii\n', 'd.txt', 'text/plain')]})
    _, a, b, c, d = leaves(msg)
    assert (a.get_content_type(), a.get_param('charset')) == ('text/csv', 'utf-8')
    assert a.get_content() == 'name,city\nJürgen,Köln\n'
    assert b.get_param('charset') == 'utf-8' and b.get_content() == 'été\n'
    assert c.get_param('charset') == 'iso-8859-1' and c.get_content() == 'été\n'
    assert d.get_param('charset') is None and d.get_content() == 'plain ascii\n'
    for content_type, content in (('text/csv; charset=utf-8', b'\xff\xfe'),
                                  ('text/csv; charset=no-such', b'a'),
                                  ('image/png; charset=utf-8', b'a')):
        status, _, body = web.post('/api/mails', {**MAIL, 'attachments': [
            attachment(content, 'x', content_type)]})
        assert status == 422 and body['details']['field'] == 'attachments[0].content_type'


# -- 12: a subject reads back exactly as given -----------------------------------------

LITERAL_SUBJECTS = ['=?utf-8?q?literal?= more', '=?utf-8?b?SGk=?=', 'x =?iso-8859-1?q?a?= =?',
                    'Grüße =?utf-8?q?x?= ' + 'y' * 90]


@pytest.mark.parametrize('attached', [False, True])
def test_subject_that_looks_encoded_reads_back_as_given(wire, attached):
    setup = wire()
    extra = {'attachments': [attachment(b'x')]} if attached else {}
    for n, subject in enumerate(LITERAL_SUBJECTS):
        record, _, _, _ = deliver(setup, {**MAIL, 'subject': subject, **extra})
        raw = setup[2].wait_messages(n + 1)[n][1]
        msg = email.message_from_bytes(raw, policy=email.policy.default)
        assert msg['Subject'] == subject and record['subject'] == subject


@settings(max_examples=200, deadline=None)
@given(subject=st.lists(st.sampled_from(['=?', '?=', 'utf-8', '?q?', '?b?', 'a', ' ', 'é', '_',
                                          'SGk=']), min_size=1, max_size=20).map(''.join)
       .filter(lambda s: s.strip() == s))     # folding whitespace at the ends is not kept
def test_any_subject_with_encoded_word_pieces_reads_back(subject):
    for extra in ({}, {'attachments': [attachment(b'x')]}):
        mail = compose({**MAIL, 'subject': subject, **extra}, config=CONFIG, templates=TEMPLATES)
        assert email.message_from_bytes(mail.raw, policy=email.policy.default)['Subject'] \
            == subject


# -- 13: display names are stored as written; encoding is for the wire ------------------

def test_display_names_are_stored_and_shown_as_written(wire):
    web, _, server = wire(data_reply=b'554 5.7.1 refused')
    written = 'Jürgen Müller <juergen@bücher.example>'
    status, _, body = web.post('/api/mails', {**MAIL, 'to': [written, '"Lee, Ann" <ann@x.io>']})
    assert status == 202, body
    record = wait_status(web, body['id'], 'dead')
    assert record['to'] == 'Jürgen Müller <juergen@bücher.example>, "Lee, Ann" <ann@x.io>'
    found = web.get('/api/dead?q=J%C3%BCrgen')[2]
    assert [row['id'] for row in found['rows']] == [body['id']]
    assert found['rows'][0]['to'] == record['to']
    raw = server.wait_messages(1)[0][1]
    to_line = re.search(rb'^To: (.*)\r$', raw, re.M).group(1)
    assert b'=?utf-8?' in to_line and b'<juergen@xn--bcher-kva.example>' in to_line
    to = email.message_from_bytes(raw, policy=email.policy.default)['To']
    assert to.addresses[0].display_name == 'Jürgen Müller'
    assert to.addresses[1].display_name == 'Lee, Ann'


def test_display_names_in_the_outbox_are_as_written(redis_ini):
    """The issue's own example: transport = outbox, the outbox list and its filter."""
    web, proc = WebApp(redis_ini), start_worker(redis_ini, '-w', '1')
    try:
        written = 'Jürgen Müller <juergen@bücher.example>'
        status, _, body = web.post('/api/mails', {**MAIL, 'to': written})
        assert status == 202, body
        assert wait_status(web, body['id'], 'sent')['to'] == written
        for query in ('', '?q=J%C3%BCrgen', '?q=M%C3%BCller'):
            rows = web.get('/api/outbox' + query)[2]['rows']
            assert [(r['id'], r['to']) for r in rows] == [(body['id'], written)], query
        assert web.get('/api/outbox?q=%3D%3Futf-8')[2]['rows'] == []
    finally:
        stop_process(proc)
        web.close()


def test_records_written_the_old_way_still_display(wire):
    """Upgrade: a record from before this fix (encoded 'to') is shown decoded, and the
    list filter still finds it by what it stored."""
    web, _, _ = wire(data_reply=b'554 5.7.1 refused')
    rt = Runtime(web.config)
    old = '=?utf-8?b?SsO8cmdlbiBNw7xsbGVy?= <juergen@xn--bcher-kva.example>'
    mail = dataclasses.replace(compose(MAIL, config=rt.config, templates=rt.templates), to=[old])
    rt.store.accept(mail, rt.new_task(mail.id, mail.queue))
    shown = 'Jürgen Müller <juergen@xn--bcher-kva.example>'
    assert wait_status(web, mail.id, 'dead')['to'] == shown
    assert [r['to'] for r in web.get('/api/dead?q=xn--bcher')[2]['rows']] == [shown]

