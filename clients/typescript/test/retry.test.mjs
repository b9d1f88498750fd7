// Retry, idempotency-key and header behaviour, with a scripted fetch (no server).
import assert from "node:assert/strict";
import { describe, test } from "node:test";

import { CreditsClient, CreditsError } from "../dist/index.js";

const reservation = {
  reservationId: "3f1c2a8e-5b7d-4c1e-9a2b-6d4e8f0a1b2c",
  userId: "u",
  operation: "design_generate_image",
  units: 1,
  unitCost: 5,
  amount: 5,
  status: "pending",
  taskId: null,
  provider: "bfl",
  description: null,
  createdAt: "2026-11-22T18:04:05.123Z",
  expiresAt: "2026-11-22T18:34:05.123Z",
  capturedUnits: 0,
  capturedAmount: 0,
  releasedAmount: 0,
  settledAt: null,
  settledBy: null,
  lots: [{ priority: 50, expiresAt: null, amount: 5 }],
};

const problem = (status, code, extra = {}) =>
  new Response(
    JSON.stringify({ type: `urn:credits:error:${code}`, title: code, status, code, detail: code, requestId: "r", ...extra }),
    { status, headers: { "content-type": "application/problem+json", ...(extra.headers ?? {}) } },
  );
const unavailable = (retryAfter = "0") =>
  new Response(JSON.stringify({ code: "unavailable", status: 503, detail: "busy", requestId: "r" }), {
    status: 503,
    headers: { "content-type": "application/problem+json", "retry-after": retryAfter },
  });
const ok = (body, status = 200) => new Response(JSON.stringify(body), { status, headers: { "content-type": "application/json" } });

/** A fetch answering from a script; records what it was sent. */
function scripted(...answers) {
  const calls = [];
  const fetch = async (url, init) => {
    calls.push({ url: String(url), method: init.method, headers: new Headers(init.headers), body: init.body });
    const next = answers.shift();
    if (next === undefined) throw new Error("script exhausted");
    if (next instanceof Error) throw next;
    return typeof next === "function" ? next() : next;
  };
  return { fetch, calls };
}

const client = (fetch, options = {}) =>
  new CreditsClient({ baseUrl: "http://credits.test/", token: "tok", fetch, retry: { baseDelayMs: 1 }, ...options });

