"""The README's commands run as written (issue 11 item 16): no bare `python mailq.py`,
which fails outside .venv, and every `.venv/bin/python mailq.py ...` line parses."""
import re
import subprocess

from support.procs import PYTHON, REPO_ROOT

README = (REPO_ROOT / 'README.md').read_text()
SNIPPETS = re.findall(r'`([^`\n]+)`', README)


def test_no_bare_python_mailq_py_except_where_it_says_it_fails():
    for paragraph in README.split('\n\n'):
        for snippet in re.findall(r'`([^`\n]+)`', paragraph):
            if snippet.startswith('python mailq.py'):
                assert 'ModuleNotFoundError' in paragraph, paragraph


def test_the_venv_commands_of_the_readme_parse():
    commands = [s for s in SNIPPETS if s.startswith('.venv/bin/python mailq.py ')
                and 'ROLE' not in s]
    assert len(commands) >= 2, commands
    for command in commands:
        args = command.split()[1:]          # mailq.py ROLE FLAGS..., run by the tests' venv
        result = subprocess.run([PYTHON, *args, '--help'],
                                capture_output=True, text=True, cwd=str(REPO_ROOT), timeout=60)
        assert result.returncode == 0, (command, result.stderr)
        assert 'usage: mailq ' + args[1] in result.stdout, command


def test_the_make_targets_the_readme_names_exist():
    targets = set(re.findall(r'^([a-z-]+):', (REPO_ROOT / 'Makefile').read_text(), re.M))
    named = {m for s in SNIPPETS for m in re.findall(r'^make ([a-z-]+)$', s)}
    named |= set(re.findall(r'^make ([a-z-]+) ', README, re.M))
    assert {'run', 'test', 'test-fast', 'lint', 'lock', 'venv-run', 'dist'} <= named
    assert named <= targets, named - targets


def test_the_architecture_page_places_every_module():
    """docs/architecture.md says where each piece lives: every module of mailq/,
    mailq/store/ and mailq/web/ is named there (cron/ and submission/ as folders)."""
    page = (REPO_ROOT / 'docs' / 'architecture.md').read_text()
    mailq = REPO_ROOT / 'mailq'
    modules = [p for folder in (mailq, mailq / 'store', mailq / 'web')
               for p in folder.glob('*.py') if p.name != '__init__.py']
    assert len(modules) > 40
    missing = [str(p.relative_to(mailq)) for p in modules
               if not re.search(rf'`(mailq/)?({p.parent.name}/)?{re.escape(p.name)}`', page)]
    assert missing == []
    for folder in ('cron/', 'submission/'):
        assert f'`{folder}`' in page
