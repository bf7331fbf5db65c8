"""Signs requests the way the providers do, with their own Python code, so
Herald's inbound webhooks (`/ingest`) are tested against real signatures.

Run by herald-verifiers (src/sign.rs) as `python signers.py REQUESTS.json`, in
the venv of providers.py. Each request holds the provider, the secret as the
provider shows it, the raw body (base64), the Unix timestamp to sign at and,
for Standard Webhooks, the message id. Prints one list of `[name, value]`
headers per request as a JSON list, in order.

- Stripe: `stripe.WebhookSignature.generate_signature_header`, the helper
  Stripe's library offers for signing test payloads.
- Slack: `slack_sdk.signature.SignatureVerifier.generate_signature`, the
  library's own `v0=` signer (its `is_valid` runs the same code).
- Standard Webhooks: `standardwebhooks.Webhook.sign`.
- Shopify publishes no signer, so its documented recipe (base64 of
  HMAC-SHA256 over the body, keyed with the secret's text):
  https://shopify.dev/docs/apps/build/webhooks/subscribe/https
- A custom HMAC header: Python's `hmac` as the source's settings say.
"""

import base64
import hashlib
import hmac
import json
import sys
from datetime import datetime, timezone

import standardwebhooks
import stripe
from slack_sdk.signature import SignatureVerifier


def sign_stripe(request):
    header = stripe.WebhookSignature.generate_signature_header(
        request["body"].decode("utf-8"), request["secret"], timestamp=request["timestamp"]
    )
    return [["Stripe-Signature", header]]


def sign_slack(request):
    timestamp = str(request["timestamp"])
    signature = SignatureVerifier(signing_secret=request["secret"]).generate_signature(
        timestamp=timestamp, body=request["body"]
    )
    return [["X-Slack-Signature", signature], ["X-Slack-Request-Timestamp", timestamp]]


def sign_standard(request):
    at = datetime.fromtimestamp(request["timestamp"], tz=timezone.utc)
    signature = standardwebhooks.Webhook(request["secret"]).sign(
        request["msg_id"], at, request["body"].decode("utf-8")
    )
    return [
        ["webhook-id", request["msg_id"]],
        ["webhook-timestamp", str(request["timestamp"])],
        ["webhook-signature", signature],
    ]


def sign_shopify(request):
    digest = hmac.new(request["secret"].encode("utf-8"), request["body"], hashlib.sha256).digest()
    return [["X-Shopify-Hmac-SHA256", base64.b64encode(digest).decode()]]


def sign_hmac(request):
    settings = request["hmac"]
    digest = hmac.new(
        request["secret"].encode("utf-8"), request["body"], getattr(hashlib, settings["algorithm"])
    ).digest()
    tag = digest.hex() if settings["encoding"] == "hex" else base64.b64encode(digest).decode()
    return [[settings["header"], (settings.get("prefix") or "") + tag]]


SIGNERS = {
    "stripe": sign_stripe,
    "slack": sign_slack,
    "standard": sign_standard,
    "shopify": sign_shopify,
    "hmac": sign_hmac,
}


def main(path):
    with open(path, encoding="utf-8") as f:
        requests = json.load(f)
    signed = []
    for request in requests:
        request = dict(request, body=base64.b64decode(request["body"]))
        signed.append(SIGNERS[request["provider"]](request))
    json.dump(signed, sys.stdout)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1]))
