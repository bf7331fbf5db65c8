"""Reads messages through the official Svix Python SDK after Herald's
retention removed a payload: the SDK must parse the message, with the payload
reported expired, and a message whose payload is still kept must read back
unchanged.

Usage (the retention end-to-end test runs it):

    HERALD_URL=... HERALD_TOKEN=... HERALD_APP=<app id or uid> \\
    HERALD_EXPIRED_MSG=<msg id> HERALD_KEPT_MSG=<msg id> \\
        python tests/python/svix_retention.py

Prints "svix retention: ok" when every check holds; any failure raises.
"""

import json
import os

from svix import Svix, SvixOptions
from svix.api.message import MessageGetOptions, MessageListOptions


def main() -> int:
    client = Svix(os.environ["HERALD_TOKEN"], SvixOptions(server_url=os.environ["HERALD_URL"]))
    app = os.environ["HERALD_APP"]
    expired_id = os.environ["HERALD_EXPIRED_MSG"]
    kept_id = os.environ["HERALD_KEPT_MSG"]

    expired = client.message.get(app, expired_id, MessageGetOptions(with_content=True))
    assert expired.payload == {"expired": True}, f"expired payload: {expired.payload!r}"
    kept = client.message.get(app, kept_id, MessageGetOptions(with_content=True))
    assert kept.payload == {"kept": True}, f"kept payload: {kept.payload!r}"

    listed = {m.id: m.payload for m in client.message.list(app, MessageListOptions(limit=50, with_content=True)).data}
    assert listed.get(expired_id) == {"expired": True}, f"listed: {json.dumps(listed)}"
    assert listed.get(kept_id) == {"kept": True}, f"listed: {json.dumps(listed)}"
    print("svix retention: ok")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