describe("retries", () => {
  test("503 twice then 201: three attempts with the same generated idempotency key", async () => {
    const { fetch, calls } = scripted(unavailable(), unavailable(), ok(reservation, 201));
    const hold = await client(fetch).reserve({ operation: "design_generate_image" });
    assert.equal(hold.reservationId, reservation.reservationId);
    assert.equal(calls.length, 3);
    const keys = calls.map((c) => c.headers.get("idempotency-key"));
    assert.match(keys[0], /^[0-9a-f-]{36}$/);
    assert.deepEqual(keys, [keys[0], keys[0], keys[0]]);
    assert.equal(calls[0].url, "http://credits.test/v1/reservations");
    assert.deepEqual(JSON.parse(calls[2].body), { operation: "design_generate_image" });
  });

  test("each logical reserve gets its own key", async () => {
    const { fetch, calls } = scripted(ok(reservation, 201), ok(reservation, 201));
    const c = client(fetch);
    await c.reserve({ operation: "x" });
    await c.reserve({ operation: "x" });
    assert.notEqual(calls[0].headers.get("idempotency-key"), calls[1].headers.get("idempotency-key"));
  });

  test("a caller-given key is used as is; adminGrant generates one too", async () => {
    const grant = { grantId: "g", balance: {} };
    const { fetch, calls } = scripted(ok(reservation, 201), unavailable(), ok(grant, 201));
    const c = client(fetch);
    await c.reserve({ operation: "x" }, { idempotencyKey: "job-7" });
    await c.adminGrant("user/1", { amount: 5, reason: "promo" });
    assert.equal(calls[0].headers.get("idempotency-key"), "job-7");
    assert.equal(calls[1].url, "http://credits.test/v1/admin/users/user%2F1/grants");
    assert.ok(calls[1].headers.get("idempotency-key"));
    assert.equal(calls[2].headers.get("idempotency-key"), calls[1].headers.get("idempotency-key"));
  });

  test("adminGrant sends priority and expiresAt, a Date as RFC 3339 UTC; an invalid Date is refused before sending", async () => {
    const grant = { grantId: "g", balance: {} };
    const { fetch, calls } = scripted(ok(grant, 201), ok(grant, 201));
    const c = client(fetch);
    await c.adminGrant("u", { amount: 5, reason: "promo", priority: 5, expiresAt: new Date(Date.UTC(2026, 11, 1)) });
    await c.adminGrant("u", { amount: 5, reason: "promo", expiresAt: "2026-12-01T02:00:00+02:00" });
    assert.deepEqual(JSON.parse(calls[0].body), {
      amount: 5,
      reason: "promo",
      priority: 5,
      expiresAt: "2026-12-01T00:00:00.000Z",
    });
    assert.deepEqual(JSON.parse(calls[1].body), { amount: 5, reason: "promo", expiresAt: "2026-12-01T02:00:00+02:00" });
    await assert.rejects(c.adminGrant("u", { amount: 5, reason: "promo", expiresAt: new Date("soon") }), TypeError);
    assert.equal(calls.length, 2);
  });

  test("adminDebit posts to the user's debits with a generated key, reused on its retries; a replay says so", async () => {
    const debit = { debitId: "d", amount: 5, requested: 5, lots: [], balance: {} };
    const replayed = () =>
      new Response(JSON.stringify(debit), {
        status: 200,
        headers: { "content-type": "application/json", "idempotent-replayed": "true" },
      });
    const { fetch, calls } = scripted(unavailable(), replayed, ok(debit, 201));
    const c = client(fetch);
    const answer = await c.adminDebitWithMeta("user/1", { amount: 5, reason: "chargeback", partial: true });
    assert.equal(answer.status, 200);
    assert.equal(answer.replayed, true);
    assert.deepEqual(answer.body, debit);
    assert.equal(calls.length, 2);
    for (const call of calls) {
      assert.equal(call.url, "http://credits.test/v1/admin/users/user%2F1/debits");
      assert.equal(call.method, "POST");
      assert.deepEqual(JSON.parse(call.body), { amount: 5, reason: "chargeback", partial: true });
    }
    assert.ok(calls[0].headers.get("idempotency-key"));
    assert.equal(calls[1].headers.get("idempotency-key"), calls[0].headers.get("idempotency-key"));
    assert.deepEqual(await c.adminDebit("u", { amount: 5, reason: "refund" }, { idempotencyKey: "ch_1-refund" }), debit);
    assert.equal(calls[2].headers.get("idempotency-key"), "ch_1-refund");
  });

  test("adminSetPlan PUTs the plan (a Date anchor as RFC 3339 UTC), retried on a 503 and a network error with no key", async () => {
    const balance = { userId: "user/1", plan: { plan: "pro" } };
    const { fetch, calls } = scripted(unavailable(), new TypeError("fetch failed"), ok(balance), ok(balance));
    const c = client(fetch);
    const answer = await c.adminSetPlan("user/1", {
      plan: "pro",
      allowance: 100,
      period: "month",
      rollover: 20,
      anchor: new Date(Date.UTC(2027, 0, 1)),
    });
    assert.deepEqual(answer, balance);
    assert.equal(calls.length, 3);
    for (const call of calls) {
      assert.equal(call.url, "http://credits.test/v1/admin/users/user%2F1/plan");
      assert.equal(call.method, "PUT");
      assert.equal(call.headers.get("idempotency-key"), null);
      assert.equal(call.headers.get("content-type"), "application/json");
      assert.deepEqual(JSON.parse(call.body), {
        plan: "pro",
        allowance: 100,
        period: "month",
        rollover: 20,
        anchor: "2027-01-01T00:00:00.000Z",
      });
    }
    await c.adminSetPlan("u", { plan: "pro", allowance: 100, period: "day" });
    assert.deepEqual(JSON.parse(calls[3].body), { plan: "pro", allowance: 100, period: "day" });
    await assert.rejects(c.adminSetPlan("u", { plan: "pro", allowance: 1, period: "day", anchor: new Date("soon") }), TypeError);
    assert.equal(calls.length, 4);
  });

  test("adminEndPlan DELETEs the plan without a body, retried; a failure says the call is safe to repeat", async () => {
    const balance = { userId: "u", plan: { plan: "pro", endsAt: "2027-02-01T00:00:00.000Z" } };
    const { fetch, calls } = scripted(unavailable(), ok(balance), new TypeError("a"), new TypeError("b"), new TypeError("c"));
    const c = client(fetch);
    assert.deepEqual(await c.adminEndPlan("u"), balance);
    assert.equal(calls.length, 2);
    for (const call of calls) {
      assert.equal(call.url, "http://credits.test/v1/admin/users/u/plan");
      assert.equal(call.method, "DELETE");
      assert.equal(call.body, undefined);
      assert.equal(call.headers.get("content-type"), null);
    }
    await assert.rejects(c.adminEndPlan("u"), (error) => {
      assert.equal(error.code, "network_error");
      assert.equal(error.idempotencyKey, undefined);
      assert.match(error.detail, /^DELETE \/v1\/admin\/users\/u\/plan failed after 3 attempt\(s\)/);
      assert.match(error.detail, /may or may not have been applied: retry \(the call is safe to repeat\)/);
      return true;
    });
    assert.equal(calls.length, 5);
  });

  test("a capture sends final: false with its key, reused on its retries; a replay says so", async () => {
    const replayed = () =>
      new Response(JSON.stringify(reservation), {
        status: 200,
        headers: { "content-type": "application/json", "idempotent-replayed": "true" },
      });
    const { fetch, calls } = scripted(unavailable(), new TypeError("fetch failed"), replayed);
    const answer = await client(fetch).captureWithMeta("hold/1", 2, { idempotencyKey: "job-7-out-0" });
    assert.equal(answer.replayed, true);
    assert.equal(calls.length, 3);
    for (const call of calls) {
      assert.equal(call.url, "http://credits.test/v1/reservations/hold%2F1/confirm");
      assert.equal(call.headers.get("idempotency-key"), "job-7-out-0");
      assert.deepEqual(JSON.parse(call.body), { units: 2, final: false });
    }
    // No key: refused before anything is sent.
    await assert.rejects(client(fetch).capture("hold/1", 1, {}), TypeError);
    assert.equal(calls.length, 3);
  });

  test("extend sends ttlSeconds to the hold's extend route", async () => {
    const { fetch, calls } = scripted(ok(reservation));
    await client(fetch).extend(reservation.reservationId, 3600);
    assert.equal(calls[0].url, `http://credits.test/v1/reservations/${reservation.reservationId}/extend`);
    assert.equal(calls[0].method, "POST");
    assert.deepEqual(JSON.parse(calls[0].body), { ttlSeconds: 3600 });
  });

  test("gives up after maxAttempts 503s with the last problem", async () => {
    const { fetch, calls } = scripted(unavailable(), unavailable(), unavailable(), unavailable());
    await assert.rejects(client(fetch).getBalance(), (error) => {
      assert.ok(error instanceof CreditsError);
      assert.equal(error.status, 503);
      assert.equal(error.code, "unavailable");
      assert.equal(error.retryAfter, 0);
      return true;
    });
    assert.equal(calls.length, 3);
  });

  test("maxAttempts is configurable", async () => {
    const five = scripted(unavailable(), unavailable(), unavailable(), unavailable(), ok({ operations: [] }));
    await client(five.fetch, { retry: { maxAttempts: 5, baseDelayMs: 1 } }).getPrices();
    assert.equal(five.calls.length, 5);
    const one = scripted(unavailable());
    await assert.rejects(client(one.fetch, { retry: { maxAttempts: 1 } }).getPrices(), { status: 503 });
    assert.equal(one.calls.length, 1);
  });

  for (const [status, code] of [
    [400, "validation_error"],
    [402, "insufficient_credits"],
    [409, "reservation_not_pending"],
    [422, "idempotency_key_reused"],
    [500, "internal"],
    [502, "internal"],
  ]) {
    test(`never retries a ${status}`, async () => {
      const { fetch, calls } = scripted(problem(status, code), ok(reservation));
      await assert.rejects(client(fetch).reserve({ operation: "x" }), (error) => {
        assert.equal(error.status, status);
        assert.equal(error.code, code);
        return true;
      });
      assert.equal(calls.length, 1);
    });
  }

  test("retries a network error, then reports network_error", async () => {
    const once = scripted(new TypeError("fetch failed"), ok(reservation));
    assert.equal((await client(once.fetch).confirm(reservation.reservationId)).reservationId, reservation.reservationId);
    assert.equal(once.calls.length, 2);
    assert.equal(once.calls[0].url, `http://credits.test/v1/reservations/${reservation.reservationId}/confirm`);
    const always = scripted(new TypeError("a"), new TypeError("b"), new TypeError("c"));
    await assert.rejects(client(always.fetch).release("r"), (error) => {
      assert.ok(error instanceof CreditsError);
      assert.equal(error.status, 0);
      assert.equal(error.code, "network_error");
      assert.ok(error.cause instanceof TypeError);
      return true;
    });
    assert.equal(always.calls.length, 3);
  });

  test("honours Retry-After seconds", async () => {
    const { fetch } = scripted(unavailable("1"), ok({ operations: [] }));
    const started = Date.now();
    await client(fetch).getPrices();
    assert.ok(Date.now() - started >= 950, `waited ${Date.now() - started} ms`);
  });
});

