"""SMTP submission: any app that can send mail over SMTP can use mailq by changing its
SMTP settings. The listener (aiosmtpd) replies 250 only once the mail is stored by the
same accept path as the HTTP API (service.send_message), and a precise code otherwise.

listener.py binds and serves (and holds the bind policy), protocol.py adapts aiosmtpd's
replies, handler.py turns each SMTP step into a service call, auth.py checks
credentials and rate-limits failures, counters.py feeds /metrics.
"""
from .listener import bind, check_bind, serve

__all__ = ['bind', 'check_bind', 'serve']
