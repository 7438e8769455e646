"""aiosmtpd hooks: each SMTP step checked by compose_raw and the mail handed to
the one accept path of every surface (service.prepare_message, then Store.accept_each
through the Accepter's thread). The 250 for DATA is
sent only after the accept script returned, so a mail the client saw accepted is in
Redis; any failure before that leaves nothing stored (the script is one step)."""
import logging

from .. import service
from ..compose_raw import check_address
from ..errors import Conflict, Unavailable, ValidationError
from . import replies

log = logging.getLogger('mailq.submission')


class Handler:
    def __init__(self, rt, accepter, counters=None, advertise_auth=False):
        self.rt = rt
        self.accepter = accepter          # Redis calls block; the event loop must not
        self.counters = counters
        self.advertise_auth = advertise_auth
        self.max_recipients = rt.config.limits.max_recipients

    def _count(self, reply):
        if self.counters:
            self.counters.count(reply)
        return reply

    async def handle_EHLO(self, server, session, envelope, hostname, responses):
        """aiosmtpd reads pipelined commands in order but does not say so; and it offers
        AUTH even with no credentials configured."""
        session.host_name = hostname
        out = [r for r in responses if self.advertise_auth or not r[4:].startswith('AUTH')]
        out.insert(1, '250-PIPELINING')
        return out

    async def handle_MAIL(self, server, session, envelope, address, mail_options):
        if address:
            try:
                address = check_address('sender', address, utf8=envelope.smtp_utf8)
            except ValidationError as exc:
                return self._count(replies.BAD_SENDER.format(
                    reason=replies.one_line(exc.message)))
        envelope.mail_from = address
        envelope.mail_options.extend(mail_options)
        return '250 2.1.0 Ok'

    async def handle_RCPT(self, server, session, envelope, address, rcpt_options):
        if len(envelope.rcpt_tos) >= self.max_recipients:
            return self._count(replies.TOO_MANY_RCPTS.format(limit=self.max_recipients))
        try:
            address = check_address('recipient', address, utf8=envelope.smtp_utf8)
        except ValidationError as exc:
            return self._count(replies.BAD_RCPT.format(reason=replies.one_line(exc.message)))
        envelope.rcpt_tos.append(address)
        return '250 2.1.5 Ok'

    async def handle_DATA(self, server, session, envelope):
        user = getattr(session.auth_data, 'login', '') if session.authenticated else ''
        client = session.peer[0] if session.peer else ''
        try:
            item = service.prepare_message(
                self.rt, envelope.original_content, envelope.mail_from or '',
                envelope.rcpt_tos, source='smtp', client=client, user=user)
            result = await self.accepter.accept(item)
        except ValidationError as exc:
            reply = replies.BAD_MESSAGE.format(reason=replies.one_line(str(exc)))
        except Conflict as exc:
            reply = replies.BAD_MESSAGE.format(reason=replies.one_line(str(exc)))
        except Unavailable as exc:
            reply = replies.UNAVAILABLE.format(reason=replies.one_line(exc, 120))
        except Exception:       # noqa: BLE001 - a bug must be a 451, the client keeps the mail
            log.exception('submission from %s failed', client)
            reply = replies.INTERNAL
        else:
            reply = replies.ACCEPTED.format(id=result['id'])
        return self._count(reply)
