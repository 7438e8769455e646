"""Turn a mail request (the dict the HTTP API takes) into a rendered, validated Mail.

Everything that can be wrong with a mail is found here, at enqueue time, so the
caller gets a 422 naming the field instead of a dead job later. The message is
rendered once, to RFC 5322 bytes; workers only hand those bytes to SMTP.
"""
import base64
import binascii
import codecs
import datetime
import email.policy
import email.utils
import functools
import json
import re
import secrets
import time
from dataclasses import dataclass
from email.headerregistry import HeaderRegistry
from email.message import EmailMessage

from . import mime
from .errors import ValidationError
from .templates import RenderError

FIELDS = {'to', 'cc', 'bcc', 'from', 'reply_to', 'subject', 'text', 'html', 'template',
          'context', 'headers', 'attachments', 'queue', 'send_at', 'delay', 'idempotency_key',
          'metadata'}
# `metadata`: the app's own JSON object, carried in every webhook (Postmark's Metadata).
MAX_METADATA_BYTES = 1024
RESERVED_HEADERS = {'from', 'to', 'cc', 'bcc', 'reply-to', 'subject', 'date', 'message-id',
                    'mime-version', 'content-type', 'content-transfer-encoding', 'sender'}
HEADER_NAME = re.compile(r'^[!-9;-~]{1,76}$')
# RFC 6838 4.2 restricted names, ASCII only (RFC 2045); one optional charset parameter.
_NAME = r"[A-Za-z0-9][A-Za-z0-9!#$&^_.+-]{0,126}"
CONTENT_TYPE = re.compile(rf'^({_NAME})/({_NAME})'
                          r'(?:\s*;\s*charset\s*=\s*("?)([A-Za-z0-9!#$%&\'+^_`{}~-]{1,40})\3)?\s*$',
                          re.ASCII | re.IGNORECASE)
LOCAL_PART = re.compile(r'^[A-Za-z0-9!#$%&\'*+/=?^_`{|}~.-]{1,64}$')
DOMAIN_LABEL = re.compile(r'^(?!-)[A-Za-z0-9-]{1,63}(?<!-)$')
_LABEL = r'(?!-)[A-Za-z0-9-]{1,63}(?<!-)'
# An ASCII domain as the IDNA codec and DOMAIN_LABEL together accept it: labels of 1 to
# 63 characters, at most one trailing dot. One match instead of a codec call and a split.
ASCII_DOMAIN = re.compile(rf'(?:{_LABEL}\.)*{_LABEL}\.?', re.ASCII)
_ATOMS = r"[A-Za-z0-9!#$%&'*+/=?^_`{|}~-]+"
_ADDR = rf'{_ATOMS}(?:\.{_ATOMS})*@[A-Za-z0-9-]+(?:\.[A-Za-z0-9-]+)*'
SIMPLE_ADDRESS = re.compile(
    rf'^\s*(?:([A-Za-z0-9]+(?: [A-Za-z0-9]+)*)\s*<({_ADDR})>|({_ADDR}))\s*$')
# Every character str.splitlines() breaks on (the email package refuses them in a
# header, and a reader may start a new header line at one), and NUL.
LINE_BREAK = re.compile('[\n\r\x0b\x0c\x1c\x1d\x1e\x85\u2028\u2029\0]')
MAX_SCHEDULE_AHEAD = 366 * 86400
SMTP_POLICY = email.policy.SMTP
_PARSE_HEADER = HeaderRegistry()