describe("requests", () => {
  test("sends bearer token, Accept-Language and JSON; query parameters", async () => {
    const { fetch, calls } = scripted(ok({ items: [], nextCursor: null }), ok({}));
    const c = client(fetch, { acceptLanguage: "pt-BR", token: async () => "fresh" });
    await c.listTransactions({ limit: 5, cursor: "abc" });
    await c.adminMonitoring({ type: "top-users", period: "week" });
    assert.equal(calls[0].url, "http://credits.test/v1/transactions?limit=5&cursor=abc");
    assert.equal(calls[0].headers.get("authorization"), "Bearer fresh");
    assert.equal(calls[0].headers.get("accept-language"), "pt-BR");
    assert.equal(calls[1].url, "http://credits.test/v1/admin/monitoring?type=top-users&period=week");
  });

  test("reservation_not_pending carries reservationStatus; a non-problem error body still gives a CreditsError", async () => {
    const { fetch } = scripted(
      problem(409, "reservation_not_pending", { reservationStatus: "released" }),
      new Response(JSON.stringify({ message: "Unauthorized" }), { status: 401 }),
    );
    const c = client(fetch);
    await assert.rejects(c.confirm("r"), { code: "reservation_not_pending", reservationStatus: "released" });
    await assert.rejects(c.getBalance(), { status: 401, code: "unauthorized", detail: "Unauthorized" });
  });
});

