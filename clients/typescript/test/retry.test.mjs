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
