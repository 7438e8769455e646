"""CPU steal: the share of the machine's time its hypervisor gave to other guests.

The bench's figures are only comparable on a quiet machine; this says, step by step,
how quiet it was (/proc/stat's eighth field)."""
import time


def machine_ticks():
    """(all ticks, stolen ticks) of every CPU so far."""
    with open('/proc/stat') as fh:
        fields = [int(x) for x in fh.readline().split()[1:]]
    # guest and guest_nice (fields 9 and 10) are already counted in user and nice
    return sum(fields[:8]), fields[7]


class StealLog:
    """The steal of each step of a run, each step ending where the next begins."""

    def __init__(self):
        self.steps = []
        self._open = None
        self._first = machine_ticks()

    def begin(self, text):
        self._close()
        self._open = (text, time.monotonic(), machine_ticks())

    def finish(self):
        """[{step, seconds, steal_pct}, ...] and the whole run's steal_pct."""
        self._close()
        return {'steps': self.steps, 'run_pct': _pct(self._first, machine_ticks())}

    def _close(self):
        if self._open:
            text, started, ticks = self._open
            self.steps.append({'step': text, 'seconds': round(time.monotonic() - started, 1),
                               'steal_pct': _pct(ticks, machine_ticks())})
            self._open = None


def _pct(before, after):
    total, stolen = after[0] - before[0], after[1] - before[1]
    return round(100 * stolen / total, 1) if total else 0.0
