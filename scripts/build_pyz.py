#!/usr/bin/env python3
"""Build dist/mailq.pyz: mailq and its dependencies in one file for a plain Python 3.11+.

    python3 scripts/build_pyz.py [--output dist/mailq.pyz]

pip installs every dependency from requirements.lock (pinned, --require-hashes),
then mailq itself (with its templates and Lua scripts, as package data, and
--no-deps) into a staging directory; the standard `zipapp` module packs it.
Only pure Python goes in: zipimport cannot load compiled extensions, and the
optional speed-ups we pull in (markupsafe's, hiredis) have a pure fallback.
"""
import argparse
import shutil
import subprocess
import sys
import tempfile
import zipapp
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
MAIN = '''import sys

from mailq.cli import main

sys.exit(main())
'''
LOCK = ROOT / 'requirements.lock'
# Dependencies that pip's markers skip on the building Python but an older target needs:
# redis-py wants async-timeout below Python 3.11.3 (Debian 12 ships 3.11.2). Pinned with
# its hash like the lock's (pip-compile leaves it out: its marker is false here).
TARGET_EXTRAS = ('async-timeout==5.0.1 --hash=sha256:'
                 '39e3809566ff85354557ec2398b55e096c8364bacac9405a7a1fa429e77fe76c',)
DROP_DIRS = ('bin', '__pycache__')
DROP_SUFFIXES = ('.so', '.pyd', '.pyc')


def install(staging):
    pip = [sys.executable, '-m', 'pip', 'install', '--quiet', '--no-compile',
           '--disable-pip-version-check', '--no-warn-script-location', '--target', str(staging)]
    extras = staging.parent / 'target-extras.txt'
    extras.write_text('\n'.join(TARGET_EXTRAS) + '\n')
    subprocess.run([*pip, '--require-hashes', '-r', str(LOCK), '-r', str(extras)], check=True)
    # setuptools builds in ROOT/build and keeps what is there: a module or script that
    # was deleted since the last build would otherwise ship in the archive.
    shutil.rmtree(ROOT / 'build', ignore_errors=True)
    subprocess.run([*pip, '--no-deps', str(ROOT)], check=True)


def prune(staging):
    """Drop what cannot run from a zip or is not needed to run."""
    for path in sorted(staging.rglob('*'), reverse=True):
        if path.is_dir() and path.name in DROP_DIRS:
            shutil.rmtree(path)
        elif path.is_file() and path.suffix in DROP_SUFFIXES:
            path.unlink()


def check(staging):
    """Fail the build, not the first start, when something is missing."""
    for part in ('mailq/store/scripts/fetch.lua', 'mailq/_templates/mail'):
        if not (staging / part).exists():
            raise SystemExit(f'build_pyz: {part} is missing from the build')


def build(output):
    with tempfile.TemporaryDirectory(prefix='mailq-pyz-') as tmp:
        staging = Path(tmp) / 'app'
        install(staging)
        prune(staging)
        check(staging)
        (staging / '__main__.py').write_text(MAIN)
        output.parent.mkdir(parents=True, exist_ok=True)
        zipapp.create_archive(staging, output, interpreter='/usr/bin/env python3',
                              compressed=True)
    return output


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument('--output', type=Path, default=ROOT / 'dist' / 'mailq.pyz')
    output = build(parser.parse_args().output)
    print(f'built {output} ({output.stat().st_size // 1024} KiB)')


if __name__ == '__main__':
    main()
