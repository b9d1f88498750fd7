// POST /api/checkout against a stub of Stripe's API: the real `stripe`
// library, pointed at a local HTTP server (host, port, protocol) that
// records what it is sent and answers a Checkout Session.
// Run by `npm test`, after `tsc -p tsconfig.test.json` emitted build/.
import assert from "node:assert/strict";
import { createServer } from "node:http";
import { after, before, beforeEach, test } from "node:test";
import Stripe from "stripe";

import { POST } from "../build/app/api/checkout/route.js";
import { sessionCookie } from "../build/lib/session.js";
import { setStripeClient } from "../build/lib/stripe.js";

const SESSION_URL = "https://checkout.stripe.com/c/pay/cs_test_stub";

/** What the stub received: one entry per request. */
let received = [];
/** Set to make the stub refuse the next sessions as Stripe does (e.g. an unknown price). */
let refuse = false;
const stub = createServer((req, res) => {
  let raw = "";
  req.setEncoding("utf8");
  req.on("data", (chunk) => (raw += chunk));
  req.on("end", () => {
    received.push({ method: req.method, path: req.url, headers: req.headers, form: new URLSearchParams(raw) });
    res.setHeader("content-type", "application/json");
    if (refuse) {
      res.statusCode = 400;
      res.end(JSON.stringify({ error: { type: "invalid_request_error", code: "resource_missing", message: "No such price" } }));
    } else if (req.method === "POST" && req.url === "/v1/checkout/sessions") {
      res.end(JSON.stringify({ id: "cs_test_stub", object: "checkout.session", mode: "payment", url: SESSION_URL }));
    } else {
      res.statusCode = 404;
      res.end(JSON.stringify({ error: { type: "invalid_request_error", message: `no stub for ${req.method} ${req.url}` } }));
    }
  });
});

before(async () => {
  await new Promise((resolve) => stub.listen(0, "127.0.0.1", resolve));
  const { port } = stub.address();
  setStripeClient(new Stripe("sk_test_stub", { host: "127.0.0.1", port, protocol: "http", maxNetworkRetries: 0 }));
  Object.assign(process.env, {
    SESSION_SECRET: "test-session-secret", // the sign-in stand-in's (lib/session.ts)
    DEMO_SIGN_IN: "1",
    STRIPE_PRICE_STARTER: "price_starter_test",
    STRIPE_PRICE_STUDIO: "price_studio_test",
    STRIPE_PRICE_TRIAL: "price_trial_test",
  });
  delete process.env.APP_URL;
  delete process.env.NODE_ENV;
});

after(() => {
  setStripeClient(undefined);
  stub.close();
});

beforeEach(() => {
  received = [];
  refuse = false;
});

/** The session cookie of `user-42`, as the sign-in stand-in sets it. */
const signedIn = () => sessionCookie("user-42").split(";")[0];

const checkout = (body, cookie = signedIn()) =>
  POST(
    new Request("http://localhost:3000/api/checkout", {
      method: "POST",
      headers: { "content-type": "application/json", ...(cookie && { cookie }) },
      body: typeof body === "string" ? body : JSON.stringify(body),
    }),
  );

test("a pack creates a payment session for the session's user, with the pack in metadata, keeping the card", async () => {
  // The body names another user: the session's user gets the credits all the same.
  const res = await checkout({ pack: "starter", userId: "someone-else", client_reference_id: "someone-else" });
  assert.equal(res.status, 200);
  assert.deepEqual(await res.json(), { url: SESSION_URL });

  assert.equal(received.length, 1);
  const [{ method, path, headers, form }] = received;
  assert.equal(`${method} ${path}`, "POST /v1/checkout/sessions");
  assert.equal(headers.authorization, "Bearer sk_test_stub");
  assert.deepEqual(Object.fromEntries(form), {
    mode: "payment",
    "line_items[0][price]": "price_starter_test",
    "line_items[0][quantity]": "1",
    client_reference_id: "user-42",
    "metadata[pack]": "starter",
    // The card is kept for auto-recharge: a customer, set up for off-session use.
    customer_creation: "always",
    "payment_intent_data[setup_future_usage]": "off_session",
    success_url: "http://localhost:3000/credits?checkout=success",
    cancel_url: "http://localhost:3000/credits?checkout=cancelled",
  });
});

test("each pack is sold at its own price", async () => {
  for (const [pack, price] of [["studio", "price_studio_test"], ["trial", "price_trial_test"]]) {
    const res = await checkout({ pack });
    assert.equal(res.status, 200, pack);
    const { form } = received.at(-1);
    assert.equal(form.get("line_items[0][price]"), price);
    assert.equal(form.get("metadata[pack]"), pack);
  }
});

test("APP_URL is where Stripe sends the browser back", async () => {
  process.env.APP_URL = "http://127.0.0.1:4000/";
  try {
    await checkout({ pack: "starter" });
  } finally {
    delete process.env.APP_URL;
  }
  assert.equal(received[0].form.get("success_url"), "http://127.0.0.1:4000/credits?checkout=success");
  assert.equal(received[0].form.get("cancel_url"), "http://127.0.0.1:4000/credits?checkout=cancelled");
});

test("an unknown pack is refused (400) without calling Stripe", async () => {
  for (const body of [{ pack: "mega" }, { pack: "toString" }, { pack: 100 }, {}, null, "not json"]) {
    const res = await checkout(body);
    assert.equal(res.status, 400, JSON.stringify(body));
    assert.equal((await res.json()).code, "validation_error");
  }
  assert.equal(received.length, 0);
});

test("nobody signed in, or a session cookie not signed by this app: 401 without calling Stripe", async () => {
  const forged = `demo_session=${Buffer.from("user-42").toString("base64url")}.${"A".repeat(43)}`;
  const renamed = signedIn().replace(Buffer.from("user-42").toString("base64url"), Buffer.from("user-43").toString("base64url"));
  for (const cookie of [null, forged, renamed]) {
    const res = await checkout({ pack: "starter" }, cookie);
    assert.equal(res.status, 401, String(cookie));
  }
  assert.equal(received.length, 0);
});

test("a pack without a configured price is the app's error (500), not a session", async () => {
  const saved = process.env.STRIPE_PRICE_STUDIO;
  delete process.env.STRIPE_PRICE_STUDIO;
  const quiet = console.error;
  console.error = () => {};
  try {
    const res = await checkout({ pack: "studio" });
    assert.equal(res.status, 500);
  } finally {
    console.error = quiet;
    process.env.STRIPE_PRICE_STUDIO = saved;
  }
  assert.equal(received.length, 0);
});

test("Stripe refusing the session answers 502", async () => {
  refuse = true;
  const quiet = console.error;
  console.error = () => {};
  let res;
  try {
    res = await checkout({ pack: "starter" });
  } finally {
    console.error = quiet;
  }
  assert.equal(res.status, 502);
  assert.equal((await res.json()).code, "payment_unavailable");
  assert.equal(received.length, 1);
});
