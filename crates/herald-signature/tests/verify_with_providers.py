"""Verifies signatures made by herald-signature with the providers' own code.

Run by tests/providers.rs as `python verify_with_providers.py CASES.json`. Each
case holds the headers Herald produced, the body, the secret a receiver would
configure (the `whsec_...` text Herald shows) and whether the receiver must
accept or reject. Standard Webhooks, Svix and Stripe are checked with their
PyPI libraries; GitHub, Shopify and Slack publish no Python verifier, so they
are checked exactly as their docs show:
- https://docs.github.com/en/webhooks/using-webhooks/validating-webhook-deliveries
- https://shopify.dev/docs/apps/build/webhooks/subscribe/https
- https://api.slack.com/authentication/verifying-requests-from-slack
Exits non-zero when any case is not decided as expected.
"""

import base64
import hashlib
import hmac
import json
import sys
import time

import standardwebhooks
import stripe
import svix.webhooks


def standard_webhooks(case):
    headers = {k: v for k, v in case["headers"].items() if k.startswith("webhook-")}
    standardwebhooks.Webhook(case["secret"]).verify(case["body"], headers)


def svix_sdk(case):
    # Only the svix-* twins, to prove receivers on older Svix SDKs keep working.
    headers = {k: v for k, v in case["headers"].items() if k.startswith("svix-")}
    svix.webhooks.Webhook(case["secret"]).verify(case["body"], headers)


def stripe_sdk(case):
    stripe.WebhookSignature.verify_header(
        case["body"], case["headers"]["Stripe-Signature"], case["secret"], tolerance=300
    )


def github(case):
    digest = hmac.new(
        case["secret"].encode("utf-8"), msg=case["body"].encode("utf-8"), digestmod=hashlib.sha256
    )
    expected = "sha256=" + digest.hexdigest()
    if not hmac.compare_digest(expected, case["headers"]["X-Hub-Signature-256"]):
        raise ValueError("request signatures didn't match")


def shopify(case):
    digest = hmac.new(
        case["secret"].encode("utf-8"), case["body"].encode("utf-8"), digestmod=hashlib.sha256
    ).digest()
    computed = base64.b64encode(digest)
    if not hmac.compare_digest(computed, case["headers"]["X-Shopify-Hmac-SHA256"].encode("utf-8")):
        raise ValueError("hmac mismatch")


def slack(case):
    timestamp = case["headers"]["X-Slack-Request-Timestamp"]
    if abs(time.time() - int(timestamp)) > 60 * 5:
        raise ValueError("request too old")
    basestring = f"v0:{timestamp}:{case['body']}".encode("utf-8")
    expected = "v0=" + hmac.new(case["secret"].encode("utf-8"), basestring, hashlib.sha256).hexdigest()
    if not hmac.compare_digest(expected, case["headers"]["X-Slack-Signature"]):
        raise ValueError("signature mismatch")


def custom_hmac(case):
    settings = case["hmac"]
    digest = hmac.new(
        case["secret"].encode("utf-8"), case["body"].encode("utf-8"), getattr(hashlib, settings["algorithm"])
    ).digest()
    expected = digest.hex() if settings["encoding"] == "hex" else base64.b64encode(digest).decode()
    if not hmac.compare_digest(expected, case["headers"][settings["header"]]):
        raise ValueError("signature mismatch")


VERIFIERS = {
    "standardwebhooks": standard_webhooks,
    "svix": svix_sdk,
    "stripe": stripe_sdk,
    "github": github,
    "shopify": shopify,
    "slack": slack,
    "hmac": custom_hmac,
}


def main(path):
    with open(path, encoding="utf-8") as f:
        cases = json.load(f)
    failures = 0
    for case in cases:
        try:
            VERIFIERS[case["verifier"]](case)
            outcome = "accept"
            detail = ""
        except Exception as e:  # each library raises its own error type
            outcome = "reject"
            detail = f" ({type(e).__name__}: {e})"
        ok = outcome == case["expect"]
        failures += not ok
        print(f"{'ok  ' if ok else 'FAIL'} {case['name']}: {outcome}{detail}")
    print(f"{len(cases) - failures}/{len(cases)} cases decided as expected")
    return 1 if failures or not cases else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1]))