describe("API Gateway's own answers and the 503 outcome", () => {
  const gateway = (status, message, headers = {}) =>
    new Response(JSON.stringify({ message }), { status, headers: { "content-type": "application/json", ...headers } });

  test("a gateway 503 {message} is retried like ours; a gateway 429 too (nothing ran)", async () => {
    const { fetch, calls } = scripted(
      gateway(503, "Service Unavailable"),
      gateway(429, "Too Many Requests"),
      ok(reservation, 201),
    );
    await client(fetch).reserve({ operation: "x" });
    assert.equal(calls.length, 3);
    assert.equal(new Set(calls.map((c) => c.headers.get("idempotency-key"))).size, 1);
  });

  test("gateway bodies become CreditsErrors with the gateway's message", async () => {
    const { fetch } = scripted(
      gateway(429, "Too Many Requests"),
      gateway(429, "Too Many Requests"),
      gateway(429, "Too Many Requests"),
      gateway(403, "Forbidden"),
      gateway(500, "Internal Server Error"),
      gateway(404, "Not Found"),
    );
    const c = client(fetch);
    await assert.rejects(c.getPrices(), { status: 429, code: "rate_limited", detail: "Too Many Requests" });
    await assert.rejects(c.getPrices(), { status: 403, code: "forbidden", detail: "Forbidden" });
    await assert.rejects(c.getPrices(), { status: 500, code: "internal", detail: "Internal Server Error" });
    await assert.rejects(c.getPrices(), { status: 404, code: "not_found", detail: "Not Found" });
  });

  test("a 503 that says applied is retried; the last one keeps applied and the idempotency key", async () => {
    const applied = () =>
      new Response(
        JSON.stringify({ code: "unavailable", status: 503, detail: "applied, unread", requestId: "r", applied: true }),
        { status: 503, headers: { "content-type": "application/problem+json", "retry-after": "0" } },
      );
    const { fetch, calls } = scripted(applied(), applied(), applied());
    await assert.rejects(client(fetch).reserve({ operation: "x" }, { idempotencyKey: "job-9" }), (error) => {
      assert.ok(error instanceof CreditsError);
      assert.equal(error.code, "unavailable");
      assert.equal(error.applied, true);
      assert.equal(error.idempotencyKey, "job-9");
      return true;
    });
    assert.equal(calls.length, 3);
    const plain = scripted(unavailable(), unavailable(), unavailable());
    await assert.rejects(client(plain.fetch).reserve({ operation: "x" }), (error) => {
      assert.equal(error.applied, undefined, "a plain 503: may or may not have been applied");
      assert.equal(error.idempotencyKey, plain.calls[0].headers.get("idempotency-key"));
      return true;
    });
  });

  test("a network failure on a write says the change may or may not have been applied", async () => {
    const { fetch } = scripted(new TypeError("a"), new TypeError("b"), new TypeError("c"));
    await assert.rejects(client(fetch).reserve({ operation: "x" }, { idempotencyKey: "k" }), (error) => {
      assert.equal(error.code, "network_error");
      assert.equal(error.idempotencyKey, "k");
      assert.match(error.detail, /may or may not have been applied: retry with the same Idempotency-Key/);
      return true;
    });
  });

  test("too_many_open_holds carries openHolds and limit", async () => {
    const { fetch } = scripted(problem(409, "too_many_open_holds", { openHolds: 100, limit: 100 }));
    await assert.rejects(client(fetch).reserve({ operation: "x" }), {
      status: 409,
      code: "too_many_open_holds",
      openHolds: 100,
      limit: 100,
    });
  });

  test("too_many_lots carries limit", async () => {
    const { fetch } = scripted(problem(409, "too_many_lots", { limit: 100 }));
    await assert.rejects(client(fetch).adminGrant("u", { amount: 1, reason: "promo" }), {
      status: 409,
      code: "too_many_lots",
      limit: 100,
    });
  });
});

