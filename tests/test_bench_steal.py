"""bench/steal.py: the CPU steal a bench run prints, read from the real /proc/stat."""
import time

from bench import steal
from bench.report import steal_lines


def test_share_is_stolen_ticks_over_all_ticks():
    assert steal._pct((100, 5), (300, 25)) == 10.0
    assert steal._pct((100, 5), (100, 5)) == 0.0


def test_machine_ticks_grow_and_steal_is_part_of_them():
    total, stolen = steal.machine_ticks()
    deadline = time.monotonic() + 0.2
    while time.monotonic() < deadline:
        pass
    later_total, later_stolen = steal.machine_ticks()
    assert 0 <= stolen <= total
    assert later_total > total and later_stolen >= stolen


def test_stolen_ticks_are_the_steal_field_of_proc_stat():
    """proc(5): user nice system idle iowait irq softirq steal guest guest_nice."""
    names = 'user nice system idle iowait irq softirq steal'.split()
    def labelled():
        with open('/proc/stat') as fh:
            return dict(zip(names, map(int, fh.readline().split()[1:])))
    before = labelled()
    _, stolen = steal.machine_ticks()
    after = labelled()
    assert before['steal'] <= stolen <= after['steal']


def test_each_step_ends_where_the_next_begins():
    log = steal.StealLog()
    log.begin('first')
    time.sleep(0.3)
    log.begin('second')
    time.sleep(0.01)
    run = log.finish()
    assert [s['step'] for s in run['steps']] == ['first', 'second']
    assert run['steps'][0]['seconds'] >= 0.3 > run['steps'][1]['seconds']
    assert all(0.0 <= s['steal_pct'] <= 100.0 for s in run['steps'])
    assert 0.0 <= run['run_pct'] <= 100.0
    assert log.finish()['steps'] == run['steps']        # nothing left open to close twice


def test_report_names_the_worst_steps_first():
    steps = [{'step': name, 'seconds': 10.0, 'steal_pct': pct}
             for name, pct in (('quiet', 0.1), ('worst', 9.5), ('middle', 2.0), ('low', 1.0))]
    text = steal_lines({'steal': {'steps': steps, 'run_pct': 3.2}})
    assert '3.2 % of the run' in text
    shown = [line.split()[-3] for line in text.splitlines()[3:]]
    assert shown == ['worst', 'middle', 'low']
    assert steal_lines({}) == ''
