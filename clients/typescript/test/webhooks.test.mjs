// verifyWebhook: Standard Webhooks signatures of the service's outgoing
// events, against the reference vector and the ways a delivery goes wrong.
import assert from "node:assert/strict";
import { execFileSync } from "node:child_process";
import { dirname, resolve } from "node:path";
import { describe, test } from "node:test";
import { fileURLToPath } from "node:url";

import { WebhookVerificationError, isWebhookVerificationError, signWebhook, verifyWebhook } from "../dist/index.js";

// The Standard Webhooks reference vector (also shared/src/events/sign.rs).
const SECRET = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw";
const ID = "msg_p5jXN8AQM9LWM0D4loKWxJek";
const TIMESTAMP = 1614265330;
const BODY = '{"test": 2432232314}';
const SIGNATURE = "v1,g0hM9SsE+OTPJTGt/tmIKtSyZlE3uFJELVlNIOLJ1OE=";
/** Another well-formed secret (32 bytes). */
const OTHER_SECRET = "whsec_" + Buffer.alloc(32, 7).toString("base64");

const headers = (overrides = {}) => ({
  "webhook-id": ID,
  "webhook-timestamp": String(TIMESTAMP),
  "webhook-signature": SIGNATURE,
  ...overrides,
});
const at = { now: TIMESTAMP };

/** Asserts that `promise` rejects with a WebhookVerificationError of `reason`, whose message leaks no secret. */
async function refused(promise, reason) {
  await assert.rejects(promise, (error) => {
    assert.ok(error instanceof WebhookVerificationError, `a WebhookVerificationError, got ${error}`);
    assert.ok(isWebhookVerificationError(error));
    assert.equal(error.name, "WebhookVerificationError");
    assert.equal(error.reason, reason);
    for (const secret of [SECRET, SECRET.slice(6), OTHER_SECRET, OTHER_SECRET.slice(6)]) {
      assert.ok(!error.message.includes(secret), "the message never contains the secret");
      assert.ok(!String(error.stack).includes(secret), "nor does the stack");
    }
    return true;
  });
}

