"""[worker] and [web] cpu_affinity: a worker or web process keeps its threads on one CPU
(mailq/affinity.py). The choice rule on its own, then real worker and web processes read
through /proc: a thread worker's every thread on one core, a swarm's members on different
ones, the webhook dispatcher (restarted after a kill -9 too) left to the kernel, `none`
leaving all; `mailq web` placed alike, alone and with [web] processes = 2, and
`mailq submission`."""
import os
import signal
import time

import pytest

from mailq.affinity import MARGIN, TICKS, choose
from support.mailq_app import start_worker
from support.procs import PYTHON, REPO_ROOT, children, free_port, start_process, stop_process

pytestmark = pytest.mark.skipif(len(os.sched_getaffinity(0)) < 2, reason='needs 2 CPUs')
ALL = ','.join(map(str, sorted(os.sched_getaffinity(0))))


def test_choose_stays_within_the_margin_and_moves_beyond_it():
    tick = MARGIN * 10 * TICKS           # the margin over a 10 s interval, in ticks
    assert choose({0: 500, 1: 500 - tick * 0.9}, 0, 10) == 0
    assert choose({0: 500, 1: 500 - tick * 1.1}, 0, 10) == 1
    assert choose({0: 900, 1: 100, 2: 400}, 0, 10) == 1


def test_the_first_choice_among_near_equals_goes_by_pid():
    both = {0: 300, 1: 300 + MARGIN * TICKS * 0.5}
    assert choose(both, None, 1) == sorted(both)[os.getpid() % 2]
    assert choose({0: 300, 1: 300 + MARGIN * TICKS * 2}, None, 1) == 0


def masks(pid):
    """{Cpus_allowed_list} of every thread of a process."""
    found = set()
    for tid in os.listdir(f'/proc/{pid}/task'):
        with open(f'/proc/{pid}/task/{tid}/status') as fh:
            found |= {line.split()[1] for line in fh if line.startswith('Cpus_allowed_list')}
    return found


def wait_for(what, check, timeout=20):
    deadline = time.monotonic() + timeout
    while not check():
        assert time.monotonic() < deadline, f'timed out waiting: {what}'
        time.sleep(0.1)


@pytest.fixture
def ini(tmp_ini, redis_url, smtp_server):
    def make(**worker):
        return tmp_ini(redis={'url': redis_url},
                       worker={'concurrency': '4', **worker},
                       smtp={'transport': 'smtp', 'host': '127.0.0.1',
                             'port': str(smtp_server.port), 'from': 'q@example.com'},
                       **{'webhook:app': {'url': f'http://127.0.0.1:{free_port()}/',
                                          'secret': 's'}})
    return make


@pytest.fixture
def procs():
    started = []
    yield started
    for proc in started:
        stop_process(proc)


def test_a_thread_worker_keeps_every_thread_on_one_cpu_and_its_dispatcher_on_all(
        ini, procs):
    worker = start_worker(ini(), '-w', '4')
    procs.append(worker)
    wait_for('one CPU for every thread', lambda: len(masks(worker.pid)) == 1
             and next(iter(masks(worker.pid))) in ALL.split(','))
    (dispatcher,) = children(worker.pid)
    assert masks(dispatcher) == {_listed(ALL)}
    # A dispatcher forked again after a kill -9 comes from a placed worker: it is let go.
    os.kill(dispatcher, signal.SIGKILL)
    wait_for('the dispatcher restarted', lambda: children(worker.pid) - {dispatcher})
    (restarted,) = children(worker.pid) - {dispatcher}
    # Forked with the worker's one CPU, it lets go of it first thing.
    wait_for('the restarted dispatcher on every CPU',
             lambda: masks(restarted) == {_listed(ALL)}, timeout=5)
    assert len(masks(worker.pid)) == 1


def test_a_swarm_puts_its_members_on_different_cpus(ini, procs):
    worker = start_worker(ini(), '-w', '4', '-k', 'process')
    procs.append(worker)
    first, second = two_placed_children(worker.pid)
    assert masks(first) != masks(second)
    assert masks(worker.pid) == {_listed(ALL)}      # the supervising parent is not placed


def two_placed_children(pid):
    """The two children of `pid`, once each keeps its threads on one CPU."""
    members = []

    def placed():
        members[:] = [m for m in children(pid) if len(masks(m)) == 1
                      and masks(m) != {_listed(ALL)}]
        return len(members) == 2
    wait_for('two children each on one CPU', placed)
    return members


def test_none_leaves_the_threads_to_the_kernel(ini, procs):
    worker = start_worker(ini(cpu_affinity='none'), '-w', '4')
    procs.append(worker)
    wait_for('the worker started', lambda: len(os.listdir(f'/proc/{worker.pid}/task')) > 4)
    time.sleep(2.5)                     # past the first choice an `auto` worker makes
    assert masks(worker.pid) == {_listed(ALL)}


@pytest.fixture
def web_ini(tmp_ini, redis_url):
    def make(**web):
        return tmp_ini(redis={'url': redis_url},
                       web={'host': '127.0.0.1', 'port': str(free_port()), **web})
    return make


def start_web(ini):
    return start_process([PYTHON, REPO_ROOT / 'mailq.py', 'web', '-c', ini])


def test_a_web_process_keeps_every_thread_on_one_cpu(web_ini, procs):
    web = start_web(web_ini())
    procs.append(web)
    wait_for('one CPU for every web thread', lambda: len(os.listdir(f'/proc/{web.pid}/task')) > 4
             and len(masks(web.pid)) == 1 and masks(web.pid) != {_listed(ALL)})


def test_web_processes_each_take_their_own_cpu(web_ini, procs):
    web = start_web(web_ini(processes='2'))
    procs.append(web)
    first, second = two_placed_children(web.pid)
    assert masks(first) != masks(second)
    assert masks(web.pid) == {_listed(ALL)}         # the parent that forks them is not placed


def test_web_none_leaves_the_threads_to_the_kernel(web_ini, procs):
    web = start_web(web_ini(cpu_affinity='none'))
    procs.append(web)
    wait_for('the web started', lambda: len(os.listdir(f'/proc/{web.pid}/task')) > 4)
    time.sleep(2.5)                     # past the first choice an `auto` web makes
    assert masks(web.pid) == {_listed(ALL)}


def test_the_submission_listener_keeps_its_threads_on_one_cpu(tmp_ini, redis_url, procs):
    ini = tmp_ini(redis={'url': redis_url},
                  submission={'enabled': 'yes', 'port': str(free_port())})
    listener = start_process([PYTHON, REPO_ROOT / 'mailq.py', 'submission', '-c', ini])
    procs.append(listener)
    wait_for('one CPU for the listener', lambda: len(os.listdir(f'/proc/{listener.pid}/task')) > 1
             and len(masks(listener.pid)) == 1 and masks(listener.pid) != {_listed(ALL)})


def _listed(cpus):
    """'0,1,2' as /proc writes it: '0-2'."""
    numbers = [int(c) for c in cpus.split(',')]
    if numbers == list(range(numbers[0], numbers[-1] + 1)) and len(numbers) > 1:
        return f'{numbers[0]}-{numbers[-1]}'
    return cpus
