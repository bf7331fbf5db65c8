"""Delivery through the official Svix SDK, verified by the receivers' libraries.

Driven by tests/tests/sdk_delivery.rs against a Herald server running the API
and worker roles, allowed to deliver to loopback. With the official `svix`
Python SDK (svix==2.9.1) it creates an application and an endpoint pointing at
a receiver this script runs itself (http.server on 127.0.0.1, port 0), posts a
message, and checks what arrives:

  * the body is byte-identical to the `payload` JSON text the SDK sent (taken
    from the request body the SDK actually put on the wire);
  * the signature verifies with the `standardwebhooks` library (webhook-*
    headers) and with `svix.webhooks.Webhook` (svix-* headers);
  * a wrong secret and a tampered body do not verify (so the checks can fail).

Then it rotates the endpoint's secret through the SDK and posts a second
message, whose `webhook-signature` must carry one `v1,` entry per valid secret
and verify with BOTH the old and the new secret, with both libraries.

Usage:

    HERALD_URL=http://127.0.0.1:12345 HERALD_TOKEN=<tenant api key> \\
        python tests/python/svix_delivery.py

Prints "msg <id>" per message and "svix delivery: ok" at the end; any failure
raises, which exits non-zero.
"""

import base64
import hashlib
import hmac
import http.server
import json
import os
import secrets
import sys
import threading
import time
import uuid
from typing import Any, Dict, List, Optional, Tuple

import standardwebhooks
from svix import Svix, SvixOptions
from svix.models import ApplicationIn, EndpointIn, EndpointSecretRotateIn, MessageIn
from svix.webhooks import Webhook as SvixWebhook
from svix.webhooks import WebhookVerificationError as SvixVerificationError

RUN = uuid.uuid4().hex[:12]
# Longest a message may take to arrive.
DELIVERY_TIMEOUT = 30.0


# --------------------------------------------------------------------------- #
# a receiver
# --------------------------------------------------------------------------- #


class Received:
    def __init__(self, path: str, headers: Dict[str, str], body: bytes) -> None:
        self.path = path
        self.headers = headers  # lower-case names
        self.body = body


class Receiver:
    """An HTTP server on 127.0.0.1 that answers 204 and records every request."""

    def __init__(self) -> None:
        self.requests: List[Received] = []
        self.cond = threading.Condition()
        receiver = self

        class Handler(http.server.BaseHTTPRequestHandler):
            def do_POST(self) -> None:  # noqa: N802 - http.server's naming
                length = int(self.headers.get("content-length") or 0)
                body = self.rfile.read(length)
                headers = {k.lower(): v for k, v in self.headers.items()}
                with receiver.cond:
                    receiver.requests.append(Received(self.path, headers, body))
                    receiver.cond.notify_all()
                self.send_response(204)
                self.end_headers()

            def log_message(self, *args: Any) -> None:
                pass

        self.server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.port = self.server.server_address[1]
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    def url(self, path: str) -> str:
        return f"http://127.0.0.1:{self.port}/{path}"

    def wait_for(self, msg_id: str, timeout: float = DELIVERY_TIMEOUT) -> Received:
        """The first request whose webhook-id is msg_id, within `timeout`."""
        deadline = time.monotonic() + timeout
        with self.cond:
            while True:
                for r in self.requests:
                    if r.headers.get("webhook-id") == msg_id:
                        return r
                left = deadline - time.monotonic()
                if left <= 0:
                    seen = [r.headers.get("webhook-id") for r in self.requests]
                    raise AssertionError(
                        f"message {msg_id} did not arrive within {timeout} s; got {seen}"
                    )
                self.cond.wait(left)

    def count(self, msg_id: str) -> int:
        with self.cond:
            return sum(1 for r in self.requests if r.headers.get("webhook-id") == msg_id)

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


# --------------------------------------------------------------------------- #
# what the SDK sent
# --------------------------------------------------------------------------- #


