"""The reply for each outcome of a submission: one table, so the listener, the tests and
docs/integrations.md agree on the codes (RFC 5321 4.2, enhanced codes RFC 3463)."""
import re

ACCEPTED = '250 2.0.0 Ok: queued as {id}'
UNAVAILABLE = '451 4.3.0 Mail queue unavailable, try again later: {reason}'
INTERNAL = '451 4.3.0 Internal error, try again later'
TOO_BIG = '552 5.3.4 Message size exceeds fixed limit of {limit} bytes'
TOO_MANY_RCPTS = '452 4.5.3 Too many recipients (at most {limit})'
BAD_RCPT = '553 5.1.3 Bad recipient address syntax: {reason}'
BAD_SENDER = '553 5.1.7 Bad sender address syntax: {reason}'
BAD_MESSAGE = '554 5.6.0 {reason}'
AUTH_LIMITED = '454 4.7.0 Too many failed authentications, try again later'

_BREAKS = re.compile(r'[\r\n\x00-\x1f\x7f]+')


def one_line(text, limit=300):
    """Client-supplied text inside a reply: one line, no control characters, bounded."""
    return _BREAKS.sub(' ', str(text)).strip()[:limit]


def reply_class(reply):
    """'2xx', '4xx' or '5xx' of a reply line, for /metrics."""
    return f'{reply[:1]}xx'
