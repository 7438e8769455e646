"""SMTP submission: any app that can send mail over SMTP can use mailq by changing its
SMTP settings. The listener (aiosmtpd) replies 250 only once the mail is stored by the
same accept path as the HTTP API (service.prepare_message, then accept.lua through the
Accepter), and a precise code otherwise.

listener.py binds and serves (and holds the bind policy), protocol.py adapts aiosmtpd's
replies and reads DATA, handler.py turns each SMTP step into a service call,
accepter.py stores the mails of every session in one round trip, auth.py checks
credentials and rate-limits failures, counters.py feeds /metrics.
"""
from .listener import bind, check_bind, serve

__all__ = ['bind', 'check_bind', 'serve']