describe("acting for a user", () => {
  test("forUser sends Credits-User on user routes and hold routes, not on prices or admin routes", async () => {
    const answers = [
      ok({}),
      ok({ items: [], nextCursor: null }),
      ok(reservation, 201),
      ok(reservation),
      ok(reservation),
      ok(reservation),
      ok(reservation),
      ok({ operations: [] }),
      ok({}),
    ];
    const { fetch, calls } = scripted(...answers);
    const base = client(fetch);
    const alice = base.forUser("alice@example.com");
    assert.equal(alice.user, "alice@example.com");
    assert.equal(base.user, undefined, "forUser leaves the original unbound");
    await alice.getBalance();
    await alice.listTransactions();
    await alice.reserve({ operation: "x" });
    await alice.getReservation("r");
    await alice.confirm("r");
    await alice.release("r");
    await alice.linkTask("r", "t");
    await alice.getPrices();
    await alice.adminBalance("bob");
    assert.deepEqual(
      calls.map((c) => c.headers.get("credits-user")),
      [...Array(7).fill("alice@example.com"), null, null],
    );
    assert.ok(calls.every((c) => c.headers.get("authorization") === "Bearer tok"));
  });

  test("a per-call user wins over the bound one; an unbound client sends none", async () => {
    const { fetch, calls } = scripted(ok({}), ok({}), ok({}));
    const base = client(fetch);
    await base.forUser("alice").getBalance({ user: "bob" });
    await base.getBalance({ user: "carol" });
    await base.getBalance();
    assert.deepEqual(
      calls.map((c) => c.headers.get("credits-user")),
      ["bob", "carol", null],
    );
    assert.throws(() => base.forUser(""), TypeError);
    assert.throws(() => base.forUser("x".repeat(257)), TypeError);
    assert.throws(() => base.forUser("jos\u00e9"), TypeError);
    assert.equal(base.forUser("x".repeat(256)).user.length, 256);
  });

  test("a 400 naming Credits-User, with no user given, says to use forUser", async () => {
    const missing = () => problem(400, "validation_error", { field: "Credits-User", detail: 'Field "Credits-User" is required.' });
    const { fetch } = scripted(missing(), missing());
    const c = client(fetch);
    await assert.rejects(c.getBalance(), (error) => {
      assert.equal(error.field, "Credits-User");
      assert.equal(error.detail, 'Field "Credits-User" is required.');
      assert.match(error.message, /GET \/v1\/balance acts for a user: call it on credits\.forUser\(userId\) or pass \{ user: userId \}/);
      return true;
    });
    await assert.rejects(c.forUser("u").getBalance(), (error) => !/forUser/.test(error.message));
  });
});

