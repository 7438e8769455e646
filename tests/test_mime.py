"""mime.build() (the hand-built message for mails without attachments) must stay
RFC 5322 / MIME correct: the standard library's strict parser reads back exactly
what went in, with no defects, CRLF line ends and no line over 998 octets."""
import email
import email.policy

import pytest
from hypothesis import given, settings, strategies as st

from mailq import mime
from mailq.compose import LINE_BREAK, _check_address, compose
from mailq.config import load
from mailq.errors import ValidationError
from mailq.templates import MailTemplates
from support.procs import REPO_ROOT

CONFIG = load(str(REPO_ROOT / 'mailq.ini'), environ={})
TEMPLATES = MailTemplates(REPO_ROOT / 'templates' / 'mail')


def parse(raw):
    assert b'\n' not in raw.replace(b'\r\n', b''), 'bare LF'
    assert all(len(line) <= 998 for line in raw.split(b'\r\n'))
    msg = email.message_from_bytes(raw, policy=email.policy.default)
    assert not msg.defects
    return msg


def body(part):
    return part.get_content().replace('\r\n', '\n')


def test_plain_text_mail_reads_back():
    mail = compose({'to': 'Ann Lee <ann@example.com>', 'subject': 'Hi', 'text': 'hello\n.dot\n'},
                   config=CONFIG, templates=TEMPLATES)
    msg = parse(mail.raw)
    assert msg['To'] == 'Ann Lee <ann@example.com>' and msg['Subject'] == 'Hi'
    assert msg['Message-ID'] == mail.message_id and msg['Date'] and msg['From']
    assert msg.get_content_type() == 'text/plain' and body(msg) == 'hello\n.dot\n'


def test_non_ascii_long_headers_and_alternative_parts_read_back():
    subject = 'Grüße aus Köln, ' * 12
    mail = compose({'to': ['Jörg Müller <j@example.com>', 'b@example.com'], 'cc': 'c@example.com',
                    'subject': subject, 'text': 'é' * 300 + '\n' + 'x' * 2000,
                    'html': '<p>Grüße</p>', 'headers': {'X-Tag': 'ünï ' * 40}},
                   config=CONFIG, templates=TEMPLATES)
    msg = parse(mail.raw)
    assert msg['Subject'] == subject and msg['X-Tag'] == 'ünï ' * 40
    assert msg['To'].addresses[0].display_name == 'Jörg Müller'
    plain, html = [p for p in msg.walk() if not p.is_multipart()]
    assert body(plain) == 'é' * 300 + '\n' + 'x' * 2000 + '\n'
    assert body(html) == '<p>Grüße</p>\n'


def test_header_injection_is_still_refused():
    for field, value in (('subject', 'a\r\nBcc: x@evil.com'), ('to', 'a@b.com\nBcc: x@evil.com')):
        with pytest.raises(ValidationError):
            compose({'to': 'a@example.com', 'subject': 's', 'text': 't', field: value},
                    config=CONFIG, templates=TEMPLATES)
    with pytest.raises(ValidationError):
        compose({'to': 'a@example.com', 'subject': 's', 'text': 't', 'headers': {'X': 'a\rb'}},
                config=CONFIG, templates=TEMPLATES)


@settings(max_examples=150, deadline=None)
@given(subject=st.text(st.characters(blacklist_categories=('Cs', 'Cc')), min_size=1, max_size=200),
       text=st.text(st.characters(blacklist_categories=('Cs',), blacklist_characters='\r\0'),
                    max_size=500),
       html=st.none() | st.text(st.characters(blacklist_categories=('Cs',),
                                              blacklist_characters='\r\0'), max_size=200))
def test_any_text_round_trips(subject, text, html):
    raw = mime.build([('Subject', subject)], text, html)
    msg = parse(raw)
    assert str(msg['Subject']) == subject.strip() or msg['Subject'] == subject
    parts = [p for p in msg.walk() if not p.is_multipart()]
    expected = [text] + ([html] if html is not None else [])
    for part, want in zip(parts, expected):
        want = want if want.endswith('\n') else want + '\n'
        assert body(part) == want


LINE_BREAKS = ['\n', '\x0b', '\x0c', '\r', '\x1c', '\x1d', '\x1e', '\x85', '\u2028', '\u2029']
ATTACHMENT = {'filename': 'a.txt', 'content': 'aGk='}


def with_break(field, brk):
    """A mail whose `field` carries the line break `brk`; and the field a 422 must name."""
    mail = {'to': 'a@example.com', 'subject': 's', 'text': 't'}
    if field == 'headers.X-Tag':
        mail['headers'] = {'X-Tag': f'a{brk}b'}
    elif field == 'attachments[0].filename':
        mail['attachments'] = [dict(ATTACHMENT, filename=f'a{brk}b.txt')]
    elif field in ('to', 'from', 'reply_to'):
        mail[field] = f'Ann{brk}Lee <ann@example.com>'
    else:
        mail[field] = f'a{brk}b'
    return mail


def test_splitlines_knows_no_other_line_breaks():
    found = [chr(i) for i in range(0x110000) if len(f'a{chr(i)}b'.splitlines()) > 1]
    assert found == LINE_BREAKS
    assert [c for c in map(chr, range(0x110000)) if LINE_BREAK.search(c)] == ['\0'] + found


@pytest.mark.parametrize('brk', LINE_BREAKS)
@pytest.mark.parametrize('field', ['subject', 'to', 'from', 'reply_to', 'headers.X-Tag',
                                   'attachments[0].filename'])
@pytest.mark.parametrize('attached', [False, True])
def test_every_line_break_is_refused_naming_its_field(brk, field, attached):
    mail = with_break(field, brk)
    if attached:
        mail.setdefault('attachments', [ATTACHMENT])
    with pytest.raises(ValidationError) as err:
        compose(mail, config=CONFIG, templates=TEMPLATES)
    assert err.value.field == field


def _domain_accepted_by_idna(domain):
    """The check compose made before its ASCII fast path: the IDNA codec, then each label."""
    try:
        ascii_domain = domain.encode('idna').decode('ascii')
    except UnicodeError:
        return False
    labels = ascii_domain.rstrip('.').split('.')
    return len(ascii_domain) <= 253 and all(
        len(label) <= 63 and label[:1] not in ('', '-') and not label.endswith('-')
        and all(c.isascii() and (c.isalnum() or c == '-') for c in label) for label in labels)


def _domain_accepted(domain):
    """compose's address check alone (the header parser in front of it refuses more)."""
    try:
        assert _check_address('to', f'ann@{domain}') == f'ann@{domain.lower()}'
    except ValidationError as exc:
        assert exc.field == 'to' and 'bad domain' in exc.message, exc
        return False
    return True


@pytest.mark.parametrize('domain', [
    'example.com', 'example.com.', 'example.com..', '.example.com', 'a..b', 'EXAMPLE.Com',
    'a-b.example', '-a.example', 'a-.example', 'a_b.example', 'x' * 63 + '.example',
    'x' * 64 + '.example', 'example.' + 'x' * 64, '.'.join(['a' * 49] * 5),
    '.'.join(['a' * 49] * 5) + '.', '.'.join(['a' * 50] * 5), '1.2.3.4'])
def test_ascii_domains_are_judged_as_the_idna_codec_judged_them(domain):
    assert _domain_accepted(domain) == _domain_accepted_by_idna(domain)


@given(st.text(alphabet='aZ9-._', min_size=1, max_size=12))
@settings(max_examples=300, deadline=None)
def test_any_short_ascii_domain_is_judged_as_before(domain):
    assert _domain_accepted(domain) == _domain_accepted_by_idna(domain)
