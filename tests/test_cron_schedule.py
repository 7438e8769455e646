"""Cron schedule time logic: syntax, validation, DST, ranges, describe()."""
import bisect
import re
from datetime import UTC, datetime, timedelta
from zoneinfo import ZoneInfo

import pytest

from mailq.cron.schedule import (
    MAX_FIRE_TIMES, CronError, Schedule, validate_timezone)

BERLIN = ZoneInfo('Europe/Berlin')
NEW_YORK = ZoneInfo('America/New_York')


def utc(*args):
    return datetime(*args, tzinfo=UTC)


def fires(expr, start, end, tz='UTC'):
    return Schedule(expr, tz).fire_times(start, end)


def minutes_and_hours(expr, start, end):
    return [(t.hour, t.minute) for t in fires(expr, start, end)]


# -- syntax -----------------------------------------------------------------

def test_names_match_numbers_and_ignore_case():
    start, end = utc(2026, 1, 1), utc(2027, 1, 1)
    numeric = fires('0 8 * 1,6 1', start, end)
    assert fires('0 8 * jan,jun mon', start, end) == numeric
    assert fires('0 8 * JAN,Jun MON', start, end) == numeric
    assert all(t.weekday() == 0 and t.month in (1, 6) for t in numeric)
    assert len(numeric) == 9      # 4 Mondays in Jan 2026, 5 in June


def test_name_ranges():
    got = fires('0 8 * * mon-fri', utc(2026, 6, 1), utc(2026, 6, 8))
    assert [t.day for t in got] == [1, 2, 3, 4, 5]   # June 1 2026 is a Monday


def test_ranges():
    got = minutes_and_hours('0 9-11 * * *', utc(2026, 6, 1), utc(2026, 6, 2))
    assert got == [(9, 0), (10, 0), (11, 0)]


def test_steps():
    one_hour = utc(2026, 6, 1, 8, 59), utc(2026, 6, 1, 9, 59)
    assert [m for _, m in minutes_and_hours('*/20 * * * *', *one_hour)] == [0, 20, 40]
    assert [m for _, m in minutes_and_hours('5-59/20 * * * *', *one_hour)] == [5, 25, 45]
    assert [m for _, m in minutes_and_hours('10/25 * * * *', *one_hour)] == [10, 35]
    assert [m for _, m in minutes_and_hours('0-30/15,50 * * * *', *one_hour)] == [
        0, 15, 30, 50]
    days = fires('0 0 * * */2', utc(2026, 6, 1), utc(2026, 6, 8))  # Sun Tue Thu Sat
    assert [t.strftime('%a') for t in days] == ['Tue', 'Thu', 'Sat', 'Sun']


def test_lists():
    got = minutes_and_hours('0,30 8,12 * * *', utc(2026, 6, 1), utc(2026, 6, 2))
    assert got == [(8, 0), (8, 30), (12, 0), (12, 30)]


def test_sunday_is_0_and_7():
    start, end = utc(2026, 6, 1), utc(2026, 7, 1)
    assert fires('0 0 * * 0', start, end) == fires('0 0 * * 7', start, end)
    assert fires('0 0 * * 7', start, end) == fires('0 0 * * sun', start, end)


def test_day_of_month_or_day_of_week():
    # Both restricted: either one matches (Vixie cron).
    got = fires('0 0 13 * fri', utc(2026, 2, 1), utc(2026, 3, 1))
    assert [t.day for t in got] == [6, 13, 20, 27]   # Fridays, and the 13th (a Fri)
    got = fires('0 0 10 * fri', utc(2026, 2, 1), utc(2026, 3, 1))
    assert [t.day for t in got] == [6, 10, 13, 20, 27]
    # One field starting with '*': both must match, as in Vixie cron.
    got = fires('0 0 */2 * fri', utc(2026, 2, 1), utc(2026, 3, 1))
    assert [t.day for t in got] == [13, 27]


@pytest.mark.parametrize('alias, expr', [
    ('@yearly', '0 0 1 1 *'), ('@annually', '0 0 1 1 *'),
    ('@monthly', '0 0 1 * *'), ('@weekly', '0 0 * * 0'),
    ('@daily', '0 0 * * *'), ('@midnight', '0 0 * * *'),
    ('@hourly', '0 * * * *'),
])
def test_aliases(alias, expr):
    start, end = utc(2025, 12, 1), utc(2027, 2, 1)
    assert fires(alias, start, end) == fires(expr, start, end)
    assert Schedule(alias.upper(), 'UTC').expression == alias.upper()


