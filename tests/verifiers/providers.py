"""Judges Herald's signatures with the providers' own Python code.

Run by herald-verifiers (src/lib.rs) as `python providers.py CASES.json`, in a
venv with the pinned packages. Each case holds the headers a receiver got
(names lowercase), the raw body (base64), the key the receiver configured (the
`whsec_...` text Herald shows, or the `whpk_...` public key for Ed25519) and
which verifier judges it. Prints one verdict per case as a JSON list,
`[{"id": ..., "accepted": ..., "detail": ...}]`; the expectations are checked by
the caller.

Standard Webhooks, Svix, Stripe and Slack are judged by their PyPI libraries,
Ed25519 (`v1a`) by PyNaCl (libsodium). Shopify publishes no Python verifier and
a custom HMAC header has none, so those are computed as documented:
- https://shopify.dev/docs/apps/build/webhooks/subscribe/https
- https://www.standardwebhooks.com (asymmetric signatures, `v1a`)
"""

import base64
import hashlib
import hmac
import json
import sys
import time

import nacl.exceptions
import nacl.signing
import standardwebhooks
import stripe
import svix.webhooks
from slack_sdk.signature import SignatureVerifier

# The Standard Webhooks spec's recommended tolerance, also Stripe's and Slack's.
TOLERANCE_SECONDS = 5 * 60


def standard_webhooks(case):
    headers = {k: v for k, v in case["headers"].items() if k.startswith("webhook-")}
    standardwebhooks.Webhook(case["key"]).verify(case["body"], headers)


def svix_sdk(case):
    # Only the svix-* twins, to prove receivers on older Svix SDKs keep working.
    headers = {k: v for k, v in case["headers"].items() if k.startswith("svix-")}
    svix.webhooks.Webhook(case["key"]).verify(case["body"], headers)


def stripe_sdk(case):
    stripe.Webhook.construct_event(
        case["body"], case["headers"].get("stripe-signature"), case["key"]
    )


def slack(case):
    verifier = SignatureVerifier(signing_secret=case["key"])
    if not verifier.is_valid(
        body=case["body"],
        timestamp=case["headers"].get("x-slack-request-timestamp"),
        signature=case["headers"].get("x-slack-signature"),
    ):
        raise ValueError("SignatureVerifier.is_valid is False")


def shopify(case):
    digest = hmac.new(case["key"].encode("utf-8"), case["body"], digestmod=hashlib.sha256).digest()
    computed = base64.b64encode(digest)
    received = case["headers"].get("x-shopify-hmac-sha256", "").encode("utf-8")
    if not hmac.compare_digest(computed, received):
        raise ValueError("hmac mismatch")


def custom_hmac(case):
    settings = case["hmac"]
    digest = hmac.new(
        case["key"].encode("utf-8"), case["body"], getattr(hashlib, settings["algorithm"])
    ).digest()
    expected = digest.hex() if settings["encoding"] == "hex" else base64.b64encode(digest).decode()
    received = case["headers"].get(settings["header"].lower(), "")
    if not hmac.compare_digest(expected, received):
        raise ValueError("signature mismatch")


def ed25519(case):
    prefix = "whpk_"
    if not case["key"].startswith(prefix):
        raise ValueError("not a whpk_ public key")
    key = nacl.signing.VerifyKey(base64.b64decode(case["key"][len(prefix):]))
    msg_id = case["headers"]["webhook-id"]
    timestamp = case["headers"]["webhook-timestamp"]
    if abs(time.time() - int(timestamp)) > TOLERANCE_SECONDS:
        raise ValueError("timestamp out of tolerance")
    signed = f"{msg_id}.{timestamp}.".encode("utf-8") + case["body"]
    for entry in case["headers"]["webhook-signature"].split(" "):
        version, _, signature = entry.partition(",")
        if version != "v1a":
            continue
        try:
            key.verify(signed, base64.b64decode(signature))
            return
        except nacl.exceptions.BadSignatureError:
            pass
    raise ValueError("no v1a signature verifies")


VERIFIERS = {
    "standardwebhooks": standard_webhooks,
    "svix": svix_sdk,
    "stripe": stripe_sdk,
    "slack": slack,
    "shopify": shopify,
    "hmac": custom_hmac,
    "ed25519": ed25519,
}


def judge(case):
    case = dict(case, body=base64.b64decode(case["body"]))
    try:
        VERIFIERS[case["verifier"]](case)
        return {"id": case["id"], "accepted": True}
    except Exception as e:  # each library raises its own error type
        return {"id": case["id"], "accepted": False, "detail": f"{type(e).__name__}: {e}"}


def main(path):
    with open(path, encoding="utf-8") as f:
        cases = json.load(f)
    json.dump([judge(case) for case in cases], sys.stdout)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1]))
