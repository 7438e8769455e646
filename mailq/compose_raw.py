"""Validate a finished RFC 5322 message with its envelope (SMTP submission, sendmail,
Django) into the same compose.Mail that compose() makes from an API request.

The bytes are kept as the client wrote them, except what Postfix's cleanup(8) does
for local submission: Bcc is removed and a missing Date, Message-ID or From is added.
mailq's control headers (X-Mailq-*) choose queue, send time, idempotency key and the
app's metadata; they are read, checked like the API's fields, and removed. Anything wrong raises a
ValidationError naming the header, so a surface can refuse it precisely.
"""
import email.errors
import email.header
import email.utils
import hashlib
import json
import re
import time

from . import compose
from .errors import ValidationError

HEADER_NAMES = {'queue': 'X-Mailq-Queue', 'send_at': 'X-Mailq-Send-At',
                'delay': 'X-Mailq-Delay', 'idempotency_key': 'X-Mailq-Idempotency-Key',
                'metadata': 'X-Mailq-Metadata'}
CONTROL = {header.lower(): field for field, header in HEADER_NAMES.items()}
STRIPPED = {'bcc', 'resent-bcc'}
FIELD_NAME = re.compile(rb'^[!-9;-~]+$')      # RFC 5322 3.6.8 ftext


def has_bare_newline(raw):
    """A CR or LF that is not part of CRLF: the stuff of SMTP smuggling. (Counting is
    a tenth of the time of a regex with a lookbehind.)"""
    pairs = raw.count(b'\r\n')
    return raw.count(b'\r') != pairs or raw.count(b'\n') != pairs


def check_address(field, address, utf8=False):
    """The bare ASCII (punycode domain) form of an envelope address, or ValidationError.
    With `utf8` (SMTPUTF8, RFC 6531) the local part may be UTF-8."""
    if not isinstance(address, str) or not address or compose.LINE_BREAK.search(address):
        raise ValidationError(field, f'not a valid address: {address!r}')
    local, at, domain = address.rpartition('@')
    if utf8 and at and local and not local.isascii():
        if not local.isprintable() or len(local.encode()) > 64 or ' ' in local:
            raise ValidationError(field, f'unsupported local part in {address!r}')
        return f'{local}{compose._check_address(field, "x@" + domain)[1:]}'
    return compose._check_address(field, address)


def compose_message(raw, sender, recipients, *, config, source='', client='', user='',
                    now=None):
    """(Mail, request fingerprint) of a message and its envelope. `raw` has CRLF line
    ends; `sender` may be '' (the null reverse-path of a bounce)."""
    now = time.time() if now is None else now
    if has_bare_newline(raw):
        raise ValidationError('message', 'bare CR or LF in the message (only CRLF line '
                                         'ends are allowed, RFC 5321 2.3.8)')
    if not recipients:
        raise ValidationError('recipients', 'at least one recipient is needed')
    sender = check_address('sender', sender, utf8=True) if sender else ''
    recipients = [check_address('recipients' if len(recipients) == 1 else f'recipients[{i}]',
                                r, utf8=True) for i, r in enumerate(recipients)]
    if len(recipients) > config.limits.max_recipients:
        raise ValidationError('recipients', f'too many recipients ({len(recipients)} > '
                                            f'{config.limits.max_recipients})')
    head, body = _split(raw)
    fields = _fields(head)
    control, kept = {}, []
    for name, line in fields:
        lower = name.lower()
        if lower.startswith('x-mailq-'):
            if lower not in CONTROL:
                raise ValidationError(name, 'unknown control header (known: '
                                            f'{", ".join(HEADER_NAMES.values())})')
            if CONTROL[lower] in control:
                raise ValidationError(name, 'given more than once')
            control[CONTROL[lower]] = _value(name, line).strip()
        elif lower not in STRIPPED:
            kept.append((lower, line))
    queue, send_at, key = _control(control, config, now)
    metadata = _metadata(control.get('metadata'))

    names = {lower for lower, _ in kept}
    domain = (sender.rpartition('@')[2] or 'localhost') if sender else \
        compose.parse_sender(config.smtp.sender)[1].rpartition('@')[2]
    added = []
    if 'from' not in names:
        added.append(b'From: ' + (sender or compose.parse_sender(config.smtp.sender)[1])
                     .encode() + b'\r\n')
    if 'date' not in names:
        added.append(b'Date: ' + compose._date(now).encode() + b'\r\n')
    message_id = _first(kept, 'message-id').strip()
    if not message_id:
        message_id = email.utils.make_msgid(domain=domain.encode('idna').decode())
        added.append(b'Message-ID: ' + message_id.encode() + b'\r\n')
    out_head = b''.join(line for _, line in kept) + b''.join(added)
    message = out_head + b'\r\n' + body
    to = _shown(_first(kept, 'to')) or ', '.join(recipients)
    mail = compose.Mail(
        id=compose.new_mail_id(), message_id=message_id, sender=sender,
        recipients=list(recipients), to=[to], subject=_shown(_first(kept, 'subject')),
        queue=queue, raw=message, send_at=send_at, idempotency_key=key, created_at=now,
        attachments=_count_attachments(out_head, body), source=source, client=client,
        user=user, metadata=metadata)
    return mail, _fingerprint(sender, recipients, control, kept, body) if key else ''