def test_keeps_expression_and_timezone():
    s = Schedule('  30 8 * * mon  ', 'Europe/Berlin')
    assert (s.expression, s.timezone) == ('30 8 * * mon', 'Europe/Berlin')
    assert repr(s) == "Schedule('30 8 * * mon', 'Europe/Berlin')"


# -- validation ---------------------------------------------------------------

@pytest.mark.parametrize('expr, message', [
    ('', 'empty cron expression'),
    ('   ', 'empty cron expression'),
    ('* * * *', 'has 4 fields, expected 5'),
    ('0 * * * * *', 'has 6 fields, expected 5'),
    ('60 * * * *', 'minute 60 is out of range 0-59'),
    ('0 24 * * *', 'hour 24 is out of range 0-23'),
    ('0 0 0 * *', 'day-of-month 0 is out of range 1-31'),
    ('0 0 32 * *', 'day-of-month 32 is out of range 1-31'),
    ('0 0 * 13 *', 'month 13 is out of range 1-12'),
    ('0 0 * * 8', 'day-of-week 8 is out of range 0-7'),
    ('0 0 * * 1-9', 'day-of-week 9 is out of range 0-7'),
    ('0 0 * foo *', "unknown month name 'foo'"),
    ('0 0 * * funday', "unknown day-of-week name 'funday'"),
    ('0 0 * * jan', "unknown day-of-week name 'jan'"),
    ('0 0 * mon *', "unknown month name 'mon'"),
    ('x * * * *', "bad minute value 'x'"),
    ('1.5 * * * *', "bad minute value '1.5'"),
    ('*/0 * * * *', "bad step '0' in the minute field"),
    ('*/x * * * *', "bad step 'x' in the minute field"),
    ('0 */ * * *', "bad step '' in the hour field"),
    ('0 0 1-10/-2 * *', "bad step '-2' in the day-of-month field"),
    ('30-10 * * * *', "backwards range '30-10' in the minute field"),
    ('0 0 * * fri-mon', "backwards range 'fri-mon' in the day-of-week field"),
    ('1,,2 * * * *', 'empty value in the minute field'),
    ('0 0 L * *', "bad day-of-month value 'L'"),
    ('0 0 * * 5#2', "bad day-of-week value '5#2'"),
    ('0 0 30 2 *', 'day-of-month never occurs in the chosen months'),
    ('0 0 31 4,6 *', 'day-of-month never occurs in the chosen months'),
    ('@reboot', "unknown alias '@reboot'"),
    ('@every 5m', "unknown alias '@every 5m'"),
])
def test_bad_expressions(expr, message):
    with pytest.raises(CronError, match=re.escape(message)) as e:
        Schedule(expr, 'UTC')
    assert isinstance(e.value, ValueError)
    if expr.strip() and not expr.startswith('@'):
        assert repr(expr.strip()) in str(e.value)     # names the expression


def test_not_a_string():
    with pytest.raises(CronError, match='must be a string'):
        Schedule(None, 'UTC')


def test_feb_29_is_allowed():
    got = fires('0 0 29 2 *', utc(2026, 1, 1), utc(2029, 1, 1))
    assert got == [utc(2028, 2, 29)]


@pytest.mark.parametrize('name', [
    'Mars/Olympus', 'Europe/berlin', 'Europe', '', '../etc/passwd',
    '/etc/localtime', None])
def test_unknown_timezone(name):
    with pytest.raises(CronError, match='unknown timezone'):
        validate_timezone(name)
    with pytest.raises(CronError, match='unknown timezone'):
        Schedule('@daily', name)


@pytest.mark.parametrize('name', ['UTC', 'Europe/Berlin', 'America/New_York'])
def test_known_timezone(name):
    assert validate_timezone(name) is None


