"""A raw-socket SMTP server that records every command line and every byte of DATA,
per session, for tests that must prove what went over the wire (QUIT, MAIL FROM
parameters, 7-bit bodies). It answers in order, so PIPELINING works as is."""
import socket
import threading
import time
from dataclasses import dataclass, field

from .procs import free_port

DEFAULT_EXTENSIONS = ('PIPELINING', '8BITMIME', 'SIZE 10485760')


@dataclass
class Session:
    commands: list = field(default_factory=list)    # every command line, without CRLF
    messages: list = field(default_factory=list)    # (MAIL FROM line, DATA bytes as sent)
    closed: bool = False                            # the client's side of the TCP is done

    @property
    def quit(self):
        return bool(self.commands) and self.commands[-1].upper() == b'QUIT'


class RawSMTPServer:
    """extensions: the EHLO keywords offered. data_reply: the reply at the end of DATA."""

    def __init__(self, extensions=DEFAULT_EXTENSIONS, data_reply=b'250 2.0.0 queued',
                 data_delay=0.0):
        self.extensions = tuple(extensions)
        self.data_reply = data_reply
        self.data_delay = data_delay
        self.port = free_port()
        self.sessions = []
        self._cond = threading.Condition()
        self._sock = socket.create_server(('127.0.0.1', self.port))
        self._stopping = False
        threading.Thread(target=self._accept, daemon=True).start()

    # -- what was received ---------------------------------------------
    @property
    def messages(self):
        with self._cond:
            return [m for s in self.sessions for m in s.messages]

    def wait(self, predicate, timeout=15, what='condition'):
        deadline = time.monotonic() + timeout
        with self._cond:
            while not predicate():
                left = deadline - time.monotonic()
                if left <= 0:
                    raise AssertionError(f'{what} not met within {timeout}s: {self.sessions}')
                self._cond.wait(left)

    def wait_messages(self, count, timeout=15):
        self.wait(lambda: len(self.messages) >= count, timeout, f'{count} messages')
        return self.messages

    # -- serving ---------------------------------------------------------
    def _accept(self):
        while True:
            try:
                conn, _ = self._sock.accept()
            except OSError:
                return
            session = Session()
            with self._cond:
                self.sessions.append(session)
            threading.Thread(target=self._serve, args=(conn, session), daemon=True).start()

    def _serve(self, conn, session):
        reader = conn.makefile('rb')
        try:
            conn.sendall(b'220 raw.test ESMTP\r\n')
            mail_from = None
            for line in reader:
                command = line.rstrip(b'\r\n')
                self._note(session, command)
                verb = command.split(b' ', 1)[0].upper()
                if verb == b'EHLO':
                    lines = [b'raw.test'] + [e.encode() for e in self.extensions]
                    conn.sendall(b''.join(b'250%s%s\r\n' % (b' ' if i == len(lines) - 1
                                                            else b'-', text)
                                          for i, text in enumerate(lines)))
                elif verb == b'MAIL':
                    mail_from = command
                    conn.sendall(b'250 2.1.0 ok\r\n')
                elif verb in (b'RCPT', b'RSET', b'NOOP', b'HELO'):
                    conn.sendall(b'250 ok\r\n')
                elif verb == b'DATA':
                    conn.sendall(b'354 go ahead\r\n')
                    data = self._read_data(reader)
                    time.sleep(self.data_delay)
                    with self._cond:
                        session.messages.append((mail_from, data))
                        self._cond.notify_all()
                    conn.sendall(self.data_reply + b'\r\n')
                elif verb == b'QUIT':
                    conn.sendall(b'221 2.0.0 bye\r\n')
                    break
                else:
                    conn.sendall(b'500 5.5.1 unknown command\r\n')
        except OSError:
            pass
        finally:
            with self._cond:
                session.closed = True
                self._cond.notify_all()
            reader.close()
            conn.close()

    def _note(self, session, command):
        with self._cond:
            session.commands.append(command)

    @staticmethod
    def _read_data(reader):
        """The DATA bytes up to the lone dot, dot-stuffing undone, CRLFs kept."""
        chunks = []
        for line in reader:
            if line == b'.\r\n':
                break
            chunks.append(line[1:] if line.startswith(b'.') else line)
        return b''.join(chunks)

    def stop(self):
        self._sock.close()