@dataclass
class Mail:
    """A validated, rendered mail, ready to be stored."""
    id: str
    message_id: str
    sender: str
    recipients: list          # envelope: to + cc + bcc, bare ASCII addresses
    to: list
    subject: str
    queue: str
    raw: bytes
    send_at: float = None
    idempotency_key: str = None
    template: str = None
    attachments: int = 0
    created_at: float = 0.0
    metadata: str = ''              # compact JSON of the `metadata` object, '' for none
    source: str = ''          # where it came in: smtp, sendmail, django ('' for the API)
    client: str = ''          # the submitting client's address (SMTP)
    user: str = ''            # the authenticated SMTP user
    relay: str = ''           # 'release': a released copy, sent through the release relay
    released_from: str = ''   # the caught mail it is a copy of

    def record_fields(self, status, task):
        fields = {
            'id': self.id, 'status': status, 'queue': self.queue, 'task': task,
            'attempts': 0, 'created_at': self.created_at, 'message_id': self.message_id,
            'from': self.sender, 'rcpts': json.dumps(self.recipients), 'to': ', '.join(self.to),
            'subject': self.subject,
        }
        # The other fields are written only when set: a record of most mails stays small
        # (readers take a missing field as empty, as records of older releases had them).
        if self.send_at:
            fields['send_at'] = self.send_at
        if self.template:
            fields['template'] = self.template
        if self.attachments:
            fields['attachments'] = self.attachments
        if self.metadata:
            fields['metadata'] = self.metadata
        if self.idempotency_key:
            fields['idempotency_key'] = self.idempotency_key
        for name in ('source', 'client', 'user'):       # where it came in, when not the API
            if getattr(self, name):
                fields[name] = getattr(self, name)
        if self.relay:
            fields['relay'] = self.relay
        if self.released_from:
            fields['released_from'] = self.released_from
        return fields


def new_mail_id():
    return secrets.token_hex(10)


def compose(data, *, config, templates, idempotency_key=None, now=None):
    """Validate `data` and render it. Raises ValidationError naming the field."""
    if not isinstance(data, dict):
        raise ValidationError('body', 'must be a JSON object')
    unknown = sorted(set(data) - FIELDS)
    if unknown:
        raise ValidationError(unknown[0], 'unknown field')
    now = time.time() if now is None else now
    limits = config.limits

    sender, from_header = _sender(_text(data, 'from', required=False) or config.smtp.sender)
    to = _address_field(data, 'to', required=True)
    cc = _address_field(data, 'cc')
    bcc = _address_field(data, 'bcc')
    reply_to = _address_field(data, 'reply_to')
    recipients = [a[1] for a in to + cc + bcc]
    if len(recipients) > limits.max_recipients:
        raise ValidationError('to', f'too many recipients ({len(recipients)} > '
                                    f'{limits.max_recipients})')

    queue = _text(data, 'queue', required=False) or config.worker.default_queue
    if queue not in config.worker.queue_names:
        raise ValidationError('queue', f'unknown queue {queue!r} (known: '
                                       f'{", ".join(config.worker.queue_names)})')

    subject, text, html, template = _content(data, templates)
    headers = _custom_headers(data.get('headers'))
    attachments = _attachments(data.get('attachments'), limits.max_attachment_bytes)
    send_at = _send_at(data, now)
    key = idempotency_key or _text(data, 'idempotency_key', required=False)
    if key is not None and (not key or len(key) > 200 or not key.isprintable()):
        raise ValidationError('idempotency_key', 'must be 1 to 200 printable characters')
    metadata = parse_metadata(data.get('metadata'))

    domain = sender[1].rsplit('@', 1)[1]
    message_id = email.utils.make_msgid(domain=domain)
    fields = [('From', from_header), ('To', _format(to))]
    fields += [('Cc', _format(cc))] if cc else []
    fields += [('Reply-To', _format(reply_to))] if reply_to else []
    fields += [('Subject', subject), ('Date', _date(now)),
               ('Message-ID', message_id)] + headers
    try:
        if attachments:
            raw = _with_attachments(fields, text, html, attachments)
        else:
            raw = mime.build(fields, text, html)
    except (ValueError, UnicodeError) as exc:   # last line of defence; fields are checked above
        raise ValidationError('headers', f'cannot build message: {exc}') from None

    return Mail(id=new_mail_id(), message_id=message_id, sender=sender[1],
                recipients=recipients, to=[_display(a) for a in to], subject=subject,
                queue=queue, raw=raw, send_at=send_at, idempotency_key=key,
                template=template, attachments=len(attachments), created_at=now,
                metadata=metadata)


