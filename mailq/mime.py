"""RFC 5322 / MIME bytes for the common mail (text and/or HTML, no attachments), built
directly: EmailMessage spends about a millisecond a mail on header objects and folding.

compose.py has already refused NUL and every line break (all that str.splitlines knows,
not only CR and LF) in every header value. Here non-ASCII
header text becomes RFC 2047 encoded words, long header lines are folded, and a body
is 7bit when it is ASCII with short lines, else quoted-printable; lines end in CRLF.
The message is 7-bit throughout, so it never needs 8BITMIME (RFC 6152).
"""
import binascii
import secrets
from email.header import Header

MAX_LINE = 78
CRLF = '\r\n'
# Unstructured text that must read back as given, even when it looks like an encoded word.
TEXT_HEADERS = frozenset({'Subject'})


def build(headers, text=None, html=None):
    """The message bytes. `headers`: [(name, value)] in order, address headers formatted."""
    head = _head_text(headers)
    parts = [('plain', text)] if text is not None else []
    if html is not None:
        parts.append(('html', html))
    if len(parts) == 1:
        return (head + 'MIME-Version: 1.0\r\n').encode('ascii') + _part(*parts[0])
    bodies = [_part(*p) for p in parts]
    boundary = _boundary(bodies)
    out = [(head + 'MIME-Version: 1.0\r\nContent-Type: multipart/alternative; '
            f'boundary="{boundary}"\r\n\r\n').encode('ascii')]
    for i, body in enumerate(bodies):    # the CRLF before a delimiter belongs to it
        out.append(f'{"" if i == 0 else CRLF}--{boundary}\r\n'.encode('ascii') + body)
    out.append(f'\r\n--{boundary}--\r\n'.encode('ascii'))
    return b''.join(out)


def head(headers):
    """The header fields as bytes, encoded as build() does (compose.py's attachment path)."""
    return _head_text(headers).encode('ascii')


def _head_text(headers):
    return ''.join(text_line(name, value) if name in TEXT_HEADERS else header_line(name, value)
                   for name, value in headers)


def text_line(name, value):
    """An unstructured text field. Text containing "=?" is encoded as a whole, or a
    reader would decode a literal "=?utf-8?q?x?=" in it (RFC 2047 6.1)."""
    if '=?' not in value:
        return header_line(name, value)
    encoded = Header(value, 'utf-8', header_name=name).encode(linesep='\r\n')
    return f'{name}: {encoded}\r\n'


def text_encoding(content):
    """7bit for ASCII with short lines, else quoted-printable: never 8bit."""
    if content.isascii() and max(map(len, content.encode('ascii').splitlines() or [b''])) \
            <= MAX_LINE:
        return '7bit'
    return 'quoted-printable'


def header_line(name, value):
    """One header field, RFC 2047-encoded if not ASCII, folded if longer than 78."""
    if value.isascii() and len(name) + len(value) + 2 <= MAX_LINE:
        return f'{name}: {value}\r\n'
    charset = 'us-ascii' if value.isascii() else 'utf-8'
    encoded = Header(value, charset, header_name=name).encode(linesep='\r\n')
    return f'{name}: {encoded}\r\n'


def _part(subtype, content):
    """Content-Type and Content-Transfer-Encoding lines, a blank line and the body."""
    content = content.replace('\r\n', '\n').replace('\r', '\n')
    if not content.endswith('\n'):
        content += '\n'
    if content.isascii() and max(map(len, content.split('\n'))) <= MAX_LINE:
        encoding, body = '7bit', content.encode('ascii')
    else:
        encoding, body = 'quoted-printable', binascii.b2a_qp(content.encode('utf-8'),
                                                             istext=True)
    return (f'Content-Type: text/{subtype}; charset="utf-8"\r\n'
            f'Content-Transfer-Encoding: {encoding}\r\n\r\n').encode('ascii') \
        + body.replace(b'\n', b'\r\n')


def _boundary(bodies):
    while True:
        boundary = f'=_mailq_{secrets.token_hex(12)}'
        if not any(boundary.encode('ascii') in body for body in bodies):
            return boundary
