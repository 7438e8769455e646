"""Every state a mail can be in, where its task waits then, and what may be done to it.

This table is the one place these facts are written. Routes, labels, the
dashboard's buttons, the Lua scripts' arguments and the tests derive from it.
"""
from dataclasses import dataclass

QUEUED = 'queued'
SCHEDULED = 'scheduled'
SENDING = 'sending'
RETRYING = 'retrying'
SENT = 'sent'
DEAD = 'dead'
CANCELLED = 'cancelled'
SUPPRESSED = 'suppressed'     # every recipient is on the suppression list: never sent
HELD = 'held'                 # waiting for a limiter's token (store/limits.py): no attempt used

# What a user may do to a mail, with the button's label.
ENQUEUE, RETRY, KILL, DELETE = 'enqueue', 'retry', 'kill', 'delete'
ACTION_LABELS = {ENQUEUE: 'Send now', RETRY: 'Retry now', KILL: 'Kill', DELETE: 'Delete'}
ACTIONS = tuple(ACTION_LABELS)


@dataclass(frozen=True)
class State:
    name: str
    holder: str          # where its task (or id) is: queue, schedule, inflight, retry, dead, none
    final: bool          # no delivery will be attempted again
    actions: tuple       # what a user may do to a mail in this state
    cancellable: bool    # the app may still cancel it (DELETE /api/mails/<id>)


TABLE = {state.name: state for state in (
    State(QUEUED, 'queue', False, (DELETE,), True),
    State(SCHEDULED, 'schedule', False, (ENQUEUE, DELETE), True),
    State(SENDING, 'inflight', False, (), False),
    State(RETRYING, 'retry', False, (RETRY, KILL, DELETE), True),
    State(HELD, 'held', False, (DELETE,), True),
    State(DEAD, 'dead', True, (RETRY, DELETE), True),
    State(SENT, 'none', True, (DELETE,), False),       # kept in the outbox with transport = outbox
    State(CANCELLED, 'none', True, (DELETE,), False),
    State(SUPPRESSED, 'none', True, (DELETE,), False),
)}
STATES = tuple(TABLE)
FINAL_STATES = tuple(name for name, state in TABLE.items() if state.final)
NOT_CANCELLABLE = tuple(name for name, state in TABLE.items() if not state.cancellable)


def actions_for(status):
    """The actions allowed on a mail in `status`; a record of unknown state may be deleted."""
    state = TABLE.get(status)
    return state.actions if state else (DELETE,)


@dataclass(frozen=True)
class ListKind:
    """A dashboard list: the container of one state, as the pages and /api show it."""
    name: str            # URL segment: /api/<name>, /<name>
    state: str           # the status of the mails it holds
    members: str         # 'tasks' (Huey messages) or 'ids' (mail ids)
    newest_first: bool

    @property
    def actions(self):
        return TABLE[self.state].actions

    @property
    def holds_tasks(self):
        return self.members == 'tasks'


QUEUE_LIST = ListKind('queue', QUEUED, 'tasks', True)
LISTS = {kind.name: kind for kind in (
    ListKind('scheduled', SCHEDULED, 'tasks', False),
    ListKind('retrying', RETRYING, 'tasks', False),
    ListKind('dead', DEAD, 'ids', True),
    ListKind('outbox', SENT, 'ids', True),
    ListKind('held', HELD, 'tasks', False),      # by ready time, the next one first
)}


def route_pattern(names):
    """A Bottle route filter matching exactly these names: `<verb:re:...>`."""
    return '|'.join(sorted(names))