def release_copy(original, to, *, config, now=None):
    """A new Mail that resends a caught mail's message to `to` (RFC 5322 3.6.6 Resent-
    fields in front of it), to go through the release relay. `original` is the
    caught mail's MailRecord (with raw)."""
    now = time.time() if now is None else now
    recipients = _address_field({'to': to}, 'to', required=True)
    if len(recipients) > config.limits.max_recipients:
        raise ValidationError('to', f'at most {config.limits.max_recipients} recipients')
    sender = original.fields.get('from') or config.smtp.sender
    domain = sender.rsplit('@', 1)[-1] or 'localhost'
    message_id = email.utils.make_msgid(domain=domain)
    resent = (f'Resent-Date: {_date(now)}\r\nResent-From: {sender}\r\n'
              f'Resent-To: {_format(recipients)}\r\nResent-Message-ID: {message_id}\r\n')
    f = original.fields
    return Mail(id=new_mail_id(), message_id=message_id, sender=sender,
                recipients=[a[1] for a in recipients], to=[_display(a) for a in recipients],
                subject=f.get('subject') or '', queue=config.worker.default_queue,
                raw=resent.encode('ascii') + original.raw, template=f.get('template') or None,
                attachments=int(f.get('attachments') or 0), created_at=now,
                relay='release', released_from=f.get('id') or '')


def parse_metadata(value, field='metadata'):
    """The compact JSON text of a `metadata` object of at most 1 KB ('' for none)."""
    if value is None:
        return ''
    if not isinstance(value, dict):
        raise ValidationError(field, 'must be a JSON object')
    try:
        text = json.dumps(value, ensure_ascii=False, separators=(',', ':'), allow_nan=False)
    except (ValueError, TypeError):
        raise ValidationError(field, 'must be plain JSON') from None
    try:
        size = len(text.encode('utf-8'))
    except UnicodeEncodeError:
        raise ValidationError(field, 'must be valid Unicode (a lone surrogate)') from None
    if size > MAX_METADATA_BYTES:
        raise ValidationError(field, f'larger than {MAX_METADATA_BYTES} bytes as JSON')
    return text if value else ''


def _with_attachments(fields, text, html, attachments):
    """Mails with attachments: the MIME tree from EmailMessage, the header fields from
    mime.head(), so both paths encode them alike (EmailMessage would decode a literal
    encoded word in a subject). Every part is 7bit, quoted-printable or base64: the
    message never needs 8BITMIME (RFC 6152)."""
    msg = EmailMessage(policy=SMTP_POLICY)
    if text is not None:
        msg.set_content(text, cte=mime.text_encoding(text))
        if html is not None:
            msg.add_alternative(html, subtype='html', cte=mime.text_encoding(html))
    else:
        msg.set_content(html, subtype='html', cte=mime.text_encoding(html))
    for filename, maintype, subtype, charset, content in attachments:
        msg.add_attachment(content, maintype=maintype, subtype=subtype, filename=filename,
                           params={'charset': charset} if charset else {})
    return mime.head(fields) + msg.as_bytes()


def _date(now):
    """RFC 5322 3.3 date with a numeric zone: "GMT" is obsolete syntax (section 4)."""
    return _date_of_second(int(now))


@functools.lru_cache(maxsize=4)
def _date_of_second(second):
    """The Date text of one second, formatted once for all the mails of that second
    (formatdate() takes about 10 us, a third of a whole compose; and a swap of the zone:
    a third of format_datetime()'s time)."""
    return email.utils.formatdate(second, usegmt=True)[:-3] + '+0000'


# -- fields

def _text(data, field, required=False):
    value = data.get(field)
    if value is None:
        if required:
            raise ValidationError(field, 'is required')
        return None
    if not isinstance(value, str):
        raise ValidationError(field, 'must be a string')
    return value


def _no_line_break(field, value):
    if LINE_BREAK.search(value):
        raise ValidationError(field, 'must not contain a line break (CR, LF, VT, FF, FS, GS, '
                                     'RS, NEL, U+2028, U+2029) or NUL')


def parse_sender(text):
    """(name, address) of a "from" value; config.py checks [smtp] from with it too."""
    sender = _addresses('from', text, required=True)
    if len(sender) != 1:
        raise ValidationError('from', 'exactly one sender address is needed')
    return sender[0][:2]


@functools.lru_cache(maxsize=256)
def _sender(text):
    """(name, address) of a "from" value and its From header, parsed once: most mails
    of an app have one of a few senders. An invalid one raises each time."""
    sender = parse_sender(text)
    return sender, _format([sender])


def _address_field(data, field, required=False):
    value = data.get(field)
    if value is None or value == [] or value == '':
        if required:
            raise ValidationError(field, 'is required')
        return []
    if isinstance(value, str):
        value = [value]
    if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
        raise ValidationError(field, 'must be a string or a list of strings')
    found = []
    for i, item in enumerate(value):
        found += _addresses(f'{field}[{i}]' if len(value) > 1 else field, item, required=True)
    return found


