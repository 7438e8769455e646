"""store/record.py's iso(): the times every API answer, page and webhook event shows."""
import datetime
import random

import pytest

from mailq.store.record import iso


def stdlib(ts):
    return datetime.datetime.fromtimestamp(float(ts), datetime.timezone.utc).isoformat(
        timespec='milliseconds').replace('+00:00', 'Z')


EDGES = [0, 0.0005, 0.9994999, 0.9995, 0.9999994, 0.9999995, 0.9999996, 59.9999999,
         86399.9999999, 951782399.9999997, 1796256928.7683582, 1796256928.0, 4102444799.9995,
         1_000_000_000.5005, 253402300799.0]


@pytest.mark.parametrize('ts', EDGES)
def test_iso_writes_what_datetime_writes_at_the_edges(ts):
    assert iso(ts) == stdlib(ts)


def test_iso_writes_what_datetime_writes_for_random_times_and_forms():
    rng = random.Random(15)
    # The same second again and again (the cache), then seconds in no order.
    times = [1796256928 + rng.random() for _ in range(2000)]
    times += [rng.uniform(0, 4102444800) for _ in range(20000)]
    for ts in times:
        assert iso(ts) == stdlib(ts), ts
        assert iso(repr(ts)) == stdlib(ts)
        assert iso(repr(ts).encode()) == stdlib(ts)


@pytest.mark.parametrize('empty', [None, '', b''])
def test_iso_of_no_time_is_none(empty):
    assert iso(empty) is None


def test_iso_refuses_what_is_not_a_time():
    with pytest.raises(ValueError):
        iso('soon')