def raw_member(text: str, key: str) -> str:
    """The exact source text of a top-level member of a JSON object."""
    decoder = json.JSONDecoder()

    def skip_ws(i: int) -> int:
        while i < len(text) and text[i] in " \t\r\n":
            i += 1
        return i

    i = skip_ws(0)
    assert text[i] == "{", text
    i = skip_ws(i + 1)
    while i < len(text) and text[i] != "}":
        name, i = decoder.raw_decode(text, i)
        i = skip_ws(i)
        assert text[i] == ":", text[i:]
        start = skip_ws(i + 1)
        _, end = decoder.raw_decode(text, start)
        if name == key:
            return text[start:end]
        i = skip_ws(end)
        if text[i] == ",":
            i = skip_ws(i + 1)
    raise AssertionError(f"no member {key!r} in {text}")


class SentBodies:
    """Records the body of every request the SDK's httpx client sends."""

    def __init__(self, client: Svix) -> None:
        self.bodies: List[Tuple[str, str, bytes]] = []
        client._httpx_client.event_hooks["request"].append(self._hook)

    def _hook(self, request: Any) -> None:
        self.bodies.append((request.method, request.url.path, bytes(request.content)))

    def last_post(self, path: str) -> bytes:
        for method, p, body in reversed(self.bodies):
            if method == "POST" and p == path:
                return body
        raise AssertionError(f"the SDK sent no POST {path}; sent {[(m, p) for m, p, _ in self.bodies]}")


# --------------------------------------------------------------------------- #
# verification
# --------------------------------------------------------------------------- #


def webhook_headers(r: Received) -> Dict[str, str]:
    return {k: r.headers[k] for k in ("webhook-id", "webhook-timestamp", "webhook-signature")}


def svix_headers(r: Received) -> Dict[str, str]:
    return {k: r.headers[k] for k in ("svix-id", "svix-timestamp", "svix-signature")}


def expected_signature(secret: str, r: Received) -> str:
    """v1,<base64 HMAC-SHA256 of id.timestamp.body>, computed by hand."""
    key = base64.b64decode(secret[len("whsec_"):])
    to_sign = f"{r.headers['webhook-id']}.{r.headers['webhook-timestamp']}.".encode() + r.body
    return "v1," + base64.b64encode(hmac.new(key, to_sign, hashlib.sha256).digest()).decode()


def verify_with_both_libraries(secret: str, r: Received, payload: Dict[str, Any]) -> None:
    # standardwebhooks, from the webhook-* headers alone
    parsed = standardwebhooks.Webhook(secret).verify(r.body, webhook_headers(r))
    assert parsed == payload, (parsed, payload)
    # svix.webhooks.Webhook, from the svix-* headers alone
    SvixWebhook(secret).verify(r.body, svix_headers(r))


def must_not_verify(secret: str, r: Received, body: Optional[bytes] = None) -> None:
    body = r.body if body is None else body
    try:
        standardwebhooks.Webhook(secret).verify(body, webhook_headers(r))
    except standardwebhooks.WebhookVerificationError:
        pass
    else:
        raise AssertionError("standardwebhooks verified what it must not")
    try:
        SvixWebhook(secret).verify(body, svix_headers(r))
    except SvixVerificationError:
        pass
    else:
        raise AssertionError("svix.webhooks verified what it must not")


def random_secret() -> str:
    return "whsec_" + base64.b64encode(secrets.token_bytes(24)).decode()


def check_request(r: Received, msg_id: str, sent_payload: bytes) -> None:
    assert r.path == "/hook", r.path
    assert r.body == sent_payload, (
        f"delivered body differs from what the SDK sent:\n  sent      {sent_payload!r}\n"
        f"  delivered {r.body!r}"
    )
    assert r.headers.get("content-type") == "application/json", r.headers
    assert r.headers["webhook-id"] == r.headers["svix-id"] == msg_id, r.headers
    assert r.headers["webhook-timestamp"] == r.headers["svix-timestamp"], r.headers
    assert r.headers["webhook-signature"] == r.headers["svix-signature"], r.headers
    assert abs(int(r.headers["webhook-timestamp"]) - time.time()) < 300, r.headers


# --------------------------------------------------------------------------- #


