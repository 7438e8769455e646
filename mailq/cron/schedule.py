"""When a periodic mail job fires: cron expressions in a per-job timezone.

Pure time logic, no Redis, so the scheduler can ask "what is due?" with any
injected clock.

The evaluation is done by `cronsim` (by the healthchecks.io author): it
follows Debian cron on DST, handles the day-of-month / day-of-week OR rule
and walks backwards as well as forwards, so there was no reason to write our
own.  It does not know the `@` aliases, and it accepts more than standard
cron (seconds, L, W, #), so this module maps the aliases and checks the
5-field syntax itself, which also gives error messages that say what is
wrong.

DST, as Debian cron (and cronsim) does it:

* A job at a fixed time (neither the minute nor the hour field starts with
  `*`, e.g. `30 2 * * *`) follows the wall clock. If its time falls in a
  spring-forward gap it runs once, at the first valid instant after the gap
  (02:30 -> 03:00). If its time falls in the repeated fall-back hour it runs
  once, at the first occurrence.
* A job whose minute or hour field starts with `*` (`*/15 * * * *`,
  `0 * * * *`) follows real time: it fires at every matching wall time that
  exists, so it skips the gap and fires again through the repeated hour
  (an hourly job fires at 01:00 EDT and again at 01:00 EST).

All returned datetimes are aware and in UTC.
"""
from datetime import UTC, datetime, timedelta
from zoneinfo import ZoneInfo

from cronsim import CronSim, CronSimError

MAX_FIRE_TIMES = 10_000
LOOKBACK = timedelta(days=400)

ALIASES = {
    '@yearly': '0 0 1 1 *',
    '@annually': '0 0 1 1 *',
    '@monthly': '0 0 1 * *',
    '@weekly': '0 0 * * 0',
    '@daily': '0 0 * * *',
    '@midnight': '0 0 * * *',
    '@hourly': '0 * * * *',
}
MONTHS = {n: i for i, n in enumerate(
    'jan feb mar apr may jun jul aug sep oct nov dec'.split(), 1)}
DAYS = {n: i for i, n in enumerate('sun mon tue wed thu fri sat'.split())}
# (name, lowest, highest, names allowed in place of numbers)
FIELDS = (
    ('minute', 0, 59, {}),
    ('hour', 0, 23, {}),
    ('day-of-month', 1, 31, {}),
    ('month', 1, 12, MONTHS),
    ('day-of-week', 0, 7, DAYS),
)
_SOME_DAY = datetime(2000, 1, 1)


class CronError(ValueError):
    """A bad cron expression or timezone; the message says what is wrong."""


def validate_timezone(name):
    try:
        ZoneInfo(name)
    except (ValueError, TypeError, OSError, LookupError):
        # ZoneInfoNotFoundError is a KeyError; bad paths are ValueErrors.
        raise CronError(f'unknown timezone {name!r}') from None


def _value(token, field):
    name, low, high, names = field
    if token.lower() in names:
        return names[token.lower()]
    if not (token.isascii() and token.isdigit()):
        if not token:
            raise CronError(f'empty value in the {name} field')
        if token.isalpha() and names:
            raise CronError(f'unknown {name} name {token!r}')
        raise CronError(f'bad {name} value {token!r}')
    if not low <= int(token) <= high:
        raise CronError(f'{name} {token} is out of range {low}-{high}')
    return int(token)


def _check_field(text, field):
    name = field[0]
    for term in text.split(','):
        span, slash, step = term.partition('/')
        if slash and not (step.isascii() and step.isdigit() and int(step)):
            raise CronError(f'bad step {step!r} in the {name} field '
                            '(must be a whole number above 0)')
        if span == '*':
            continue
        first, dash, last = span.partition('-')
        low = _value(first, field)
        if dash and low > _value(last, field):
            raise CronError(f'backwards range {span!r} in the {name} field')


def parse(expression):
    """Check a cron expression, return it as 5 fields for cronsim."""
    if not isinstance(expression, str):
        raise CronError('cron expression must be a string')
    text = expression.strip()
    if not text:
        raise CronError('empty cron expression')
    if text.startswith('@'):
        if text.lower() not in ALIASES:
            raise CronError(f'unknown alias {text!r} (known: '
                            f'{", ".join(ALIASES)})')
        return ALIASES[text.lower()]
    parts = text.split()
    if len(parts) != 5:
        raise CronError(f'{text!r} has {len(parts)} fields, expected 5 '
                        '(minute hour day-of-month month day-of-week)')
    try:
        for part, field in zip(parts, FIELDS):
            _check_field(part, field)
        CronSim(text, _SOME_DAY)
    except CronError as e:
        raise CronError(f'{text!r}: {e}') from None
    except CronSimError:
        # The fields are fine one by one; what is left is a day that no
        # chosen month has, like '0 0 30 2 *'.
        raise CronError(f'{text!r}: that day-of-month never occurs in the '
                        'chosen months') from None
    return ' '.join(parts)


def _aware(dt, what):
    if not isinstance(dt, datetime) or dt.utcoffset() is None:
        raise ValueError(f'{what} must be a timezone-aware datetime')


class Schedule:
    def __init__(self, expression, timezone):
        self._expr = parse(expression)
        validate_timezone(timezone)
        self.expression = expression.strip()
        self.timezone = timezone
        self._zone = ZoneInfo(timezone)

    def __repr__(self):
        return f'Schedule({self.expression!r}, {self.timezone!r})'

    def _walk(self, start, reverse=False):
        """cronsim iterator from `start`, yielding UTC datetimes."""
        local = start.astimezone(UTC).astimezone(self._zone)  # a real wall time
        for t in CronSim(self._expr, local, reverse):
            yield t.astimezone(UTC)

    def next_after(self, after):
        """The first fire time strictly after `after`."""
        _aware(after, 'after')
        # Fixed-time jobs are walked on wall time: when `after` is in the
        # second pass of a repeated hour, the first answer is already past.
        for t in self._walk(after):
            if t > after:
                return t
        raise CronError(f'{self.expression!r} never fires')

    def fire_times(self, start, end):
        """Fire times t with start < t <= end, ascending, at most 10,000."""
        _aware(start, 'start')
        _aware(end, 'end')
        out = []
        if end <= start:
            return out
        for t in self._walk(start):
            if t > end or len(out) >= MAX_FIRE_TIMES:
                break
            # Two wall times in a DST gap can map to the same instant.
            if t > start and (not out or t > out[-1]):
                out.append(t)
        return out

    def latest_at_or_before(self, when):
        """The most recent fire time <= `when`, or None within 400 days."""
        _aware(when, 'when')
        floor = when - LOOKBACK
        # cronsim's reverse walk yields times strictly before its start.
        start = when.replace(microsecond=0) + timedelta(seconds=1)
        found = None
        for t in self._walk(start, reverse=True):
            if t < floor:
                break
            if t <= when:
                found = t
                break
        # Walking back on wall time can step over a fire time in the
        # repeated hour; walking forward from the candidate finds it.
        t = self.next_after(found or floor - timedelta(microseconds=1))
        while t <= when:
            found, t = t, self.next_after(t)
        return found

    def describe(self):
        """The schedule in plain English, e.g. 'at 08:00 on Monday (UTC)'."""
        try:
            text = CronSim(self._expr, _SOME_DAY).explain()
        except Exception:  # explain() is best effort; the expression is not
            text = self.expression
        return f'{text[:1].lower()}{text[1:]} ({self.timezone})'