def _addresses(field, text, required):
    """Parse 'Name <a@b>, c@d' into [(name, ascii_addr, addr_as_written)], strictly."""
    _no_line_break(field, text)
    simple = SIMPLE_ADDRESS.match(text)
    if simple:      # one plain address, parsed as the header parser would, 30x faster
        name, bracketed, bare = simple.groups()
        written = bracketed or bare
        return [(name or '', _check_address(field, written), written)]
    parsed = _parse_header_addresses(text)
    if not parsed:
        raise ValidationError(field, f'not a valid address: {text!r}')
    return [(name, _check_address(field, spec), spec) for name, spec in parsed]


def _parse_header_addresses(text):
    """[(display name, addr-spec)] by the stdlib header parser, or None if it finds
    defects or fails. Any exception counts as a failure: the parser raises
    AttributeError on input such as '. <a@b>' or ':; <a@b>'."""
    try:
        header = _PARSE_HEADER('to', text)
        addresses = header.addresses
        if header.defects or not addresses or any(not a.username for a in addresses):
            return None
        return [(a.display_name, a.addr_spec) for a in addresses]
    except Exception:       # noqa: BLE001 - a parser bug must be a 422, not a 500
        return None


def _check_address(field, addr):
    local, at, domain = addr.rpartition('@')
    if not at or not local or not domain:
        raise ValidationError(field, f'not a valid address: {addr!r}')
    if not LOCAL_PART.match(local) or local.startswith('.') or local.endswith('.') \
            or '..' in local:
        raise ValidationError(field, f'unsupported local part in {addr!r} '
                                     '(ASCII without quotes; SMTPUTF8 is not supported)')
    if domain.isascii():
        ascii_domain, valid = domain, ASCII_DOMAIN.fullmatch(domain)
    else:
        try:
            ascii_domain = domain.encode('idna').decode('ascii')
        except UnicodeError:
            raise ValidationError(field, f'bad domain in {addr!r}') from None
        labels = ascii_domain.rstrip('.').split('.')
        valid = all(DOMAIN_LABEL.match(label) for label in labels)
    if len(ascii_domain) > 253 or not valid:
        raise ValidationError(field, f'bad domain in {addr!r}')
    return f'{local}@{ascii_domain.lower()}'


def _format(addresses):
    """The wire form: encoded display names, ASCII (punycode) domains."""
    return ', '.join(email.utils.formataddr(a[:2]) if a[0] else a[1] for a in addresses)


_SPECIALS = re.compile(r'[][\\()<>@,:;".]')
_ESCAPES = re.compile(r'[\\"]')


def _display(address):
    """The form people read (record, API, list filter): the name and address as
    written, quoted like formataddr() but never RFC 2047-encoded."""
    name, _, written = address
    if not name:
        return written
    if _SPECIALS.search(name):
        name = '"%s"' % _ESCAPES.sub(r'\\\g<0>', name)
    return f'{name} <{written}>'


def _content(data, templates):
    template = _text(data, 'template')
    context = data.get('context')
    if template is not None:
        for field in ('subject', 'text', 'html'):
            if data.get(field) is not None:
                raise ValidationError(field, 'give either template or subject/text/html')
        if context is not None and not isinstance(context, dict):
            raise ValidationError('context', 'must be an object')
        if not templates.exists(template):
            raise ValidationError('template', f'unknown template {template!r}')
        try:
            subject, text, html = templates.render(template, context or {})
        except RenderError as exc:
            raise ValidationError('template', f'template error: {exc}') from None
        subject_field = 'template'
    else:
        if context is not None:
            raise ValidationError('context', 'only used with template')
        subject, text, html = (_text(data, f) for f in ('subject', 'text', 'html'))
        subject_field = 'subject'
    if not subject:
        raise ValidationError(subject_field, 'a subject is required')
    _no_line_break(subject_field if template else 'subject', subject)
    if text is None and html is None:
        raise ValidationError('text', 'text or html is required')
    return subject, text, html, template


