// Judges Herald's `github` signatures (X-Hub-Signature-256) with GitHub's own
// verifier, `verify` from @octokit/webhooks-methods (pinned in package.json
// and package-lock.json).
//
// Run by herald-verifiers (src/node.rs, src/lib.rs) as
// `node github.mjs CASES.json` from the installed copy of this project. Each
// case holds the headers a receiver got (names lowercase), the raw body
// (base64) and the `whsec_...` secret text; prints one verdict per case as a
// JSON list, `[{"id": ..., "accepted": ..., "detail": ...}]`.

import { readFileSync } from "node:fs";
import { verify } from "@octokit/webhooks-methods";

// `verify` takes the payload as a string; a body that is not UTF-8 would not
// survive the decoding, so it is refused rather than altered.
const utf8 = new TextDecoder("utf-8", { fatal: true });

async function judge(c) {
  try {
    const body = utf8.decode(Buffer.from(c.body, "base64"));
    const signature = c.headers["x-hub-signature-256"];
    if (await verify(c.key, body, signature)) {
      return { id: c.id, accepted: true };
    }
    return { id: c.id, accepted: false, detail: "verify returned false" };
  } catch (e) {
    return { id: c.id, accepted: false, detail: `${e.name}: ${e.message}` };
  }
}

const cases = JSON.parse(readFileSync(process.argv[2], "utf8"));
const verdicts = [];
for (const c of cases) {
  verdicts.push(await judge(c));
}
process.stdout.write(JSON.stringify(verdicts));
