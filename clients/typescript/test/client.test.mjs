// The client against the real dev server (`credits serve`, DynamoDB Local).
import assert from "node:assert/strict";
import { after, before, describe, test } from "node:test";

import { CreditsClient, CreditsError } from "../dist/index.js";
import { mintToken, sendBflWebhook, startServer, uniqueUser } from "./support/server.mjs";

let server;
let admin;

before(async () => {
  server = await startServer();
  admin = new CreditsClient({ baseUrl: server.api, token: mintToken(uniqueUser("admin"), { admin: true }) });
});

after(async () => {
  await server?.stop();
});

/** A new user with `credits` granted (0: none), and a client acting as them. */
async function newUser(label, credits, options = {}) {
  const userId = uniqueUser(label);
  if (credits > 0) await admin.adminGrant(userId, { amount: credits, reason: "purchase" });
  const client = new CreditsClient({ baseUrl: server.api, token: mintToken(userId), ...options });
  return { userId, client };
}

function figures(balance) {
  const { available, reserved, spent, granted } = balance;
  return { available, reserved, spent, granted };
}

describe("credits client against the dev server", () => {
  test("image-generation flow: grant, reserve, confirm → 40/0/10/50", async () => {
    const userId = uniqueUser("flow");
    const grant = await admin.adminGrant(
      userId,
      { amount: 50, reason: "purchase", description: "Starter pack" },
      { idempotencyKey: "order-1001" },
    );
    assert.equal(grant.balance.granted, 50);
    // A retried purchase (same key) credits once.
    const again = await admin.adminGrant(
      userId,
      { amount: 50, reason: "purchase", description: "Starter pack" },
      { idempotencyKey: "order-1001" },
    );
    assert.equal(again.grantId, grant.grantId);

    const client = new CreditsClient({ baseUrl: server.api, token: mintToken(userId) });
    const prices = await client.getPrices();
    assert.equal(prices.operations.find((p) => p.operation === "design_generate_image")?.unitCost, 5);

    let seen;
    const result = await client.withCredits("design_generate_image", 2, async (hold) => {
      seen = hold;
      assert.equal(hold.status, "pending");
      assert.equal(hold.amount, 10);
      assert.deepEqual(figures(await client.getBalance()), { available: 40, reserved: 10, spent: 0, granted: 50 });
      return { value: ["a.png", "b.png"] };
    });
    assert.equal(result.outcome, "confirmed");
    assert.deepEqual(result.value, ["a.png", "b.png"]);
    assert.equal(result.reservation.reservationId, seen.reservationId);
    assert.equal(result.reservation.status, "confirmed");
    assert.equal(result.reservation.capturedAmount, 10);

    const balance = await client.getBalance();
    assert.equal(balance.userId, userId);
    assert.deepEqual(figures(balance), { available: 40, reserved: 0, spent: 10, granted: 50 });
    assert.deepEqual(figures(await admin.adminBalance(userId)), figures(balance));

    // Confirm is idempotent: a repeat answers the same and charges nothing more.
    const repeat = await client.confirm(seen.reservationId);
    assert.equal(repeat.status, "confirmed");
    assert.deepEqual(figures(await client.getBalance()), { available: 40, reserved: 0, spent: 10, granted: 50 });

    const withEvents = await client.getReservation(seen.reservationId);
    assert.deepEqual(
      withEvents.events.map((e) => e.type),
      ["reserved", "confirmed"],
    );
    const history = await client.listTransactions({ limit: 10 });
    assert.deepEqual(
      history.items.map((i) => i.type),
      ["confirm", "reserve", "grant"],
    );
    const adminHistory = await admin.adminTransactions(userId, { limit: 1 });
    assert.equal(adminHistory.items.length, 1);
    assert.equal(typeof adminHistory.nextCursor, "string");
    const next = await admin.adminTransactions(userId, { limit: 10, cursor: adminHistory.nextCursor });
    assert.equal(next.items.length, 2);
  });

  test("partial success confirms only the units that came out", async () => {
    const { client } = await newUser("partial", 50);
    const result = await client.withCredits("design_generate_image", 4, async () => ({ value: "3 of 4", units: 3 }));
    assert.equal(result.reservation.capturedUnits, 3);
    assert.equal(result.reservation.capturedAmount, 15);
    assert.deepEqual(figures(await client.getBalance()), { available: 35, reserved: 0, spent: 15, granted: 50 });
  });

  test("a job that reports failure (or 0 units) releases the hold", async () => {
    const { client } = await newUser("failed", 50);
    const failed = await client.withCredits("design_generate_logo", 1, async () => ({ value: null, failed: true }));
    assert.equal(failed.outcome, "released");
    assert.equal(failed.reservation.status, "released");
    assert.equal(failed.reservation.releasedAmount, 6);
    const none = await client.withCredits("design_generate_logo", 1, async () => ({ value: [], units: 0 }));
    assert.equal(none.outcome, "released");
    assert.deepEqual(figures(await client.getBalance()), { available: 50, reserved: 0, spent: 0, granted: 50 });
  });

  test("a job that throws releases the hold and rethrows", async () => {
    const { client } = await newUser("throws", 50);
    const boom = new Error("provider exploded");
    let holdId;
    await assert.rejects(
      client.withCredits("design_generate_image", 2, async (hold) => {
        holdId = hold.reservationId;
        assert.equal((await client.getBalance()).reserved, 10);
        throw boom;
      }),
      (error) => error === boom,
    );
    const hold = await client.getReservation(holdId);
    assert.equal(hold.status, "released");
    assert.deepEqual(figures(await client.getBalance()), { available: 50, reserved: 0, spent: 0, granted: 50 });
  });

  test("402 insufficient_credits is a CreditsError with available/required/shortfall", async () => {
    const { client } = await newUser("poor", 3);
    let ran = false;
    await assert.rejects(
      client.withCredits("design_generate_image", 1, async () => {
        ran = true;
        return { value: 1 };
      }),
      (error) => {
        assert.ok(error instanceof CreditsError);
        assert.equal(error.status, 402);
        assert.equal(error.code, "insufficient_credits");
        assert.equal(error.type, "urn:credits:error:insufficient_credits");
        assert.equal(error.available, 3);
        assert.equal(error.required, 5);
        assert.equal(error.shortfall, 2);
        assert.match(error.requestId, /^[0-9a-f-]{36}$/);
        assert.match(error.detail, /Insufficient credits/);
        return true;
      },
    );
    assert.equal(ran, false);
  });

  test("Accept-Language pt-BR gives a Portuguese detail", async () => {
    const { client } = await newUser("pt", 0, { acceptLanguage: "pt-BR" });
    await assert.rejects(client.reserve({ operation: "design_generate_variations", units: 10 }), (error) => {
      assert.ok(error instanceof CreditsError);
      assert.equal(error.code, "insufficient_credits");
      assert.equal(error.detail, "Créditos insuficientes para esta operação. Assista a anúncios ou faça upgrade.");
      return true;
    });
    const es = client.with({ acceptLanguage: "es-ES" });
    await assert.rejects(es.getReservation("00000000-0000-4000-8000-000000000000"), (error) => {
      assert.equal(error.code, "reservation_not_found");
      assert.equal(error.status, 404);
      assert.equal(error.detail, "No existe esa reserva.");
      return true;
    });
  });

  test("a 503 after the server placed the hold: the retry replays it, one hold, one charge", async () => {
    const userId = uniqueUser("retry");
    await admin.adminGrant(userId, { amount: 50, reason: "purchase" });
    const sent = [];
    let injected = 0;
    const flaky = async (input, init) => {
      const url = new URL(input instanceof Request ? input.url : input);
      const response = await fetch(input, init); // really sent to the server
      if (url.pathname === "/v1/reservations" && init?.method === "POST") {
        sent.push({ key: new Headers(init.headers).get("idempotency-key"), body: await response.clone().json() });
        if (injected === 0) {
          injected++;
          return new Response(
            JSON.stringify({
              type: "urn:credits:error:unavailable",
              title: "Service unavailable",
              status: 503,
              code: "unavailable",
              detail: "Try again.",
              requestId: "synthetic",
            }),
            { status: 503, headers: { "content-type": "application/problem+json", "retry-after": "0" } },
          );
        }
      }
      return response;
    };
    const client = new CreditsClient({
      baseUrl: server.api,
      token: mintToken(userId),
      fetch: flaky,
      retry: { baseDelayMs: 10 },
    });
    const result = await client.withCredits("design_generate_image", 1, async () => ({ value: "ok" }));
    assert.equal(result.outcome, "confirmed");
    assert.equal(sent.length, 2, "the reserve was sent twice");
    assert.ok(sent[0].key, "an idempotency key was generated");
    assert.equal(sent[1].key, sent[0].key, "the retry reused the key");
    assert.equal(sent[1].body.reservationId, sent[0].body.reservationId, "the retry replayed the same reservation");
    assert.deepEqual(figures(await client.getBalance()), { available: 45, reserved: 0, spent: 5, granted: 50 });
    const history = await client.listTransactions();
    assert.equal(history.items.filter((i) => i.type === "reserve").length, 1);
  });

  test("reserve replays with a caller-given idempotency key; meta says replayed", async () => {
    const { client } = await newUser("idem", 50);
    const first = await client.reserveWithMeta({ operation: "design_generate_icon", units: 2 }, { idempotencyKey: "job-7" });
    const second = await client.reserveWithMeta({ operation: "design_generate_icon", units: 2 }, { idempotencyKey: "job-7" });
    assert.equal(first.status, 201);
    assert.equal(first.replayed, false);
    assert.equal(second.status, 200);
    assert.equal(second.replayed, true);
    assert.equal(second.body.reservationId, first.body.reservationId);
    assert.equal((await client.getBalance()).reserved, 8);
    await assert.rejects(
      client.reserve({ operation: "design_generate_icon", units: 3 }, { idempotencyKey: "job-7" }),
      (error) => error.status === 422 && error.code === "idempotency_key_reused",
    );
  });

  test("a confirm racing the signed BFL webhook charges exactly once", async () => {
    const { client } = await newUser("race", 50);
    for (let round = 1; round <= 3; round++) {
      const taskId = `bfl-${crypto.randomUUID()}`;
      let webhook;
      const result = await client.withCredits(
        "design_generate_image",
        2,
        async () => {
          // The provider reports success while the client confirms.
          webhook = sendBflWebhook(server.api, { id: taskId, status: "Ready" });
          return { value: "done", taskId };
        },
        { taskId },
      );
      const delivered = await webhook;
      assert.equal(result.outcome, "confirmed");
      assert.equal(delivered.status, 200);
      assert.ok(["confirmed", "duplicate"].includes(delivered.body.result), JSON.stringify(delivered.body));
      const hold = await client.getReservation(result.reservation.reservationId);
      assert.equal(hold.status, "confirmed");
      assert.equal(hold.capturedAmount, 10);
      assert.equal(hold.events.filter((e) => e.type === "confirmed").length, 1);
      assert.deepEqual(figures(await client.getBalance()), {
        available: 50 - 10 * round,
        reserved: 0,
        spent: 10 * round,
        granted: 50,
      });
    }
    const history = await client.listTransactions();
    assert.equal(history.items.filter((i) => i.type === "confirm").length, 3);
  });

  test("the webhook settled first: a confirm with other units counts as success, one charge", async () => {
    const { client } = await newUser("webhook-first", 50);
    const taskId = `bfl-${crypto.randomUUID()}`;
    const result = await client.withCredits(
      "design_generate_image",
      2,
      async () => {
        const delivered = await sendBflWebhook(server.api, { id: taskId, status: "Ready" });
        assert.equal(delivered.status, 200);
        assert.equal(delivered.body.result, "confirmed");
        // The job thinks only one image came out: the confirm answers 409 reservation_not_pending.
        return { value: "done", units: 1 };
      },
      { taskId },
    );
    assert.equal(result.outcome, "confirmed");
    assert.equal(result.reservation.status, "confirmed");
    assert.equal(result.reservation.settledBy, "webhook");
    assert.deepEqual(figures(await client.getBalance()), { available: 40, reserved: 0, spent: 10, granted: 50 });
  });

  test("a webhook that arrives before the link is parked and applied at the link", async () => {
    const { client } = await newUser("parked", 50);
    const taskId = `bfl-${crypto.randomUUID()}`;
    const parked = await sendBflWebhook(server.api, { id: taskId, status: "Error" });
    assert.equal(parked.status, 202);
    assert.equal(parked.body.result, "parked");
    const hold = await client.reserve({ operation: "design_generate_image" });
    const linked = await client.linkTask(hold.reservationId, taskId, "bfl");
    assert.equal(linked.status, "released");
    // A job that reports success afterwards cannot charge a released hold.
    await assert.rejects(client.confirm(hold.reservationId), (error) => {
      assert.equal(error.code, "reservation_not_pending");
      assert.equal(error.reservationStatus, "released");
      return true;
    });
    assert.deepEqual(figures(await client.getBalance()), { available: 50, reserved: 0, spent: 0, granted: 50 });
  });

  test("admin routes: refund, cleanup, monitoring; 403 for a user; 404 for another user's hold", async () => {
    const { userId, client } = await newUser("admin-routes", 50);
    const done = await client.withCredits("design_generate_image", 1, async () => ({ value: 1 }));
    const refunded = await admin.adminRefund(done.reservation.reservationId, "unusable");
    assert.equal(refunded.status, "refunded");
    assert.deepEqual(figures(await admin.adminBalance(userId)), { available: 50, reserved: 0, spent: 0, granted: 50 });

    const report = await admin.adminCleanup();
    for (const field of ["expired", "alreadySettled", "remaining", "errors", "scanned", "durationMs"]) {
      assert.equal(typeof report[field], "number", field);
    }
    const health = await admin.adminMonitoring({ type: "health" });
    assert.ok(["healthy", "warning", "critical"].includes(health.status));
    assert.ok(Array.isArray(health.checks));

    await assert.rejects(client.adminCleanup(), (error) => error.status === 403 && error.code === "forbidden");
    const other = await newUser("other", 0);
    await assert.rejects(
      other.client.getReservation(done.reservation.reservationId),
      (error) => error.status === 404 && error.code === "reservation_not_found",
    );
    const anonymous = new CreditsClient({ baseUrl: server.api });
    await assert.rejects(anonymous.getBalance(), (error) => error.status === 401 && error.code === "unauthorized");
  });
});
