"""Query parameters that the pages and the JSON API read the same way."""
import bottle

from ..admin import DAYS_RULE, HISTORY_DAYS
from ..errors import ValidationError


def paging():
    """(page, filter, where the filter's scan starts: ?scan=) of a list URL; admin.listing checks
    them."""
    query = bottle.request.query
    return query.get('page') or 1, query.getunicode('q') or '', query.get('scan') or 0


def days():
    """?days= of the history: 7, 30, 90 or 180 (default 30); anything else is a 422,
    on the overview page as in the API, rather than silently another range."""
    raw = bottle.request.query.get('days', '30')
    if raw not in {str(d) for d in HISTORY_DAYS}:     # no int(): '²' and 5000 digits
        raise ValidationError('days', DAYS_RULE)
    return int(raw)