def test_naive_datetimes_are_refused():
    s = Schedule('@daily', 'UTC')
    with pytest.raises(ValueError, match='timezone-aware'):
        s.next_after(datetime(2026, 1, 1))
    with pytest.raises(ValueError, match='timezone-aware'):
        s.fire_times(datetime(2026, 1, 1), utc(2026, 1, 2))
    with pytest.raises(ValueError, match='timezone-aware'):
        s.latest_at_or_before(datetime(2026, 1, 1))


# -- DST ------------------------------------------------------------------------
# Each row: zone, the transition day, the job, and its UTC fire instants on
# the day before, the day itself and the day after: once a day, every day.

DST_CASES = [
    # Berlin, spring forward 2026-03-29 02:00 CET -> 03:00 CEST
    ('Europe/Berlin', (2026, 3, 29), '30 2 * * *', [
        utc(2026, 3, 28, 1, 30), utc(2026, 3, 29, 1, 0), utc(2026, 3, 30, 0, 30)]),
    ('Europe/Berlin', (2026, 3, 29), '30 1 * * *', [
        utc(2026, 3, 28, 0, 30), utc(2026, 3, 29, 0, 30), utc(2026, 3, 29, 23, 30)]),
    # Berlin, fall back 2026-10-25 03:00 CEST -> 02:00 CET (02:xx repeats)
    ('Europe/Berlin', (2026, 10, 25), '30 2 * * *', [
        utc(2026, 10, 24, 0, 30), utc(2026, 10, 25, 0, 30), utc(2026, 10, 26, 1, 30)]),
    ('Europe/Berlin', (2026, 10, 25), '30 1 * * *', [
        utc(2026, 10, 23, 23, 30), utc(2026, 10, 24, 23, 30), utc(2026, 10, 26, 0, 30)]),
    # New York, spring forward 2026-03-08 02:00 EST -> 03:00 EDT
    ('America/New_York', (2026, 3, 8), '30 2 * * *', [
        utc(2026, 3, 7, 7, 30), utc(2026, 3, 8, 7, 0), utc(2026, 3, 9, 6, 30)]),
    ('America/New_York', (2026, 3, 8), '30 1 * * *', [
        utc(2026, 3, 7, 6, 30), utc(2026, 3, 8, 6, 30), utc(2026, 3, 9, 5, 30)]),
    # New York, fall back 2026-11-01 02:00 EDT -> 01:00 EST (01:xx repeats)
    ('America/New_York', (2026, 11, 1), '30 2 * * *', [
        utc(2026, 10, 31, 6, 30), utc(2026, 11, 1, 7, 30), utc(2026, 11, 2, 7, 30)]),
    ('America/New_York', (2026, 11, 1), '30 1 * * *', [
        utc(2026, 10, 31, 5, 30), utc(2026, 11, 1, 5, 30), utc(2026, 11, 2, 6, 30)]),
]


def _three_days(tz, day):
    zone = ZoneInfo(tz)
    midnight = datetime(*day, tzinfo=zone)
    # Aware arithmetic in one zone is wall-clock arithmetic: local midnights.
    return midnight - timedelta(days=1), midnight + timedelta(days=2)


@pytest.mark.parametrize('tz, day, expr, expected', DST_CASES)
def test_daily_job_runs_once_a_day_across_dst(tz, day, expr, expected):
    start, end = _three_days(tz, day)
    got = Schedule(expr, tz).fire_times(start, end)
    assert got == expected
    assert len({t.astimezone(ZoneInfo(tz)).date() for t in got}) == 3


@pytest.mark.parametrize('tz, day, expr, expected', DST_CASES)
def test_next_and_latest_across_dst(tz, day, expr, expected):
    s = Schedule(expr, tz)
    before, on_day, after = expected
    assert s.next_after(before) == on_day
    assert s.next_after(on_day) == after
    assert s.next_after(on_day - timedelta(seconds=1)) == on_day
    assert s.latest_at_or_before(on_day) == on_day
    assert s.latest_at_or_before(on_day - timedelta(seconds=1)) == before
    assert s.latest_at_or_before(after - timedelta(microseconds=1)) == on_day


def test_spring_forward_gap_time_runs_at_first_valid_instant():
    t = Schedule('30 2 * * *', 'America/New_York').next_after(utc(2026, 3, 8))
    local = t.astimezone(NEW_YORK)
    assert (local.hour, local.minute, local.utcoffset()) == (3, 0, timedelta(hours=-4))