def _custom_headers(headers):
    if headers is None:
        return []
    if not isinstance(headers, dict):
        raise ValidationError('headers', 'must be an object of name: value')
    found = []
    for name, value in headers.items():
        field = f'headers.{name}'
        if not HEADER_NAME.match(name):
            raise ValidationError(field, 'not a valid header name')
        if name.lower() in RESERVED_HEADERS:
            raise ValidationError(field, 'set by mailq; use the matching field instead')
        if not isinstance(value, str):
            raise ValidationError(field, 'must be a string')
        _no_line_break(field, value)
        found.append((name, value))
    return found


def _attachments(items, max_bytes):
    if items is None:
        return []
    if not isinstance(items, list):
        raise ValidationError('attachments', 'must be a list')
    found, total = [], 0
    for i, item in enumerate(items):
        field = f'attachments[{i}]'
        if not isinstance(item, dict):
            raise ValidationError(field, 'must be an object')
        filename = item.get('filename')
        content_type = item.get('content_type') or 'application/octet-stream'
        content = item.get('content')
        if not isinstance(filename, str) or not filename or len(filename) > 255:
            raise ValidationError(f'{field}.filename', 'is required (1 to 255 characters)')
        _no_line_break(f'{field}.filename', filename)
        parsed = CONTENT_TYPE.match(content_type) if isinstance(content_type, str) else None
        if not parsed:
            raise ValidationError(f'{field}.content_type', 'must look like type/subtype, '
                                  'in ASCII, with at most a charset parameter')
        if not isinstance(content, str):
            raise ValidationError(f'{field}.content', 'base64 content is required')
        if len(content) > max_bytes * 4 // 3 + 4:
            raise ValidationError(f'{field}.content', f'larger than {max_bytes} bytes')
        try:
            decoded = base64.b64decode(content, validate=True)
        except (binascii.Error, ValueError):
            raise ValidationError(f'{field}.content', 'is not valid base64') from None
        total += len(decoded)
        if total > max_bytes:
            raise ValidationError(f'{field}.content', f'attachments exceed {max_bytes} bytes')
        maintype, subtype = parsed.group(1).lower(), parsed.group(2).lower()
        charset = _charset(f'{field}.content_type', maintype, parsed.group(4), decoded)
        found.append((filename, maintype, subtype, charset, decoded))
    return found


def _charset(field, maintype, given, content):
    """The charset parameter of a text attachment (RFC 2046 4.1.2: without one it means
    US-ASCII): the given one if the content decodes with it; else utf-8 for non-ASCII
    content that is valid UTF-8. None for other types, which take no charset."""
    if maintype != 'text':
        if given:
            raise ValidationError(field, 'a charset is only for text/* types')
        return None
    if given:
        try:
            codecs.lookup(given)
            content.decode(given)
        except LookupError:
            raise ValidationError(field, f'unknown charset {given!r}') from None
        except UnicodeError:
            raise ValidationError(field, f'the content is not valid {given}') from None
        return given.lower()
    if content.isascii():
        return None
    try:
        content.decode('utf-8')
    except UnicodeError:
        return None
    return 'utf-8'


def _send_at(data, now):
    send_at, delay = data.get('send_at'), data.get('delay')
    if send_at is not None and delay is not None:
        raise ValidationError('send_at', 'give send_at or delay, not both')
    if delay is not None:
        if isinstance(delay, bool) or not isinstance(delay, (int, float)) or not 0 <= delay:
            raise ValidationError('delay', 'must be a number of seconds >= 0')
        if delay > MAX_SCHEDULE_AHEAD:
            raise ValidationError('delay', 'more than 366 days ahead')
        return now + delay if delay else None
    if send_at is None:
        return None
    if not isinstance(send_at, str):
        raise ValidationError('send_at', 'must be an ISO 8601 string')
    when = parse_iso8601('send_at', send_at)
    ts = when.timestamp()
    if ts - now > MAX_SCHEDULE_AHEAD:
        raise ValidationError('send_at', 'more than 366 days ahead')
    return ts if ts > now else None


def parse_iso8601(field, text):
    try:
        when = datetime.datetime.fromisoformat(text.strip().replace('Z', '+00:00'))
    except ValueError:
        raise ValidationError(field, f'not an ISO 8601 date-time: {text!r}') from None
    if when.tzinfo is None:
        raise ValidationError(field, 'needs a UTC offset, e.g. 2026-12-01T08:00:00+01:00')
    return when