describe("credentials", () => {
  const unauthorized = () => problem(401, "unauthorized");

  test("after a 401 a token provider is asked again with { rejected } and the request retried once", async () => {
    const asked = [];
    let n = 0;
    const provider = async (context) => {
      asked.push(context);
      return `token-${++n}`;
    };
    const { fetch, calls } = scripted(unauthorized(), ok({}), unauthorized(), unauthorized());
    const c = client(fetch, { token: provider });
    await c.getBalance();
    assert.deepEqual(
      calls.map((call) => call.headers.get("authorization")),
      ["Bearer token-1", "Bearer token-2"],
    );
    assert.deepEqual(asked, [{}, { rejected: "token-1" }]);
    // Refused again after the fresh token: one retry only, then the 401.
    await assert.rejects(c.getBalance(), { status: 401, code: "unauthorized" });
    assert.equal(calls.length, 4);
  });

  test("a provider that gives the same token again, or a static token, is not retried on a 401", async () => {
    const same = scripted(unauthorized());
    await assert.rejects(client(same.fetch, { token: () => "same" }).getBalance(), { status: 401 });
    assert.equal(same.calls.length, 1);
    const fixed = scripted(unauthorized());
    await assert.rejects(client(fixed.fetch).getBalance(), { status: 401 });
    assert.equal(fixed.calls.length, 1);
  });

  test("client credentials: token endpoint failures that may pass are retried within the budget", async () => {
    const tokenUrl = "https://auth.example/oauth2/token";
    const sent = [];
    const answers = [
      new TypeError("connect ECONNREFUSED"),
      new Response(JSON.stringify({ error: "slow_down" }), { status: 503 }),
      ok({ access_token: "cc-1", expires_in: 3600, token_type: "Bearer" }),
      ok({}),
    ];
    const fetch = async (url, init) => {
      sent.push({ url: String(url), headers: new Headers(init.headers), body: String(init.body ?? "") });
      const next = answers.shift();
      if (next instanceof Error) throw next;
      return next;
    };
    const c = new CreditsClient({
      baseUrl: "http://credits.test",
      clientCredentials: { clientId: "app", clientSecret: "p@ss word", tokenUrl, scope: "credits/server openid" },
      fetch,
      retry: { baseDelayMs: 1 },
    });
    await c.forUser("u").getBalance();
    assert.deepEqual(
      sent.map((s) => s.url),
      [tokenUrl, tokenUrl, tokenUrl, "http://credits.test/v1/balance"],
    );
    assert.equal(sent[0].headers.get("authorization"), `Basic ${btoa("app:p%40ss+word")}`);
    assert.equal(sent[0].headers.get("content-type"), "application/x-www-form-urlencoded");
    assert.equal(sent[0].body, "grant_type=client_credentials&scope=credits%2Fserver+openid");
    assert.equal(sent[3].headers.get("authorization"), "Bearer cc-1");
  });

  test("client credentials: a token without expires_in is kept until the API refuses it", async () => {
    const { clientCredentials } = await import("../dist/index.js");
    let n = 0;
    const provider = clientCredentials({
      clientId: "app",
      clientSecret: "s",
      tokenUrl: "https://auth.example/token",
      fetch: async () => ok({ access_token: `t${++n}` }),
    });
    assert.equal(await provider({}), "t1");
    assert.equal(await provider({}), "t1");
    assert.equal(await provider({ rejected: "an older one" }), "t1", "only the cached token is dropped");
    assert.equal(await provider({ rejected: "t1" }), "t2");
    assert.throws(() => clientCredentials({ clientId: "app", clientSecret: "", tokenUrl: "x" }), TypeError);
    assert.throws(() => new CreditsClient({ baseUrl: "http://x", token: "t", clientCredentials: { clientId: "a", clientSecret: "b", tokenUrl: "c" } }), TypeError);
  });
});