def test_fall_back_time_runs_at_first_occurrence_only():
    s = Schedule('30 1 * * *', 'America/New_York')
    first = utc(2026, 11, 1, 5, 30)           # 01:30 EDT
    assert s.next_after(utc(2026, 11, 1)) == first
    # Asked during the second 01:xx (EST), it does not run again that day.
    second_pass = datetime(2026, 11, 1, 1, 15, fold=1, tzinfo=NEW_YORK)
    assert second_pass.astimezone(UTC) == utc(2026, 11, 1, 6, 15)
    assert s.next_after(second_pass) == utc(2026, 11, 2, 6, 30)
    assert s.latest_at_or_before(second_pass) == first


@pytest.mark.parametrize('tz, start, local_hours', [
    ('Europe/Berlin', utc(2026, 3, 28, 22), [0, 1, 3, 4, 5]),
    ('Europe/Berlin', utc(2026, 10, 24, 21), [0, 1, 2, 2, 3]),
    ('America/New_York', utc(2026, 3, 8, 4), [0, 1, 3, 4, 5]),
    ('America/New_York', utc(2026, 11, 1, 3), [0, 1, 1, 2, 3]),
])
def test_hourly_job_follows_real_time_across_dst(tz, start, local_hours):
    got = Schedule('0 * * * *', tz).fire_times(start, start + timedelta(hours=5))
    assert got == [start + timedelta(hours=h) for h in range(1, 6)]
    assert [t.astimezone(ZoneInfo(tz)).hour for t in got] == local_hours


def test_quarter_hour_job_fires_through_repeated_hour():
    # Berlin 2026-10-25: 02:00-03:00 local happens twice; */15 fires in both.
    start = utc(2026, 10, 24, 23, 59)
    got = Schedule('*/15 * * * *', 'Europe/Berlin').fire_times(
        start, utc(2026, 10, 25, 2))
    assert got == [utc(2026, 10, 25) + timedelta(minutes=15 * i) for i in range(9)]
    local = [t.astimezone(BERLIN).strftime('%H:%M') for t in got]
    assert local == ['02:00', '02:15', '02:30', '02:45',
                     '02:00', '02:15', '02:30', '02:45', '03:00']


@pytest.mark.parametrize('expr', ['30 2 * * *', '30 1 * * *', '0 * * * *',
                                  '*/15 * * * *', '0,30 1-3 * * *'])
@pytest.mark.parametrize('tz, day', [
    ('Europe/Berlin', (2026, 3, 29)), ('Europe/Berlin', (2026, 10, 25)),
    ('America/New_York', (2026, 3, 8)), ('America/New_York', (2026, 11, 1)),
])
def test_next_and_latest_agree_with_fire_times(expr, tz, day):
    s = Schedule(expr, tz)
    start, end = _three_days(tz, day)
    all_fires = s.fire_times(start - timedelta(days=1), end + timedelta(days=1))
    assert all_fires == sorted(set(all_fires))
    when = start.astimezone(UTC)
    while when < end:
        i = bisect.bisect_right(all_fires, when)
        assert s.next_after(when) == all_fires[i]
        assert s.latest_at_or_before(when) == all_fires[i - 1]
        when += timedelta(minutes=13)


# -- fire_times, next_after, latest_at_or_before ------------------------------------

def test_fire_times_excludes_start_includes_end():
    s = Schedule('0 * * * *', 'UTC')
    assert s.fire_times(utc(2026, 6, 1, 8), utc(2026, 6, 1, 10)) == [
        utc(2026, 6, 1, 9), utc(2026, 6, 1, 10)]


def test_fire_times_empty_ranges():
    s = Schedule('* * * * *', 'UTC')
    assert s.fire_times(utc(2026, 6, 1, 8), utc(2026, 6, 1, 8)) == []
    assert s.fire_times(utc(2026, 6, 1, 9), utc(2026, 6, 1, 8)) == []
    assert s.fire_times(utc(2026, 6, 1, 8, 0, 1), utc(2026, 6, 1, 8, 0, 59)) == []


def test_fire_times_accepts_any_timezone_and_returns_utc():
    s = Schedule('0 9 * * *', 'Europe/Berlin')
    start = datetime(2026, 6, 1, tzinfo=NEW_YORK)    # 04:00 UTC
    got = s.fire_times(start, start + timedelta(days=2))
    assert got == [utc(2026, 6, 1, 7), utc(2026, 6, 2, 7)]
    assert all(t.tzinfo is UTC for t in got)


