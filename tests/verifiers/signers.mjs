// Signs GitHub-style requests (X-Hub-Signature-256) with GitHub's own
// signer, `sign` from @octokit/webhooks-methods (pinned in package.json and
// package-lock.json), for the tests of Herald's inbound webhooks.
//
// Run by herald-verifiers (src/sign.rs) as `node signers.mjs REQUESTS.json`
// from its installed copy of this project. Each request holds the secret and
// the raw body (base64); prints one list of `[name, value]` headers per
// request as a JSON list, in order.

import { readFileSync } from "node:fs";
import { sign } from "@octokit/webhooks-methods";

// `sign` takes the payload as a string; a body that is not UTF-8 would not
// survive the decoding, so it is refused rather than altered.
const utf8 = new TextDecoder("utf-8", { fatal: true });

const requests = JSON.parse(readFileSync(process.argv[2], "utf8"));
const signed = [];
for (const r of requests) {
  const body = utf8.decode(Buffer.from(r.body, "base64"));
  signed.push([["X-Hub-Signature-256", await sign(r.secret, body)]]);
}
process.stdout.write(JSON.stringify(signed));
