"""Huey messages as JSON instead of pickles.

A mail's Huey task carries only its id, so JSON is enough, and a queue entry
stays readable by anyone with redis-cli. The deliver tasks mailq writes are shorter
still (store/taskformat.py); both forms load.
"""
import datetime

import json
from huey.registry import Message
from huey.serializer import Serializer

from .store.taskformat import message_fields, parse_short

_FIELDS = Message._fields


class JSONSerializer(Serializer):
    """Only non-empty Message fields are written; dates as ISO 8601 strings."""

    def _serialize(self, message):
        data = {}
        for name, value in zip(_FIELDS, message):
            if value is None or value == () or value == {}:
                continue
            if isinstance(value, datetime.datetime):
                value = {'$dt': value.isoformat()}
            elif isinstance(value, Message):
                value = json.loads(self._serialize(value))
            data[name] = value
        return json.dumps(data, separators=(',', ':')).encode()

    def _deserialize(self, data):
        short = parse_short(data)
        if short:
            return self._message(message_fields(*short))
        return self._message(json.loads(data))

    def _message(self, data):
        values = {}
        for name, value in data.items():
            if isinstance(value, dict) and '$dt' in value:
                value = datetime.datetime.fromisoformat(value['$dt'])
            elif name in ('on_complete', 'on_error') and isinstance(value, dict):
                value = self._message(value)
            elif name == 'args':
                value = tuple(value)
            values[name] = value
        values.setdefault('args', ())
        values.setdefault('kwargs', {})
        return Message(**values)