def test_fire_times_is_capped():
    got = Schedule('* * * * *', 'UTC').fire_times(utc(2026, 1, 1), utc(2026, 2, 1))
    assert len(got) == MAX_FIRE_TIMES == 10_000
    assert got[0] == utc(2026, 1, 1, 0, 1)
    assert got[-1] == utc(2026, 1, 1) + timedelta(minutes=10_000)


def test_next_after_is_strictly_after():
    s = Schedule('30 8 * * *', 'UTC')
    assert s.next_after(utc(2026, 6, 1, 8, 29, 59)) == utc(2026, 6, 1, 8, 30)
    assert s.next_after(utc(2026, 6, 1, 8, 30)) == utc(2026, 6, 2, 8, 30)
    assert s.next_after(utc(2026, 6, 1, 8, 29, 59, 999999)) == utc(2026, 6, 1, 8, 30)


def test_next_after_returns_utc():
    t = Schedule('0 9 * * *', 'America/New_York').next_after(
        datetime(2026, 6, 1, 12, tzinfo=BERLIN))
    assert t == utc(2026, 6, 1, 13) and t.tzinfo is UTC


def test_latest_at_or_before():
    s = Schedule('30 8 * * mon-fri', 'UTC')
    assert s.latest_at_or_before(utc(2026, 6, 3, 8, 30)) == utc(2026, 6, 3, 8, 30)
    assert s.latest_at_or_before(utc(2026, 6, 3, 8, 30, 0, 500)) == utc(2026, 6, 3, 8, 30)
    assert s.latest_at_or_before(utc(2026, 6, 3, 8, 29, 59)) == utc(2026, 6, 2, 8, 30)
    # Sunday: the last one was Friday.
    assert s.latest_at_or_before(utc(2026, 6, 7, 12)) == utc(2026, 6, 5, 8, 30)
    assert s.latest_at_or_before(utc(2026, 6, 7, 12)).tzinfo is UTC


def test_latest_at_or_before_looks_back_400_days_at_most():
    yearly = Schedule('@yearly', 'UTC')
    assert yearly.latest_at_or_before(utc(2026, 12, 31)) == utc(2026, 1, 1)
    leap_day = Schedule('0 0 29 2 *', 'UTC')
    assert leap_day.latest_at_or_before(utc(2025, 3, 1)) == utc(2024, 2, 29)
    assert leap_day.latest_at_or_before(utc(2025, 4, 3)) == utc(2024, 2, 29)
    assert leap_day.latest_at_or_before(utc(2025, 4, 5)) is None   # 401 days
    assert leap_day.latest_at_or_before(utc(2027, 1, 1)) is None


# -- describe -----------------------------------------------------------------------

@pytest.mark.parametrize('expr, tz, text', [
    ('* * * * *', 'UTC', 'every minute (UTC)'),
    ('*/15 * * * *', 'UTC', 'every 15th minute of every hour (UTC)'),
    ('@hourly', 'UTC', 'at the start of every hour (UTC)'),
    ('15 * * * *', 'UTC', 'at minute 15 of every hour (UTC)'),
    ('@daily', 'America/New_York', 'at 00:00 every day (America/New_York)'),
    ('30 2 * * *', 'Europe/Berlin', 'at 02:30 every day (Europe/Berlin)'),
    ('0 8 * * mon-fri', 'Europe/Berlin',
     'at 08:00 on Monday through Friday (Europe/Berlin)'),
    ('0 8 * * 1-5', 'Europe/Berlin',
     'at 08:00 on Monday through Friday (Europe/Berlin)'),
    ('@weekly', 'UTC', 'at 00:00 on Sunday (UTC)'),
    ('0 0 1 * *', 'UTC', 'at 00:00 on the first day of every month (UTC)'),
    ('0 9 15 * *', 'UTC', 'at 09:00 on the 15th day of every month (UTC)'),
    ('@yearly', 'UTC', 'at 00:00 on January 1 (UTC)'),
])
def test_describe(expr, tz, text):
    assert Schedule(expr, tz).describe() == text
