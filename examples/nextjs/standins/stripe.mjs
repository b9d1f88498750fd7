// A local stand-in for the parts of Stripe this example uses, so the demo and
// its tests run without an account or a network: the API calls the `stripe`
// library makes (create a Checkout Session, read a price), a hosted checkout
// page with a Pay button, and the `checkout.session.completed` webhook,
// signed as Stripe signs it and delivered `deliveries` times (Stripe delivers
// at least once; the credits API must grant once).
//
// With real test keys instead: unset STRIPE_API_URL, set STRIPE_SECRET_KEY
// (sk_test_…) and the STRIPE_PRICE_* ids, and forward Stripe's webhook to the
// credits API (`stripe listen --forward-to localhost:3000/v1/webhooks/stripe`).
import { randomBytes } from "node:crypto";
import { createServer } from "node:http";
import Stripe from "stripe";

/** The demo's prices: what each pack costs. */
export const DEMO_PRICES = {
  price_demo_starter: { unit_amount: 900, currency: "usd", pack: "starter" },
  price_demo_studio: { unit_amount: 3900, currency: "usd", pack: "studio" },
  price_demo_trial: { unit_amount: 199, currency: "usd", pack: "trial" },
};

/** Signs as Stripe does, with Stripe's own library (the tests' signer too: scripts/stripe-sign.mjs). */
const signer = new Stripe("sk_test_unused").webhooks;

