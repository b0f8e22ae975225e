"""The sandbox's SMTP sink (Debian's python3-aiosmtpd): every mail is turned into a
JSON record and POSTed to the sandbox's notification sink, which prints it and
appends it to notifications.jsonl; should that fail, the record is appended to the
file directly.

    /usr/bin/python3 smtp_sink.py PORT SINK_URL LOG_FILE PASSWORD

Listens on 127.0.0.1:PORT. AUTH PLAIN/LOGIN is offered without TLS and optional;
when a client authenticates, the password must be PASSWORD (any user name).
Runs until killed.
"""

import asyncio
import email
import email.policy
import json
import sys
import threading
import time
import urllib.request

from aiosmtpd.controller import Controller
from aiosmtpd.smtp import AuthResult


def record_of(envelope):
    msg = email.message_from_bytes(envelope.content, policy=email.policy.default)
    body = msg.get_body(preferencelist=("plain", "html"))
    attachments = [
        part.get_filename() or part.get_content_type()
        for part in msg.iter_attachments()
    ]
    return {
        "channel": "email",
        "from": envelope.mail_from,
        "to": list(envelope.rcpt_tos),
        "subject": str(msg.get("Subject", "")),
        "text": body.get_content().rstrip() if body is not None else "",
        "attachments": attachments,
    }


class Handler:
    def __init__(self, sink_url, log_file):
        self.sink_url = sink_url
        self.log_file = log_file
        self.lock = threading.Lock()

    def deliver(self, record):
        data = json.dumps(record).encode()
        try:
            req = urllib.request.Request(
                self.sink_url, data=data, headers={"Content-Type": "application/json"}
            )
            with urllib.request.urlopen(req, timeout=5) as resp:
                resp.read()
            return
        except Exception as e:  # the sink is gone: keep the mail anyway
            record["sink_error"] = str(e)
            record["time"] = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())
        with self.lock, open(self.log_file, "a", encoding="utf-8") as f:
            f.write(json.dumps(record) + "\n")

    async def handle_DATA(self, server, session, envelope):
        try:
            record = record_of(envelope)
        except Exception as e:
            record = {
                "channel": "email",
                "from": envelope.mail_from,
                "to": list(envelope.rcpt_tos),
                "error": f"unparsable message: {e}",
            }
        if session.authenticated:
            record["authenticated"] = True
        loop = asyncio.get_running_loop()
        await loop.run_in_executor(None, self.deliver, record)
        return "250 Message accepted for delivery"


def main():
    port, sink_url, log_file, password = sys.argv[1:5]

    def authenticator(server, session, envelope, mechanism, auth_data):
        ok = getattr(auth_data, "password", None) == password.encode()
        return AuthResult(success=ok)

    controller = Controller(
        Handler(sink_url, log_file),
        hostname="127.0.0.1",
        port=int(port),
        authenticator=authenticator,
        auth_require_tls=False,
        auth_required=False,
    )
    controller.start()
    print(f"smtp sink listening on 127.0.0.1:{port}", flush=True)
    threading.Event().wait()


if __name__ == "__main__":
    main()
