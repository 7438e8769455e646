"""The Lua scripts, loaded once per client with the shared fragments in front.

Every key a script touches comes in through KEYS, built by keys.py. The
constants the scripts share with Python are defined here, once, and written
into the header of every script.
"""
from importlib import resources

# Wake tokens kept per queue: enough for every idle thread to wake, never a growing list.
WAKE_LEN = 100
# Per-day counters (processed, failed per day) outlive the longest history chart.
DAY_STAT_TTL = 200 * 86400

NAMES = ('accept', 'fetch', 'claim', 'finish', 'release', 'due', 'requeue', 'cancel', 'trim',
         'admin_clear', 'admin_delete', 'admin_enqueue', 'admin_filter', 'admin_kill',
         'cron_claim', 'cron_finish', 'cron_reclaim', 'cron_resume', 'cron_skip',
         'hook_done', 'suppress', 'limit_cut', 'limit_slots')


def source(name):
    """The full text of a script as Redis runs it: constants, lib.lua, the script."""
    folder = resources.files(__package__).joinpath('scripts')
    header = f'local WAKE_LEN = {WAKE_LEN}\nlocal DAY_STAT_TTL = {DAY_STAT_TTL}\n'
    return header + folder.joinpath('lib.lua').read_text() + '\n' + \
        folder.joinpath(f'{name}.lua').read_text()


class Scripts:
    """Every script registered on one client: `scripts.finish(keys=..., args=...)`."""

    def __init__(self, client):
        for name in NAMES:
            setattr(self, name, client.register_script(source(name)))