def _split(raw):
    """(header block with its CRLFs, body) at the first empty line."""
    if raw.startswith(b'\r\n'):
        return b'', raw[2:]
    end = raw.find(b'\r\n\r\n')
    if end < 0:
        return (raw if raw.endswith(b'\r\n') or not raw else raw + b'\r\n'), b''
    return raw[:end + 2], raw[end + 4:]


def _fields(head):
    """[(name, whole field bytes with its folded lines and CRLFs)], or ValidationError."""
    found = []
    for number, line in enumerate(head.split(b'\r\n')[:-1], 1):
        if line[:1] in (b' ', b'\t'):
            if not found:
                raise ValidationError('message', 'the first header line is a continuation')
            name, text = found[-1]
            found[-1] = (name, text + line + b'\r\n')
            continue
        name, colon, _ = line.partition(b':')
        if not colon or not FIELD_NAME.match(name):
            raise ValidationError('message', f'header line {number} is not "Name: value": '
                                             f'{line[:60]!r}')
        found.append((name.decode('ascii'), line + b'\r\n'))
    if not found:
        raise ValidationError('message', 'the message has no header fields')
    for name, line in found:
        try:
            line.decode('utf-8')
        except UnicodeDecodeError:
            raise ValidationError(name, 'header is neither ASCII nor UTF-8') from None
    return found


def _value(name, line):
    """The unfolded text of a field."""
    text = line.decode('utf-8').split(':', 1)[1]
    return re.sub(r'\r\n(?=[ \t])', '', text).rstrip('\r\n')


def _first(kept, lower):
    for name, line in kept:
        if name == lower:
            return _value(name, line)
    return ''


def _shown(text):
    """A header value as people read it: RFC 2047 words decoded, whitespace tidied."""
    text = ' '.join(text.split())
    if '=?' not in text:
        return text
    try:
        return str(email.header.make_header(email.header.decode_header(text)))
    except (ValueError, LookupError, email.errors.HeaderParseError):
        return text


def _control(control, config, now):
    """(queue, send_at, idempotency key) of the control headers, checked like the API's
    fields (compose's own checks), errors named after the header."""
    names = HEADER_NAMES
    queue = control.get('queue') or config.worker.default_queue
    if queue not in config.worker.queue_names:
        raise ValidationError(names['queue'], f'unknown queue {queue!r} (known: '
                                              f'{", ".join(config.worker.queue_names)})')
    timing = {}
    if 'send_at' in control:
        timing['send_at'] = control['send_at']
    if 'delay' in control:
        try:
            timing['delay'] = float(control['delay'])
        except ValueError:
            raise ValidationError(names['delay'], 'must be a number of seconds >= 0') from None
    try:
        send_at = compose._send_at(timing, now)
    except ValidationError as exc:
        raise ValidationError(names.get(exc.field, exc.field), exc.message) from None
    key = control.get('idempotency_key')
    if key is not None and (not key or len(key) > 200 or not key.isprintable()):
        raise ValidationError(names['idempotency_key'], 'must be 1 to 200 printable '
                                                        'characters')
    return queue, send_at, key


def _metadata(text):
    """X-Mailq-Metadata's JSON object, checked as the API's `metadata` (compact JSON
    text, '' for none)."""
    if text is None:
        return ''
    try:
        value = json.loads(text)
    except ValueError as exc:
        raise ValidationError(HEADER_NAMES['metadata'], f'not valid JSON ({exc})') from None
    return compose.parse_metadata(value, field=HEADER_NAMES['metadata'])


def _count_attachments(head, body):
    """Parts with a filename or Content-Disposition: attachment, for the record's count."""
    if b'multipart/' not in head.lower():
        return 0
    return len(re.findall(rb'(?im)^content-disposition:\s*attachment', body))


def _fingerprint(sender, recipients, control, kept, body):
    """What an idempotency key's request is compared by: the envelope, the control
    values and the message, without the Date and Message-ID a client's retry may
    make anew."""
    digest = hashlib.sha256()
    for part in (sender, '\0'.join(recipients), repr(sorted(control.items()))):
        digest.update(part.encode('utf-8', 'surrogateescape') + b'\0')
    for lower, line in kept:
        if lower not in ('date', 'message-id'):
            digest.update(line)
    digest.update(b'\0' + body)
    return digest.hexdigest()[:32]
