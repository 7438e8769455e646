"""The live events channel: what the dashboard's pages hear about (GET /api/events).

accept.lua and finish.lua PUBLISH a JSON line on `<prefix>:events` for each new mail
and each outcome. Each web process holds one subscription (LiveEvents) and hands what
it hears to its open streams; with nobody subscribed a PUBLISH costs next to nothing.
"""
import json


class LiveEvents:
    """One pub/sub subscription to the events channel."""

    def __init__(self, client, keys):
        self.pubsub = client.pubsub(ignore_subscribe_messages=True)
        self.pubsub.subscribe(keys.events)

    def next(self, timeout):
        """The next event (a dict), or None after `timeout` seconds without one."""
        message = self.pubsub.get_message(timeout=timeout)
        if not message or message.get('type') != 'message':
            return None
        try:
            event = json.loads(message['data'])
        except ValueError:
            return None
        return event if isinstance(event, dict) else None

    def close(self):
        try:
            self.pubsub.close()
        except Exception:       # noqa: BLE001 - closing a broken connection
            pass
