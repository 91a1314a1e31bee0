"""A real SMTP server for the alert channel tests (aiosmtpd).

usage: smtp_server.py PORT OUT_DIR [CERT KEY]

With CERT and KEY: STARTTLS is offered and required before MAIL, and AUTH PLAIN/LOGIN is
accepted (after STARTTLS) for user "outpost" with the password in $SMTP_PASSWORD. Every
message is written to OUT_DIR/<n>.eml with OUT_DIR/<n>.json (envelope, whether the session
was under TLS, the authenticated user). Prints READY once it listens.
"""
import json
import os
import ssl
import sys
import time

from aiosmtpd.controller import Controller
from aiosmtpd.smtp import AuthResult, LoginPassword

port = int(sys.argv[1])
out = sys.argv[2]
tls = None
if len(sys.argv) > 4:
    tls = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    tls.load_cert_chain(sys.argv[3], sys.argv[4])


def login(data):
    return data.decode() if isinstance(data, bytes) else None


class Handler:
    async def handle_DATA(self, server, session, envelope):
        n = len([f for f in os.listdir(out) if f.endswith(".eml")])
        meta = {
            "mail_from": envelope.mail_from,
            "rcpt_tos": envelope.rcpt_tos,
            "tls": session.ssl is not None,
            "auth": session.authenticated,
            "login": login(getattr(session, "auth_data", None)),
        }
        with open(os.path.join(out, f"{n}.json"), "w") as f:
            json.dump(meta, f)
        with open(os.path.join(out, f"{n}.tmp"), "wb") as f:
            f.write(envelope.original_content or envelope.content)
        os.rename(os.path.join(out, f"{n}.tmp"), os.path.join(out, f"{n}.eml"))
        return "250 Message accepted"


def authenticator(server, session, envelope, mechanism, auth_data):
    ok = (
        isinstance(auth_data, LoginPassword)
        and auth_data.login == b"outpost"
        and auth_data.password == os.environ.get("SMTP_PASSWORD", "").encode()
    )
    return AuthResult(success=ok, handled=False, auth_data=auth_data.login if ok else None)


kwargs = dict(hostname="127.0.0.1", port=port)
if tls is not None:
    kwargs.update(
        tls_context=tls,
        require_starttls=True,
        authenticator=authenticator,
        auth_require_tls=True,
    )
controller = Controller(Handler(), **kwargs)
controller.start()
print("READY", flush=True)
while True:
    time.sleep(3600)
