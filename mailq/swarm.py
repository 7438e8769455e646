"""A swarm: one parent process supervising forked children (Sidekiq Enterprise's word).

One Python process is bound to one core by the GIL; a swarm puts one child on
each. The parent does no work of its own: it forwards SIGTERM and SIGINT to the
children (each child stops as it would alone, so a second signal still means
"at once"), restarts a child that dies unexpectedly, and returns when all have
stopped. A child that exits 0 on its own (a 'stop' command) is not restarted.
"""
import ctypes
import logging
import os
import signal
import time

log = logging.getLogger('mailq.swarm')
PR_SET_PDEATHSIG = 1
STABLE_AFTER = 10.0         # a child that lived this long restarts at once
MAX_DELAY = 30.0


def shares(total, parts):
    """Split `total` into `parts` near-equal positive shares (25, 2 -> [13, 12])."""
    parts = max(1, min(parts, total))
    return [total // parts + (i < total % parts) for i in range(parts)]


def die_with_parent():
    """A child must not outlive a parent killed with -9: ask Linux to kill it then."""
    try:
        ctypes.CDLL('libc.so.6', use_errno=True).prctl(PR_SET_PDEATHSIG, signal.SIGKILL)
    except (OSError, AttributeError):
        pass


class Swarm:
    """Runs `targets[i](i)` in child i until stopped; `run()` returns the exit code."""

    def __init__(self, name, targets):
        self.name = name
        self.targets = targets
        self.children = {}          # pid -> (index, started at)
        self.delays = [0.0] * len(targets)
        self.stopping = False
        self.failed = False

    def run(self):
        previous = {sig: signal.signal(sig, self._forward) for sig in (signal.SIGTERM,
                                                                        signal.SIGINT)}
        try:
            for index in range(len(self.targets)):
                self._spawn(index)
            while self.children:
                self._reap_one()
        finally:
            for sig, handler in previous.items():
                signal.signal(sig, handler)
        return 1 if self.failed else 0

    def _forward(self, signum, frame):
        self.stopping = True
        for pid in list(self.children):
            try:
                os.kill(pid, signum)
            except ProcessLookupError:
                pass

    def _spawn(self, index):
        pid = os.fork()
        if pid == 0:
            os._exit(self._child(index))
        self.children[pid] = (index, time.monotonic())
        log.info('%s %d started (pid %d)', self.name, index, pid)

    def _child(self, index):
        code = 1
        try:
            os.setpgid(0, 0)        # a signal to the parent's group reaches us once, forwarded
            for sig in (signal.SIGTERM, signal.SIGINT):
                signal.signal(sig, signal.SIG_DFL)
            die_with_parent()
            code = self.targets[index](index) or 0
        except SystemExit as exc:
            code = exc.code if isinstance(exc.code, int) else 1
        except BaseException:
            log.exception('%s %d failed', self.name, index)
        finally:
            logging.shutdown()
        return code

    def _reap_one(self):
        pid, status = os.wait()
        if pid not in self.children:
            return
        index, started = self.children.pop(pid)
        code = os.waitstatus_to_exitcode(status)
        if self.stopping or code == 0:
            self.failed |= code != 0 and code != -signal.SIGTERM
            log.info('%s %d (pid %d) stopped: %s', self.name, index, pid, _describe(code))
            return
        self.delays[index] = (0.0 if time.monotonic() - started > STABLE_AFTER
                              else min(MAX_DELAY, max(1.0, self.delays[index] * 2)))
        log.error('%s %d (pid %d) died (%s); restarting it in %.0fs', self.name, index, pid,
                  _describe(code), self.delays[index])
        time.sleep(self.delays[index])
        if not self.stopping:
            self._spawn(index)


def _describe(code):
    return f'signal {-code}' if code < 0 else f'exit code {code}'
