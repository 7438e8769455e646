"""The suppression list: addresses that refused mail for good are not mailed again.

Automatic: a recipient refused at RCPT with a permanent reply saying the address
is bad (5.1.1, 5.1.2, 5.1.10, 5.2.1, or a 550 without an enhanced code whose text
says the user is unknown) is suppressed for `[suppression] days`. Policy and spam
refusals (5.7.x) are recorded on the mail but not suppressed, unless
`[suppression] policy = yes`. Manual: the API, the CLI and the dashboard add and
remove addresses, with no end date.

Addresses are matched case-insensitively: they are stored normalised, local part and
domain in lower case, the domain as punycode (the Unicode spelling is kept beside it).
The accept and claim scripts check the list; finish.lua adds to it.
"""
import re
import time

from .compose import _check_address
from .errors import NotFound, ValidationError
from .service import redis_errors
from .store.record import iso

BAD_ADDRESS = {(5, 1, 1), (5, 1, 2), (5, 1, 10), (5, 2, 1)}
ENHANCED = re.compile(r'^\s*([245])\.(\d{1,3})\.(\d{1,3})\b')
UNKNOWN_USER = re.compile(
    r'(no such (user|mailbox|recipient|address)|(user|mailbox|recipient|address)\s+'
    r'(is\s+)?(unknown|not found|does not exist|doesn\'t exist|unavailable)|'
    r'unknown (user|mailbox|recipient|address)|invalid (user|mailbox|recipient|address))',
    re.IGNORECASE)
PAGE = 25
MAX_REASON = 200


def normalise(address, field='address'):
    """(normalised address, Unicode spelling) of an address; ValidationError if bad."""
    if not isinstance(address, str) or not address.strip():
        raise ValidationError(field, 'an address is required')
    text = address.strip()
    if text.startswith('<') and text.endswith('>'):
        text = text[1:-1]
    ascii_form = _check_address(field, text).lower()
    local, _, domain = ascii_form.rpartition('@')
    try:
        shown = domain.encode('ascii').decode('idna')
    except UnicodeError:
        shown = domain
    return ascii_form, f'{local}@{shown}'


def reason_for(code, reply, policy=False):
    """Why a refusal suppresses its address ('bad address', 'policy'), or None."""
    if not 500 <= int(code or 0) < 600:
        return None
    enhanced = ENHANCED.match(reply or '')
    if enhanced:
        klass, subject, detail = (int(g) for g in enhanced.groups())
        if klass != 5:
            return None
        if (klass, subject, detail) in BAD_ADDRESS:
            return 'bad address'
        if subject == 7 and policy:
            return 'policy'
        return None
    if int(code) == 550 and UNKNOWN_USER.search(reply or ''):
        return 'bad address'
    return None


def automatic(refused, mail_id, config, now):
    """{normalised address: info} of the refusals (recipient -> [code, reply]) that
    suppress their address."""
    found = {}
    for rcpt, (code, reply) in refused.items():
        reason = reason_for(code, reply, config.policy)
        if reason:
            address, shown = normalise(rcpt, 'rcpt')
            found[address] = {'address': address, 'unicode': shown, 'reason': reason,
                              'reply': f'{code} {reply}'.strip()[:500], 'mail': mail_id,
                              'source': 'automatic', 'created_at': now,
                              'until': now + config.days * 86400}
    return found


def active(info, now=None):
    until = float(info.get('until') or 0)
    return until == 0 or until > (now or time.time())


def row(info):
    return {'address': info['address'], 'unicode': info.get('unicode') or info['address'],
            'reason': info.get('reason'), 'reply': info.get('reply') or None,
            'mail': info.get('mail'), 'source': info.get('source'),
            'created_at': iso(info.get('created_at')),
            'until': iso(info['until']) if info.get('until') else None}


# -- what the API, the CLI and the dashboard call

def list_suppressions(rt, page=1, query=''):
    """One page of the list, newest first, filtered by a substring of the address."""
    try:
        page = max(1, int(page))
    except (TypeError, ValueError):
        raise ValidationError('page', 'must be a whole number') from None
    needle = (query or '').strip().lower()
    now = time.time()
    store = rt.store.suppressions
    with redis_errors():
        addresses = store.addresses()
        infos = [i for i in store.many(addresses) if active(i, now)]
    if needle:
        infos = [i for i in infos if needle in i['address'] or needle in i.get('unicode', '')]
    total = len(infos)
    rows = [row(i) for i in infos[(page - 1) * PAGE:page * PAGE]]
    return {'rows': rows, 'total': total, 'page': page,
            'pages': max(1, -(-total // PAGE)), 'query': query or ''}


def add(rt, address, reason=None):
    """Suppress an address by hand (no end date). Returns its row."""
    normal, shown = normalise(address)
    if reason is not None and not isinstance(reason, str):
        raise ValidationError('reason', 'must be a string')
    reason = (reason or 'manual').strip()[:MAX_REASON] or 'manual'
    if not reason.isprintable():
        raise ValidationError('reason', 'must be printable text')
    now = time.time()
    info = {'address': normal, 'unicode': shown, 'reason': reason, 'reply': '', 'mail': None,
            'source': 'manual', 'created_at': now, 'until': 0}
    with redis_errors():
        rt.store.suppressions.add({normal: info}, now)
    return row(info)


def remove(rt, address):
    normal, _ = normalise(address)
    with redis_errors():
        removed = rt.store.suppressions.remove([normal], time.time())
    if not removed:
        raise NotFound(f'{normal} is not suppressed')
    return {'address': normal, 'removed': True}
