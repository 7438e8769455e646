"""`make run` installs the runtime only, from requirements.lock with hashes; `make test` adds
the test tools from requirements-test.lock (issue 11 items 17 and 21)."""
import configparser
import re
import subprocess

import pytest

from support.procs import REPO_ROOT

# A pin line of a lock file, with or without an environment marker (uvloop's).
PIN = re.compile(r'^([A-Za-z0-9_.-]+)==(\S+)(?: ;[^\\]*)? \\$')


def pins(name):
    """{package: (version, number of hashes)} of a lock file."""
    found, current = {}, None
    for line in (REPO_ROOT / name).read_text().splitlines():
        match = PIN.match(line)
        if match:
            current = match.group(1).lower().replace('_', '-')
            found[current] = [match.group(2), 0]
        elif line.strip().startswith('--hash=sha256:') and current:
            found[current][1] += 1
    return found


def requirements(key):
    cfg = configparser.ConfigParser()
    cfg.read(REPO_ROOT / 'setup.cfg')
    section, option = key
    lines = [line.split('#')[0].strip() for line in cfg[section][option].splitlines()]
    return dict(re.match(r'^([A-Za-z0-9_.-]+)>=([^\s;]+)(?:; .+)?$', line).groups()
                for line in lines if line)


def version(text):
    return tuple(int(part) for part in text.split('.'))


@pytest.mark.parametrize('lock, keys', [
    ('requirements.lock', [('options', 'install_requires')]),
    ('requirements-test.lock', [('options', 'install_requires'),
                                ('options.extras_require', 'test'),
                                ('options.extras_require', 'bench')]),
])
def test_every_requirement_is_pinned_at_its_floor_with_hashes(lock, keys):
    pinned = pins(lock)
    assert pinned and all(count >= 1 for _, count in pinned.values()), pinned
    for key in keys:
        for name, floor in requirements(key).items():
            name = name.lower().replace('_', '-')
            assert name in pinned, f'{name} is missing from {lock}'
            # README: the floors are the versions the suite ran on, i.e. the pins
            assert version(pinned[name][0]) == version(floor), (name, pinned[name], floor)


def test_the_runtime_lock_holds_no_test_tool():
    runtime = pins('requirements.lock')
    for extra in ('test', 'bench'):
        for tool in requirements(('options.extras_require', extra)):
            assert tool.lower() not in runtime


@pytest.mark.parametrize('target, lock', [('run', 'requirements.lock'),
                                          ('dist', 'requirements.lock'),
                                          ('test', 'requirements-test.lock'),
                                          ('venv', 'requirements-test.lock')])
def test_each_make_target_installs_through_its_lock(tmp_path, target, lock):
    """What `make TARGET` would run in a fresh venv (make -n): pip only ever installs the
    lock with hashes and mailq itself without its dependencies."""
    venv = tmp_path / 'fresh'
    plan = subprocess.run(['make', '-n', '-C', str(REPO_ROOT), f'VENV={venv}', target],
                          capture_output=True, text=True, timeout=60, check=True).stdout
    installs = [line for line in plan.splitlines() if ' install ' in line]
    assert installs == [f'{venv}/bin/pip install --require-hashes -r {lock}',
                        f'{venv}/bin/pip install --no-deps -e .'], plan
    assert f'{venv}/bin/pip check' in plan


def test_ci_installs_through_make_only():
    lines = [line.split('#')[0].strip()
             for line in (REPO_ROOT / '.ci' / 'run').read_text().splitlines()]
    makes = [line for line in lines if line.startswith('make ')]
    assert makes[0] == 'make venv' and 'make test' in makes, makes
    assert not any(re.search(r'\bpip3?\b', line) for line in lines)


@pytest.mark.slow
def test_make_venv_run_installs_the_runtime_only_and_mailq_runs(tmp_path):
    venv = tmp_path / 'venv'
    result = subprocess.run(['make', '-C', str(REPO_ROOT), f'VENV={venv}', 'venv-run'],
                            capture_output=True, text=True, timeout=540)
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    assert '--require-hashes -r requirements.lock' in result.stdout
    assert (venv / '.installed-run').exists() and not (venv / '.installed-test').exists()
    listed = subprocess.run([venv / 'bin' / 'pip', 'list', '--format=freeze'],
                            capture_output=True, text=True, check=True).stdout.lower()
    installed = {line.split('==')[0] for line in listed.splitlines()}
    runtime = set(pins('requirements.lock'))
    assert runtime <= {name.replace('_', '-') for name in installed}
    for tool in ('pytest', 'playwright', 'ruff', 'hypothesis', 'django'):
        assert tool not in installed, listed
    out = subprocess.run([venv / 'bin' / 'python', REPO_ROOT / 'mailq.py', 'send', '--help'],
                         capture_output=True, text=True, timeout=60)
    assert out.returncode == 0 and '--idempotency-key' in out.stdout, out.stderr
    # A second run finds its stamp and installs nothing.
    again = subprocess.run(['make', '-C', str(REPO_ROOT), f'VENV={venv}', 'venv-run'],
                           capture_output=True, text=True, timeout=60)
    assert again.returncode == 0 and 'pip install' not in again.stdout, again.stdout