def main() -> int:
    url = os.environ.get("HERALD_URL")
    token = os.environ.get("HERALD_TOKEN")
    if not url or not token:
        print("HERALD_URL and HERALD_TOKEN must be set", file=sys.stderr)
        return 2

    receiver = Receiver()
    client = Svix(token, SvixOptions(server_url=url))
    sent = SentBodies(client)

    app = client.application.create(ApplicationIn(name="Delivery", uid=f"delivery-{RUN}"))
    ep = client.endpoint.create(app.id, EndpointIn(url=receiver.url("hook"), description="sdk"))
    msg_path = f"/api/v1/app/{app.id}/msg"
    old_secret = client.endpoint.get_secret(app.id, ep.id).key
    assert old_secret.startswith("whsec_"), old_secret

    # ---- first message: one secret -------------------------------------- #
    payload1 = {
        "invoice": {"id": "inv_1", "amount": 12.5, "lines": [1, 2.25, -3e-7]},
        "customer": "Zoë Ünïcødé ✓ 日本",
        "flags": [True, False, None],
        "empty": {},
    }
    msg1 = client.message.create(
        app.id, MessageIn(event_type="invoice.paid", event_id=f"evt-1-{RUN}", payload=payload1)
    )
    print(f"msg {msg1.id}")
    sent1 = raw_member(sent.last_post(msg_path).decode("utf-8"), "payload").encode("utf-8")
    assert json.loads(sent1) == payload1, sent1
    r1 = receiver.wait_for(msg1.id)
    check_request(r1, msg1.id, sent1)
    entries1 = r1.headers["webhook-signature"].split(" ")
    assert entries1 == [expected_signature(old_secret, r1)], (
        "with one secret, webhook-signature must be exactly its one v1 signature",
        entries1,
    )
    verify_with_both_libraries(old_secret, r1, payload1)
    must_not_verify(random_secret(), r1)
    must_not_verify(old_secret, r1, body=r1.body.replace(b"12.5", b"12.6"))
    print("first message: delivered byte-identical, signature verifies")

    # ---- rotate the secret through the SDK ------------------------------ #
    new_secret = client.endpoint.rotate_secret(
        app.id, ep.id, EndpointSecretRotateIn(grace_period_seconds=3600)
    ).key
    assert new_secret.startswith("whsec_") and new_secret != old_secret, (old_secret, new_secret)
    assert client.endpoint.get_secret(app.id, ep.id).key == new_secret

    # ---- second message: both secrets valid ----------------------------- #
    payload2 = {"invoice": {"id": "inv_2", "amount": 99}, "note": "after rotation"}
    msg2 = client.message.create(
        app.id,
        MessageIn(event_type="invoice.paid", event_id=f"evt-2-{RUN}", payload=payload2),
    )
    print(f"msg {msg2.id}")
    sent2 = raw_member(sent.last_post(msg_path).decode("utf-8"), "payload").encode("utf-8")
    r2 = receiver.wait_for(msg2.id)
    check_request(r2, msg2.id, sent2)
    entries2 = r2.headers["webhook-signature"].split(" ")
    assert len(entries2) == 2 and all(e.startswith("v1,") for e in entries2), entries2
    assert sorted(entries2) == sorted(
        [expected_signature(new_secret, r2), expected_signature(old_secret, r2)]
    ), ("webhook-signature must hold one v1 signature per valid secret", entries2)
    verify_with_both_libraries(new_secret, r2, payload2)
    verify_with_both_libraries(old_secret, r2, payload2)
    must_not_verify(random_secret(), r2)
    must_not_verify(new_secret, r2, body=r2.body.replace(b"99", b"98"))
    print("second message: verifies with the old and the new secret")

    # Each message arrived once (204 is a success, so no retries).
    time.sleep(1.5)
    assert receiver.count(msg1.id) == 1, receiver.count(msg1.id)
    assert receiver.count(msg2.id) == 1, receiver.count(msg2.id)

    receiver.close()
    print("svix delivery: ok")
    return 0


if __name__ == "__main__":
    sys.exit(main())