describe("verifyWebhook", () => {
  test("the Standard Webhooks reference vector verifies and answers the parsed body", async () => {
    assert.deepEqual(await verifyWebhook(SECRET, headers(), BODY, at), { test: 2432232314 });
    // A fetch Headers, the raw bytes, a Date for now, and signWebhook making the same signature.
    const fetchHeaders = new Headers(headers());
    assert.deepEqual(
      await verifyWebhook(SECRET, fetchHeaders, new TextEncoder().encode(BODY), { now: new Date(TIMESTAMP * 1000) }),
      { test: 2432232314 },
    );
    assert.equal(await signWebhook(SECRET, ID, TIMESTAMP, BODY), SIGNATURE);
    assert.equal(await signWebhook(SECRET, ID, String(TIMESTAMP), Buffer.from(BODY)), SIGNATURE);
  });

  test("header names are case-insensitive in a plain object; values are trimmed", async () => {
    const mixed = {
      "Webhook-Id": ID,
      "WEBHOOK-TIMESTAMP": ` ${TIMESTAMP} `,
      "Webhook-Signature": ` ${SIGNATURE} `,
    };
    assert.deepEqual(await verifyWebhook(SECRET, mixed, BODY, at), { test: 2432232314 });
  });

  test("a tampered body, id or timestamp is refused", async () => {
    await refused(verifyWebhook(SECRET, headers(), '{"test": 2432232315}', at), "invalid_signature");
    await refused(verifyWebhook(SECRET, headers(), `${BODY} `, at), "invalid_signature");
    await refused(verifyWebhook(SECRET, headers({ "webhook-id": "msg_other" }), BODY, at), "invalid_signature");
    await refused(
      verifyWebhook(SECRET, headers({ "webhook-timestamp": String(TIMESTAMP + 1) }), BODY, at),
      "invalid_signature",
    );
  });

  test("another secret is refused; so is a mangled signature", async () => {
    await refused(verifyWebhook(OTHER_SECRET, headers(), BODY, at), "invalid_signature");
    const flipped = SIGNATURE.replace("g0hM", "g0hN");
    await refused(verifyWebhook(SECRET, headers({ "webhook-signature": flipped }), BODY, at), "invalid_signature");
    for (const bad of ["v1,", "v1,not base64!", "g0hM9SsE+OTPJTGt/tmIKtSyZlE3uFJELVlNIOLJ1OE=", "v2," + SIGNATURE.slice(3), "v1," + SIGNATURE.slice(3, -4)]) {
      await refused(verifyWebhook(SECRET, headers({ "webhook-signature": bad }), BODY, at), "invalid_signature");
    }
  });

  test("the timestamp must be within the tolerance (default 300 s) both ways", async () => {
    assert.ok(await verifyWebhook(SECRET, headers(), BODY, { now: TIMESTAMP + 300 }));
    assert.ok(await verifyWebhook(SECRET, headers(), BODY, { now: TIMESTAMP - 300 }));
    await refused(verifyWebhook(SECRET, headers(), BODY, { now: TIMESTAMP + 301 }), "timestamp_too_old");
    await refused(verifyWebhook(SECRET, headers(), BODY, { now: TIMESTAMP - 301 }), "timestamp_too_new");
    // The real clock: the 2021 vector is stale.
    await refused(verifyWebhook(SECRET, headers(), BODY), "timestamp_too_old");
    // A tolerance of one's own.
    assert.ok(await verifyWebhook(SECRET, headers(), BODY, { now: TIMESTAMP + 3600, toleranceSeconds: 3600 }));
    await refused(verifyWebhook(SECRET, headers(), BODY, { now: TIMESTAMP + 11, toleranceSeconds: 10 }), "timestamp_too_old");
    await assert.rejects(verifyWebhook(SECRET, headers(), BODY, { now: TIMESTAMP, toleranceSeconds: -1 }), TypeError);
  });

  test("a timestamp that is not Unix seconds is refused", async () => {
    for (const bad of ["2021-02-25T15:42:10Z", "1614265330.5", "-1614265330", "0x60379e72", "1614265330000000000"]) {
      await refused(verifyWebhook(SECRET, headers({ "webhook-timestamp": bad }), BODY, at), "invalid_timestamp");
    }
  });

  test("every header is required", async () => {
    for (const name of ["webhook-id", "webhook-timestamp", "webhook-signature"]) {
      const without = headers();
      delete without[name];
      await refused(verifyWebhook(SECRET, without, BODY, at), "missing_header");
      await refused(verifyWebhook(SECRET, headers({ [name]: "" }), BODY, at), "missing_header");
      await refused(verifyWebhook(SECRET, headers({ [name]: "  " }), BODY, at), "missing_header");
      const fetchHeaders = new Headers(headers());
      fetchHeaders.delete(name);
      await refused(verifyWebhook(SECRET, fetchHeaders, BODY, at), "missing_header");
    }
    await assert.rejects(verifyWebhook(SECRET, {}, BODY, at), {
      reason: "missing_header",
      message: "missing header(s): webhook-id, webhook-timestamp, webhook-signature",
    });
  });

  test("several signatures (a rotated secret): one valid among them is enough, wherever it stands", async () => {
    const wrong = await signWebhook(OTHER_SECRET, ID, TIMESTAMP, BODY);
    const lists = [
      `${wrong} ${SIGNATURE}`,
      `${SIGNATURE} ${wrong}`,
      `v1a,c2lnbmVkIGJ5IGFuIGFzeW1tZXRyaWMga2V5 v1,garbage ${wrong} ${SIGNATURE}`,
      `${wrong}  ${SIGNATURE}`,
    ];
    for (const list of lists) {
      assert.deepEqual(await verifyWebhook(SECRET, headers({ "webhook-signature": list }), BODY, at), { test: 2432232314 });
    }
    // Node gives a header sent twice as an array; fetch's Headers joins it with ", ".
    assert.ok(await verifyWebhook(SECRET, headers({ "webhook-signature": [wrong, SIGNATURE] }), BODY, at));
    const twice = new Headers(headers({ "webhook-signature": wrong }));
    twice.append("webhook-signature", SIGNATURE);
    assert.ok(await verifyWebhook(SECRET, twice, BODY, at));
    await refused(verifyWebhook(SECRET, headers({ "webhook-signature": `${wrong} v1,garbage` }), BODY, at), "invalid_signature");
  });

  test("a secret that is not whsec_ + base64 is refused without being echoed", async () => {
    for (const bad of ["", "whsec_", "whsec_not base64!", "whsec_****"]) {
      await refused(verifyWebhook(bad, headers(), BODY, at), "invalid_secret");
    }
    // The base64 part alone is taken too.
    assert.ok(await verifyWebhook(SECRET.slice("whsec_".length), headers(), BODY, at));
  });

  test("a correctly signed body that is not a JSON object is refused", async () => {
    for (const body of ["not json", "[1,2]", "null", "42"]) {
      const signature = await signWebhook(SECRET, ID, TIMESTAMP, body);
      await refused(verifyWebhook(SECRET, headers({ "webhook-signature": signature }), body, at), "invalid_payload");
    }
  });

  test("an event comes back typed as it was sent", async () => {
    const event = {
      id: "evt_3b8f2c1d9e7a4f6b8c0d1e2f3a4b5c6d",
      type: "balance.low",
      occurredAt: "2026-11-22T18:04:05.123Z",
      userId: "a1b2c3d4-5678-4abc-9def-1234567890ab",
      data: { available: 7, threshold: 20 },
    };
    const body = JSON.stringify(event);
    const timestamp = Math.floor(Date.now() / 1000);
    const signature = await signWebhook(SECRET, event.id, timestamp, body);
    const verified = await verifyWebhook(
      SECRET,
      { "webhook-id": event.id, "webhook-timestamp": String(timestamp), "webhook-signature": signature },
      body,
    );
    assert.deepEqual(verified, event);
  });

  test("without a global crypto (Node 18) it uses node:crypto's webcrypto", () => {
    const dist = resolve(dirname(fileURLToPath(import.meta.url)), "../dist/index.js");
    const script = `
      Object.defineProperty(globalThis, "crypto", { value: undefined, configurable: true, writable: true });
      const { verifyWebhook, signWebhook } = await import(${JSON.stringify(dist)});
      const headers = ${JSON.stringify(headers())};
      const event = await verifyWebhook(${JSON.stringify(SECRET)}, headers, ${JSON.stringify(BODY)}, { now: ${TIMESTAMP} });
      const signature = await signWebhook(${JSON.stringify(SECRET)}, ${JSON.stringify(ID)}, ${TIMESTAMP}, ${JSON.stringify(BODY)});
      process.stdout.write(JSON.stringify({ crypto: typeof globalThis.crypto, event, signature }));
    `;
    const out = JSON.parse(execFileSync(process.execPath, ["--input-type=module", "-e", script], { encoding: "utf8" }));
    assert.deepEqual(out, { crypto: "undefined", event: { test: 2432232314 }, signature: SIGNATURE });
  });
});