const id = (prefix) => `${prefix}_test_${randomBytes(12).toString("hex")}`;
const escape = (text) => String(text).replace(/[&<>"']/g, (c) => `&#${c.charCodeAt(0)};`);

/**
 * Starts the stand-in on `port` (0: any). `webhookUrl`: where events go (the
 * credits API's /v1/webhooks/stripe); `webhookSecret`: its signing secret.
 * Resolves to `{ url, server, deliveries }`; `deliveries` lists every webhook
 * attempt with the answer it got (also at GET /_standin/deliveries).
 */
export async function startStripe({ port = 0, host = "127.0.0.1", webhookUrl, webhookSecret, deliveries = 2, log = () => {} }) {
  const sessions = new Map();
  const attempts = [];
  let base = "";

  async function deliver(session) {
    const event = {
      id: id("evt"),
      object: "event",
      type: "checkout.session.completed",
      api_version: "2025-09-30.clover",
      created: Math.floor(Date.now() / 1000),
      livemode: false,
      data: { object: session },
    };
    const body = JSON.stringify(event);
    for (let n = 1; n <= deliveries; n++) {
      await new Promise((resolve) => setTimeout(resolve, n === 1 ? 300 : 700));
      const attempt = { event: event.id, type: event.type, session: session.id, user: session.client_reference_id, n, status: 0, answer: null };
      try {
        const answer = await fetch(webhookUrl, {
          method: "POST",
          headers: { "content-type": "application/json", "stripe-signature": signer.generateTestHeaderString({ payload: body, secret: webhookSecret }) },
          body,
        });
        attempt.status = answer.status;
        attempt.answer = await answer.json().catch(() => null);
      } catch (error) {
        attempt.answer = { error: String(error?.message ?? error) };
      }
      attempts.push(attempt);
      log(`stripe stand-in: ${event.type} ${session.id} delivery ${n} → ${attempt.status} ${JSON.stringify(attempt.answer)}`);
    }
  }

  function api(req, res, raw) {
    const json = (status, value) => {
      res.writeHead(status, { "content-type": "application/json" });
      res.end(JSON.stringify(value));
    };
    const refuse = (status, message) => json(status, { error: { type: "invalid_request_error", message } });
    if (!/^Bearer (sk|rk)_test_\S+$/.test(req.headers.authorization ?? "")) return refuse(401, "Invalid API Key provided");
    const url = new URL(req.url, base);
    const form = new URLSearchParams(raw);

    if (req.method === "POST" && url.pathname === "/v1/checkout/sessions") {
      const priceId = form.get("line_items[0][price]");
      const price = DEMO_PRICES[priceId];
      if (!price) return refuse(400, `No such price: '${priceId}'`);
      const quantity = Number(form.get("line_items[0][quantity]") ?? "1");
      const session = {
        id: id("cs"),
        object: "checkout.session",
        mode: form.get("mode"),
        status: "open",
        payment_status: "unpaid",
        amount_total: price.unit_amount * quantity,
        currency: price.currency,
        client_reference_id: form.get("client_reference_id"),
        metadata: Object.fromEntries([...form].filter(([k]) => k.startsWith("metadata[")).map(([k, v]) => [k.slice(9, -1), v])),
        success_url: form.get("success_url"),
        cancel_url: form.get("cancel_url"),
        payment_intent: null,
        created: Math.floor(Date.now() / 1000),
        livemode: false,
      };
      session.url = `${base}/c/pay/${session.id}`;
      sessions.set(session.id, session);
      return json(200, session);
    }
    const priceMatch = url.pathname.match(/^\/v1\/prices\/([\w-]+)$/);
    if (req.method === "GET" && priceMatch) {
      const price = DEMO_PRICES[priceMatch[1]];
      if (!price) return refuse(404, `No such price: '${priceMatch[1]}'`);
      return json(200, { id: priceMatch[1], object: "price", unit_amount: price.unit_amount, currency: price.currency });
    }
    const sessionMatch = url.pathname.match(/^\/v1\/checkout\/sessions\/([\w-]+)$/);
    if (req.method === "GET" && sessionMatch && sessions.has(sessionMatch[1])) return json(200, sessions.get(sessionMatch[1]));
    return refuse(404, `Unrecognized request URL (${req.method}: ${url.pathname})`);
  }

  function hostedPage(req, res) {
    const url = new URL(req.url, base);
    const session = sessions.get(url.pathname.slice("/c/pay/".length));
    if (!session) {
      res.writeHead(404, { "content-type": "text/plain" });
      return res.end("No such Checkout Session");
    }
    if (req.method === "POST") {
      // Paying twice (a double-click on Pay) pays once.
      if (session.payment_status !== "paid") {
        Object.assign(session, { status: "complete", payment_status: "paid", payment_intent: id("pi") });
        deliver({ ...session }).catch(() => {});
      }
      res.writeHead(303, { location: session.success_url });
      return res.end();
    }
    const amount = (session.amount_total / 100).toFixed(2);
    res.writeHead(200, { "content-type": "text/html; charset=utf-8" });
    res.end(`<!doctype html><html><head><meta charset="utf-8"><title>Checkout (Stripe stand-in)</title>
<style>body{font-family:system-ui,sans-serif;background:#f6f9fc;display:grid;place-items:center;min-height:100vh;margin:0}
main{background:#fff;padding:2rem 2.5rem;border-radius:12px;box-shadow:0 4px 24px #0002;min-width:20rem}
h1{font-size:1.1rem;color:#635bff;margin:0 0 1rem}p{margin:.4rem 0}.total{font-size:2rem;font-weight:600}
button{background:#635bff;color:#fff;border:0;border-radius:6px;padding:.8rem 1.6rem;font-size:1rem;cursor:pointer;width:100%;margin-top:1rem}
a{display:block;text-align:center;margin-top:1rem;color:#666}</style></head>
<body><main><h1>Stripe Checkout · local stand-in</h1>
<p>Pack <strong>${escape(session.metadata.pack ?? "")}</strong></p>
<p class="total">$${amount} <small>${escape(session.currency.toUpperCase())}</small></p>
<p>Test card 4242 4242 4242 4242</p>
<form method="post"><button type="submit">Pay $${amount}</button></form>
<a href="${escape(session.cancel_url)}">Cancel</a></main></body></html>`);
  }

  const server = createServer((req, res) => {
    let raw = "";
    req.setEncoding("utf8");
    req.on("data", (chunk) => (raw += chunk));
    req.on("end", () => {
      if (req.url.startsWith("/c/pay/")) return hostedPage(req, res);
      if (req.url === "/_standin/deliveries") {
        res.writeHead(200, { "content-type": "application/json" });
        return res.end(JSON.stringify(attempts));
      }
      return api(req, res, raw);
    });
  });
  await new Promise((resolve) => server.listen(port, host, resolve));
  base = `http://${host}:${server.address().port}`;
  return { url: base, server, deliveries: attempts };
}
