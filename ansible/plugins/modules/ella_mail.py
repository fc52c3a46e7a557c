#!/usr/bin/python
"""Ansible module: compose an e-mail and, if asked, send it over SMTP."""

from __future__ import annotations

DOCUMENTATION = r"""
---
module: ella_mail
short_description: Compose a notice (UTF-8, Reply-To, CC, attachments) and optionally send it
description:
  - Builds the message with Python's email package and returns it as text, so that what is
    printed without sending is exactly what would be sent (only Date and Message-ID differ).
  - With send=true, delivers it over SMTP (plain, STARTTLS or TLS). Runs on the controller.
options:
  sender: {description: From address (may carry a name)., type: str, required: true}
  to: {description: Recipients., type: list, elements: str, required: true}
  cc: {description: Copies., type: list, elements: str, default: []}
  reply_to: {description: Reply-To addresses., type: list, elements: str, default: []}
  subject: {description: Subject line., type: str, required: true}
  body: {description: Plain-text body., type: str, required: true}
  attachments:
    description: Text attachments, each a dict of filename and content.
    type: list
    elements: dict
    default: []
  send: {description: Deliver it; otherwise only compose., type: bool, default: false}
  smtp_host: {description: SMTP server., type: str, default: localhost}
  smtp_port: {description: SMTP port., type: int, default: 25}
  smtp_security: {description: Transport security., type: str, choices: [none, starttls, tls], default: starttls}
  smtp_username: {description: Login, if the server wants one., type: str, default: ""}
  smtp_password: {description: Its password., type: str, default: "", no_log: true}
  smtp_timeout: {description: Seconds before giving up., type: int, default: 20}
"""

RETURN = r"""
message: {description: The message as sent (or as it would be)., returned: always, type: str}
recipients: {description: Every envelope recipient (To and Cc)., returned: always, type: list}
sent: {description: Whether it was delivered., returned: always, type: bool}
"""

import smtplib
import ssl
from email.message import EmailMessage
from email.policy import SMTP
from email.utils import formatdate, getaddresses, make_msgid

from ansible.module_utils.basic import AnsibleModule


def compose(params):
    # Headers unfolded up to RFC 5322's 998: Python's folding around encoded words (æøå, –)
    # adds a space that readers then show.
    message = EmailMessage(policy=SMTP.clone(max_line_length=998))
    message["From"] = params["sender"]
    message["To"] = ", ".join(params["to"])
    if params["cc"]:
        message["Cc"] = ", ".join(params["cc"])
    if params["reply_to"]:
        message["Reply-To"] = ", ".join(params["reply_to"])
    message["Subject"] = params["subject"]
    message["Date"] = formatdate(localtime=False, usegmt=True)
    message["Message-ID"] = make_msgid(domain="ella-deploy")
    # 8bit: the printed message is readable Norwegian, and every current server takes 8BITMIME.
    message.set_content(params["body"], charset="utf-8", cte="8bit")
    for attachment in params["attachments"]:
        message.add_attachment(str(attachment.get("content", "")), subtype="plain", charset="utf-8", cte="8bit",
                               filename=str(attachment.get("filename", "attachment.txt")))
    return message


def deliver(params, message, recipients):
    host, port, timeout = params["smtp_host"], params["smtp_port"], params["smtp_timeout"]
    context = ssl.create_default_context()
    if params["smtp_security"] == "tls":
        client = smtplib.SMTP_SSL(host, port, timeout=timeout, context=context)
    else:
        client = smtplib.SMTP(host, port, timeout=timeout)
    with client:
        if params["smtp_security"] == "starttls":
            client.starttls(context=context)
        if params["smtp_username"]:
            client.login(params["smtp_username"], params["smtp_password"])
        client.send_message(message, to_addrs=recipients)


def main():
    module = AnsibleModule(
        argument_spec={
            "sender": {"type": "str", "required": True},
            "to": {"type": "list", "elements": "str", "required": True},
            "cc": {"type": "list", "elements": "str", "default": []},
            "reply_to": {"type": "list", "elements": "str", "default": []},
            "subject": {"type": "str", "required": True},
            "body": {"type": "str", "required": True},
            "attachments": {"type": "list", "elements": "dict", "default": []},
            "send": {"type": "bool", "default": False},
            "smtp_host": {"type": "str", "default": "localhost"},
            "smtp_port": {"type": "int", "default": 25},
            "smtp_security": {"type": "str", "choices": ["none", "starttls", "tls"], "default": "starttls"},
            "smtp_username": {"type": "str", "default": ""},
            "smtp_password": {"type": "str", "default": "", "no_log": True},
            "smtp_timeout": {"type": "int", "default": 20},
        },
        supports_check_mode=True,
    )
    params = module.params
    if not params["to"]:
        module.fail_json(msg="no recipients")
    message = compose(params)
    recipients = [address for _, address in getaddresses(params["to"] + params["cc"]) if address]
    text = message.as_string()
    if not params["send"] or module.check_mode:
        module.exit_json(changed=False, sent=False, message=text, recipients=recipients)
    try:
        deliver(params, message, recipients)
    except (OSError, smtplib.SMTPException, ssl.SSLError) as error:
        module.fail_json(msg=f"not sent via {params['smtp_host']}:{params['smtp_port']}: {error}",
                         sent=False, message=text, recipients=recipients)
    module.exit_json(changed=True, sent=True, message=text, recipients=recipients)


if __name__ == "__main__":
    main()
