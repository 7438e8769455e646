"""`python -m bench.curves --tiny`: the curves of `make bench-curves` run end to end on the
smallest sizes (real redis-server, smtp-sink, worker and web processes), and what they
write is whole: every series with positive numbers, every PNG a PNG."""
import json
import shutil
import struct
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
PNG = b'\x89PNG\r\n\x1a\n'

pytestmark = pytest.mark.skipif(not Path('/usr/sbin/smtp-sink').exists()
                                or not shutil.which('redis-cli'),
                                reason='the bench needs Postfix smtp-sink and redis-cli')


@pytest.fixture(scope='module')
def curves(tmp_path_factory):
    out = tmp_path_factory.mktemp('curves')
    done = subprocess.run([sys.executable, '-m', 'bench.curves', '--tiny', '--out', str(out)],
                          cwd=REPO, capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr[-3000:]
    return out, json.loads((out / 'curves.json').read_text())


def test_every_series_has_positive_numbers(curves):
    _, r = curves
    sizes = r['sizes']
    assert [p['workers'] for p in r['delivery_workers']] == sizes['workers']
    assert [p['size'] for p in r['delivery_size']] == list(sizes['sizes'])
    for point in r['delivery_workers'] + r['delivery_size']:
        assert point['rate'] > 0 and point['cpu_us_per_mail'] > 0 and point['problems'] == []
    assert [p['bytes'] > 0 for p in r['delivery_size']] == [True] * 4
    assert [p['stored'] for p in r['enqueue_history']] == sizes['history']
    for point in r['enqueue_history']:
        for kind in ('http', 'send'):
            assert point[kind]['rate'] > 0 and point[kind]['p99_ms'] > 0
        assert point['http']['statuses'] == {'202': sizes['http']}
    assert set(r['memory']) == {'queued_2kb', 'sent_html_body_kept', 'history_2kb'}
    for series in r['memory'].values():
        assert len(series) >= 2
        assert all(stored > 0 and used > 0 and each > 0 for stored, used, each in series)
    assert r['memory']['history_2kb'][-1][0] == sizes['history'][-1]
    assert r['history_fill']['seconds'] > 0
    assert r['machine']['cpus'] > 0 and 'load_before' in r['machine']


def test_the_history_is_sent_mail(curves):
    """The fills leave sent records with one attempt each (bench.curves.check_history reads
    the first mail of every chunk); the history without its bodies, the HTML mails with."""
    _, r = curves
    assert r['history_fill']['problems'] == [] and r['sent_fill_problems'] == []
    assert r['history_fill']['probed'] >= 2
    history, kept = r['memory']['history_2kb'][-1][2], r['memory']['sent_html_body_kept'][-1][2]
    assert 300 < history < kept


def test_each_curve_is_a_png(curves):
    out, _ = curves
    for name in ('delivery_workers', 'delivery_size', 'enqueue_history', 'memory'):
        data = (out / f'{name}.png').read_bytes()
        assert data[:8] == PNG and data[12:16] == b'IHDR'
        width, height = struct.unpack('>II', data[16:24])
        assert width >= 600 and height >= 300
        assert data[-8:-4] == b'IEND'
