"""Indexed search (GET /api/mails?recipient=|message_id=|idempotency_key=, and the
dashboard's search box): one index entry read, newest first, a page at a time.

The indexes (store/search.py) began when this release first started: a mail stored
before that is not found, and the answer's `indexed_since` says from when it covers.
"""
from .errors import ValidationError
from .service import redis_errors
from .store.record import iso
from .store.search import KINDS, PAGE, Cursor, normal_message_id
from .suppression import normalise

PARAMS = (*KINDS, 'cursor')
MAX_VALUE = 998       # the longest header line RFC 5322 allows: no key or id is longer


def criterion(params):
    """(index kind, value) of the one search field given in `params`; 422 otherwise."""
    given = [(name, params[name]) for name in KINDS if params.get(name)]
    if len(given) != 1:
        raise ValidationError('recipient', 'give one of recipient, message_id, '
                                           'idempotency_key')
    name, value = given[0]
    value = value.strip()
    if len(value) > MAX_VALUE:
        raise ValidationError(name, f'at most {MAX_VALUE} characters')
    if name == 'recipient':
        value = normalise(value, 'recipient')[0]
    elif name == 'message_id':
        value = normal_message_id(value)
    return KINDS[name], value


def search(rt, params):
    """{mails, next, indexed_since}: up to PAGE rows, and the cursor of the next page."""
    kind, value = criterion(params)
    cursor = params.get('cursor') or None
    if cursor and Cursor.decode(cursor) is None:
        raise ValidationError('cursor', 'not a cursor this search returned')
    with redis_errors():
        rows, following = rt.store.index.lookup(kind, value, cursor, PAGE)
        since = rt.store.index.since()
    return {'mails': rows, 'next': following, 'indexed_since': iso(since)}