describe("settings and webhook endpoints", () => {
  const endpoint = {
    id: "5b1e0f2a-7c3d-4e8f-9a1b-2c3d4e5f6a7b",
    url: "https://app.example/hooks/credits",
    events: ["hold.expired", "balance.low"],
    description: "Tell users",
    status: "enabled",
    createdAt: "2026-11-22T18:04:05.123Z",
    failingSince: null,
    lastSuccessAt: null,
    disabledAt: null,
    disabledReason: null,
  };
  const noContent = () => new Response(null, { status: 204 });
  const gateway429 = () =>
    new Response(JSON.stringify({ message: "Too Many Requests" }), { status: 429, headers: { "content-type": "application/json" } });

  test("adminSetSettings PUTs the threshold (null too), retried on a 503 with no key", async () => {
    const { fetch, calls } = scripted(unavailable(), ok({ userId: "user/1", lowBalanceThreshold: 20 }), ok({ userId: "u", lowBalanceThreshold: null }));
    const c = client(fetch);
    assert.deepEqual(await c.adminSetSettings("user/1", { lowBalanceThreshold: 20 }), { userId: "user/1", lowBalanceThreshold: 20 });
    assert.equal(calls.length, 2);
    for (const call of calls) {
      assert.equal(call.url, "http://credits.test/v1/admin/users/user%2F1/settings");
      assert.equal(call.method, "PUT");
      assert.equal(call.headers.get("idempotency-key"), null);
      assert.deepEqual(JSON.parse(call.body), { lowBalanceThreshold: 20 });
    }
    await c.adminSetSettings("u", { lowBalanceThreshold: null });
    assert.equal(calls[2].body, '{"lowBalanceThreshold":null}');
  });

  test("adminCreateWebhookEndpoint POSTs once: a 503 or a network error is not retried (it may exist), a 429 is", async () => {
    const created = { ...endpoint, secret: "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw" };
    const { fetch, calls } = scripted(gateway429(), ok(created, 201), unavailable(), new TypeError("fetch failed"));
    const c = client(fetch);
    const request = { url: endpoint.url, events: endpoint.events, description: endpoint.description };
    assert.deepEqual(await c.adminCreateWebhookEndpoint(request), created);
    assert.equal(calls.length, 2);
    assert.equal(calls[1].url, "http://credits.test/v1/admin/webhook-endpoints");
    assert.equal(calls[1].method, "POST");
    assert.equal(calls[1].headers.get("idempotency-key"), null);
    assert.deepEqual(JSON.parse(calls[1].body), request);

    await assert.rejects(c.adminCreateWebhookEndpoint(request), (error) => {
      assert.equal(error.status, 503);
      assert.equal(error.code, "unavailable");
      assert.match(error.message, /list the endpoints \(adminListWebhookEndpoints\) before creating it again/);
      return true;
    });
    assert.equal(calls.length, 3);
    await assert.rejects(c.adminCreateWebhookEndpoint(request), (error) => {
      assert.equal(error.code, "network_error");
      assert.match(error.detail, /failed after 1 attempt\(s\)/);
      assert.match(error.detail, /may or may not have been created/);
      return true;
    });
    assert.equal(calls.length, 4);
  });

  test("list, get and deliveries GET their routes (limit and cursor in the query)", async () => {
    const page = { items: [], nextCursor: null };
    const { fetch, calls } = scripted(ok({ items: [endpoint] }), ok(endpoint), ok(page), ok(page));
    const c = client(fetch);
    assert.deepEqual(await c.adminListWebhookEndpoints(), { items: [endpoint] });
    assert.deepEqual(await c.adminGetWebhookEndpoint(endpoint.id), endpoint);
    assert.deepEqual(await c.adminListWebhookDeliveries(endpoint.id, { limit: 10, cursor: "abc_-" }), page);
    await c.adminListWebhookDeliveries(endpoint.id);
    assert.deepEqual(
      calls.map((call) => `${call.method} ${call.url}`),
      [
        "GET http://credits.test/v1/admin/webhook-endpoints",
        `GET http://credits.test/v1/admin/webhook-endpoints/${endpoint.id}`,
        `GET http://credits.test/v1/admin/webhook-endpoints/${endpoint.id}/deliveries?limit=10&cursor=abc_-`,
        `GET http://credits.test/v1/admin/webhook-endpoints/${endpoint.id}/deliveries`,
      ],
    );
  });

  test("adminDeleteWebhookEndpoint: a 204 without a body resolves; a 404 is endpoint_not_found", async () => {
    const { fetch, calls } = scripted(noContent(), problem(404, "endpoint_not_found"));
    const c = client(fetch);
    assert.equal(await c.adminDeleteWebhookEndpoint(endpoint.id), undefined);
    assert.equal(calls[0].method, "DELETE");
    assert.equal(calls[0].url, `http://credits.test/v1/admin/webhook-endpoints/${endpoint.id}`);
    assert.equal(calls[0].body, undefined);
    await assert.rejects(c.adminDeleteWebhookEndpoint(endpoint.id), { status: 404, code: "endpoint_not_found" });
  });

  test("adminDeleteWebhookEndpoint: a 404 after a 503 or a network error means the earlier attempt deleted it", async () => {
    const { fetch, calls } = scripted(
      unavailable(),
      problem(404, "endpoint_not_found"),
      new TypeError("socket hang up"),
      problem(404, "endpoint_not_found"),
      unavailable(),
      noContent(),
    );
    const c = client(fetch);
    assert.deepEqual(await c.adminDeleteWebhookEndpointWithMeta(endpoint.id), { body: undefined, status: 204, replayed: true });
    await c.adminDeleteWebhookEndpoint(endpoint.id);
    assert.deepEqual(await c.adminDeleteWebhookEndpointWithMeta(endpoint.id), { body: undefined, status: 204, replayed: false });
    assert.equal(calls.length, 6);
  });

  test("endpoint_not_found and too_many_endpoints (limit) are CreditsErrors", async () => {
    const { fetch } = scripted(problem(404, "endpoint_not_found"), problem(409, "too_many_endpoints", { limit: 20 }));
    const c = client(fetch);
    await assert.rejects(c.adminGetWebhookEndpoint(endpoint.id), (error) => error instanceof CreditsError && error.code === "endpoint_not_found");
    await assert.rejects(c.adminCreateWebhookEndpoint({ url: endpoint.url }), { status: 409, code: "too_many_endpoints", limit: 20 });
  });
});
