// The client against the real dev server (`credits serve`, DynamoDB Local).
// Writes go through the app server's credential (`SERVER_TOKEN`, client
// `dev-server`) acting for a user; a user's own token only reads.
import assert from "node:assert/strict";
import { after, before, describe, test } from "node:test";

import { CreditsClient, CreditsError } from "../dist/index.js";
import {
  MAX_OPEN_HOLDS,
  SERVER_CLIENT_ID,
  mintServerToken,
  mintToken,
  sendBflWebhook,
  startServer,
  uniqueUser,
} from "./support/server.mjs";
import { startTokenEndpoint } from "./support/token-endpoint.mjs";

const READ_ONLY = "Holds are placed and settled by the app's server; this token can only read.";

let server;
let admin;
let adminId;
/** The app's back end: the server credential, bound to no user. */
let backend;

before(async () => {
  server = await startServer();
  adminId = uniqueUser("admin");
  admin = new CreditsClient({ baseUrl: server.api, token: mintToken(adminId, { admin: true }) });
  assert.ok(server.serverToken, "the dev server prints SERVER_TOKEN");
  backend = new CreditsClient({ baseUrl: server.api, token: server.serverToken });
});

after(async () => {
  await server?.stop();
});

/**
 * A new user with `credits` granted (0: none): `client` is the app server
 * acting for them (`forUser`), `own` the user's own token (the browser).
 */
async function newUser(label, credits, options = {}) {
  const userId = uniqueUser(label);
  if (credits > 0) await admin.adminGrant(userId, { amount: credits, reason: "purchase" });
  const client = backend.with({ ...options, user: userId });
  const own = new CreditsClient({ baseUrl: server.api, token: mintToken(userId), ...options });
  return { userId, client, own };
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

    const client = backend.forUser(userId);
    const own = new CreditsClient({ baseUrl: server.api, token: mintToken(userId) });
    const prices = await own.getPrices();
    assert.equal(prices.operations.find((p) => p.operation === "design_generate_image")?.unitCost, 5);
    assert.deepEqual(prices.packs.find((p) => p.pack === "starter"), {
      pack: "starter",
      credits: 100,
      expiresInDays: null,
      amountTotal: 900,
      currency: "usd",
    });

    let seen;
    const result = await client.withCredits("design_generate_image", 2, async (hold) => {
      seen = hold;
      assert.equal(hold.status, "pending");
      assert.equal(hold.amount, 10);
      assert.deepEqual(figures(await own.getBalance()), { available: 40, reserved: 10, spent: 0, granted: 50 });
      return { value: ["a.png", "b.png"] };
    });
    assert.equal(result.outcome, "confirmed");
    assert.deepEqual(result.value, ["a.png", "b.png"]);
    assert.equal(result.reservation.reservationId, seen.reservationId);
    assert.equal(result.reservation.status, "confirmed");
    assert.equal(result.reservation.capturedAmount, 10);

    const balance = await own.getBalance();
    assert.equal(balance.userId, userId);
    assert.deepEqual(figures(balance), { available: 40, reserved: 0, spent: 10, granted: 50 });
    assert.deepEqual(figures(await client.getBalance()), figures(balance));
    assert.deepEqual(figures(await admin.adminBalance(userId)), figures(balance));

    // Confirm is idempotent: a repeat answers the same and charges nothing more.
    const repeat = await client.confirm(seen.reservationId);
    assert.equal(repeat.status, "confirmed");
    assert.deepEqual(figures(await client.getBalance()), { available: 40, reserved: 0, spent: 10, granted: 50 });

    const withEvents = await own.getReservation(seen.reservationId);
    assert.deepEqual(
      withEvents.events.map((e) => [e.type, e.by]),
      [
        ["reserved", "server"],
        ["confirmed", "server"],
      ],
    );
    assert.equal(withEvents.settledBy, "server");
    const history = await own.listTransactions({ limit: 10 });
    assert.deepEqual(
      history.items.map((i) => i.type),
      ["confirm", "reserve", "grant"],
    );
    assert.deepEqual(await client.listTransactions({ limit: 10 }), history);
    const granted = history.items[2];
    assert.equal(granted.reason, "purchase");
    assert.equal(granted.actor, adminId);
    assert.equal(granted.description, "Starter pack");
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

  /** A client whose first reserve reaches the server (the hold is placed) but answers 503, as a lost answer does. */
  function losingFirstReserveAnswer(userId) {
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
      token: server.serverToken,
      user: userId,
      fetch: flaky,
      retry: { baseDelayMs: 10 },
    });
    return { client, sent };
  }

  test("a 503 after the server placed the hold: the retry's replay runs nothing; resume runs it once, one hold, one charge", async () => {
    const userId = uniqueUser("retry");
    await admin.adminGrant(userId, { amount: 50, reason: "purchase" });
    const { client, sent } = losingFirstReserveAnswer(userId);
    let runs = 0;
    const job = async () => {
      runs++;
      return { value: "ok" };
    };
    // The client cannot tell its own lost attempt from another run of the key: a replay runs nothing.
    const lost = await client.withCredits("design_generate_image", 1, job, { idempotencyKey: "job-lost" });
    assert.equal(lost.outcome, "replayed");
    assert.equal(lost.value, undefined);
    assert.equal(lost.reservation.status, "pending");
    assert.equal(runs, 0);
    assert.equal(sent.length, 2, "the reserve was sent twice");
    assert.equal(sent[1].key, "job-lost", "the retry reused the key");
    assert.equal(sent[1].body.reservationId, sent[0].body.reservationId, "the retry replayed the same reservation");
    assert.deepEqual(figures(await client.getBalance()), { available: 45, reserved: 5, spent: 0, granted: 50 });

    // The trusted worker that owns the key resumes it.
    const resumed = await client.withCredits("design_generate_image", 1, job, {
      idempotencyKey: "job-lost",
      onReplay: "resume",
    });
    assert.equal(resumed.outcome, "confirmed");
    assert.equal(resumed.reservation.reservationId, lost.reservation.reservationId);
    assert.equal(runs, 1);
    assert.deepEqual(figures(await client.getBalance()), { available: 45, reserved: 0, spent: 5, granted: 50 });
    const history = await client.listTransactions();
    assert.equal(history.items.filter((i) => i.type === "reserve").length, 1);
  });

  test("a 503 after the server placed the hold, with a key the client made up: the replay is its own, the job runs once", async () => {
    const userId = uniqueUser("retry-own");
    await admin.adminGrant(userId, { amount: 50, reason: "purchase" });
    const { client, sent } = losingFirstReserveAnswer(userId);
    let runs = 0;
    const result = await client.withCredits("design_generate_image", 1, async () => {
      runs++;
      return { value: "ok" };
    });
    assert.equal(sent.length, 2, "the reserve was sent twice");
    assert.equal(sent[1].key, sent[0].key, "the retry reused the key it made up");
    assert.equal(result.outcome, "confirmed");
    assert.equal(result.value, "ok");
    assert.equal(runs, 1);
    assert.deepEqual(figures(await client.getBalance()), { available: 45, reserved: 0, spent: 5, granted: 50 });
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

  /** A job that counts its runs. */
  function counted(result = { value: "done" }) {
    const job = async () => {
      job.runs++;
      return result;
    };
    job.runs = 0;
    return job;
  }

  test("withCredits with the same key twice in a row runs the job once and charges once", async () => {
    const { client } = await newUser("once", 50);
    const job = counted();
    const first = await client.withCredits("design_generate_image", 1, job, { idempotencyKey: "job-once" });
    assert.equal(first.outcome, "confirmed");
    const again = await client.withCredits("design_generate_image", 1, job, { idempotencyKey: "job-once" });
    assert.equal(again.outcome, "replayed");
    assert.equal(again.value, undefined);
    assert.equal(again.reservation.reservationId, first.reservation.reservationId);
    assert.equal(again.reservation.status, "confirmed");
    assert.equal("events" in again.reservation, false);
    assert.equal(job.runs, 1);
    assert.deepEqual(figures(await client.getBalance()), { available: 45, reserved: 0, spent: 5, granted: 50 });
  });

  test("withCredits with the same key twice at once runs the job once: one hold, one charge", async () => {
    const { client } = await newUser("at-once", 50);
    const job = counted();
    const results = await Promise.all(
      [1, 2].map(() => client.withCredits("design_generate_image", 2, job, { idempotencyKey: "job-at-once" })),
    );
    assert.deepEqual(results.map((r) => r.outcome).sort(), ["confirmed", "replayed"]);
    assert.equal(results[0].reservation.reservationId, results[1].reservation.reservationId);
    assert.equal(job.runs, 1);
    const history = await client.listTransactions();
    assert.equal(history.items.filter((i) => i.type === "reserve").length, 1);
    assert.deepEqual(figures(await client.getBalance()), { available: 40, reserved: 0, spent: 10, granted: 50 });
  });

  test("a job that returns pending: true links its task and leaves the hold for the webhook", async () => {
    const { client } = await newUser("submitted", 50);
    const taskId = `bfl-${crypto.randomUUID()}`;
    const submitted = await client.withCredits("design_generate_image", 2, async () => ({
      value: "queued",
      taskId,
      pending: true,
    }));
    assert.equal(submitted.outcome, "pending");
    assert.equal(submitted.value, "queued");
    assert.equal(submitted.reservation.status, "pending");
    assert.equal(submitted.reservation.taskId, taskId);
    const hold = await client.getReservation(submitted.reservation.reservationId);
    assert.deepEqual(
      hold.events.map((e) => e.type),
      ["reserved", "task_linked"],
    );
    assert.deepEqual(figures(await client.getBalance()), { available: 40, reserved: 10, spent: 0, granted: 50 });
    assert.equal((await sendBflWebhook(server.api, { id: taskId, status: "Ready" })).body.result, "confirmed");
    assert.deepEqual(figures(await client.getBalance()), { available: 40, reserved: 0, spent: 10, granted: 50 });

    // Per-output: reported outputs are charged, the rest stays held for the webhook.
    const perOutputTask = `bfl-${crypto.randomUUID()}`;
    const partly = await client.withCredits(
      "design_generate_image",
      3,
      async (_hold, outputs) => {
        await outputs.report();
        return { value: "1 now, 2 queued", taskId: perOutputTask, pending: true };
      },
      { perOutput: true },
    );
    assert.equal(partly.outcome, "pending");
    assert.equal(partly.reservation.status, "pending");
    assert.equal(partly.reservation.taskId, perOutputTask);
    assert.equal(partly.reservation.capturedUnits, 1);
    assert.deepEqual(figures(await client.getBalance()), { available: 25, reserved: 10, spent: 15, granted: 50 });
  });

  test("onReplay resume runs the job again while the hold is pending, never once it is settled", async () => {
    const { client } = await newUser("resume", 50);
    const key = { idempotencyKey: "job-resume" };
    const submitted = await client.withCredits("design_generate_image", 1, async () => ({ value: 1, pending: true }), key);
    assert.equal(submitted.outcome, "pending");

    const job = counted();
    const skipped = await client.withCredits("design_generate_image", 1, job, key);
    assert.equal(skipped.outcome, "replayed");
    assert.equal(skipped.reservation.status, "pending");
    assert.equal(job.runs, 0, "skip is the default");

    const resumed = await client.withCredits("design_generate_image", 1, job, { ...key, onReplay: "resume" });
    assert.equal(resumed.outcome, "confirmed");
    assert.equal(resumed.reservation.reservationId, submitted.reservation.reservationId);
    assert.equal(job.runs, 1);

    const settled = await client.withCredits("design_generate_image", 1, job, { ...key, onReplay: "resume" });
    assert.equal(settled.outcome, "replayed");
    assert.equal(settled.reservation.status, "confirmed");
    assert.equal(job.runs, 1);

    const released = await client.withCredits("design_generate_image", 1, counted({ value: 0, failed: true }), {
      idempotencyKey: "job-resume-released",
    });
    assert.equal(released.outcome, "released");
    const late = await client.withCredits("design_generate_image", 1, job, {
      idempotencyKey: "job-resume-released",
      onReplay: "resume",
    });
    assert.equal(late.outcome, "replayed");
    assert.equal(late.reservation.status, "released");
    assert.equal(job.runs, 1);
    assert.deepEqual(figures(await client.getBalance()), { available: 45, reserved: 0, spent: 5, granted: 50 });
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

  test("admin routes: refund, cleanup, monitoring; 403 for a user and the server; 404 for another user's hold", async () => {
    const { userId, client, own } = await newUser("admin-routes", 50);
    const done = await client.withCredits("design_generate_image", 1, async () => ({ value: 1 }));
    const refunded = await admin.adminRefund(done.reservation.reservationId, "unusable");
    assert.equal(refunded.status, "refunded");
    assert.deepEqual(figures(await admin.adminBalance(userId)), { available: 50, reserved: 0, spent: 0, granted: 50 });

    const report = await admin.adminCleanup();
    const fields = ["expired", "alreadySettled", "extended", "remaining", "lotsExpired", "planRefills", "errors", "scanned"];
    for (const field of [...fields, "durationMs"]) {
      assert.equal(typeof report[field], "number", field);
    }
    const health = await admin.adminMonitoring({ type: "health" });
    assert.ok(["healthy", "warning", "critical"].includes(health.status));
    assert.ok(Array.isArray(health.checks));

    await assert.rejects(client.adminCleanup(), (error) => error.status === 403 && error.code === "forbidden");
    await assert.rejects(own.adminCleanup(), (error) => error.status === 403 && error.code === "forbidden");
    const other = await newUser("other", 0);
    await assert.rejects(
      other.own.getReservation(done.reservation.reservationId),
      (error) => error.status === 404 && error.code === "reservation_not_found",
    );
    const anonymous = new CreditsClient({ baseUrl: server.api });
    await assert.rejects(anonymous.getBalance(), (error) => error.status === 401 && error.code === "unauthorized");
  });
});

describe("several captures per hold, and extending a hold", () => {
  /** The server credential for a new user with `credits`, recording each capture's Idempotency-Key. */
  async function recordingUser(label, credits) {
    const { userId, own } = await newUser(label, credits);
    const captureKeys = [];
    const recording = async (input, init) => {
      const url = new URL(String(input));
      if (url.pathname.endsWith("/confirm") && JSON.parse(init?.body ?? "{}").final === false) {
        captureKeys.push(new Headers(init.headers).get("idempotency-key"));
      }
      return fetch(input, init);
    };
    const client = new CreditsClient({ baseUrl: server.api, token: server.serverToken, user: userId, fetch: recording });
    return { userId, own, client, captureKeys };
  }

  test("capture charges now and keeps the rest held; the same key again replays and charges nothing", async () => {
    const { client, own } = await newUser("capture", 50);
    const hold = await client.reserve({ operation: "design_generate_image", units: 4 });
    const first = await client.captureWithMeta(hold.reservationId, 1, { idempotencyKey: "job-1-out-0" });
    assert.equal(first.status, 200);
    assert.equal(first.replayed, false);
    assert.equal(first.body.status, "pending");
    assert.equal(first.body.capturedUnits, 1);
    assert.equal(first.body.capturedAmount, 5);
    assert.deepEqual(figures(await own.getBalance()), { available: 30, reserved: 15, spent: 5, granted: 50 });

    const again = await client.captureWithMeta(hold.reservationId, 1, { idempotencyKey: "job-1-out-0" });
    assert.equal(again.status, 200);
    assert.equal(again.replayed, true);
    assert.equal(again.body.capturedUnits, 1);
    assert.deepEqual(figures(await own.getBalance()), { available: 30, reserved: 15, spent: 5, granted: 50 });

    const second = await client.capture(hold.reservationId, 2, { idempotencyKey: "job-1-out-1" });
    assert.equal(second.capturedUnits, 3);
    assert.deepEqual(figures(await own.getBalance()), { available: 30, reserved: 5, spent: 15, granted: 50 });

    // The final confirm captures 1 more (the last unit held) and closes the hold.
    const closed = await client.confirm(hold.reservationId, { units: 1 });
    assert.equal(closed.status, "confirmed");
    assert.equal(closed.capturedUnits, 4);
    assert.equal(closed.capturedAmount, 20);
    // A capture's replay still answers after the hold closed, and still charges nothing.
    const late = await client.captureWithMeta(hold.reservationId, 1, { idempotencyKey: "job-1-out-0" });
    assert.equal(late.replayed, true);
    assert.equal(late.body.status, "confirmed");
    assert.deepEqual(figures(await own.getBalance()), { available: 30, reserved: 0, spent: 20, granted: 50 });

    const seen = await own.getReservation(hold.reservationId);
    assert.deepEqual(
      seen.events.map((e) => [e.type, e.amount]),
      [
        ["reserved", 20],
        ["captured", 5],
        ["captured", 10],
        ["confirmed", 5],
      ],
    );
    const history = await own.listTransactions({ limit: 10 });
    assert.deepEqual(
      history.items.map((i) => [i.type, i.amount]),
      [
        ["confirm", 5],
        ["capture", 10],
        ["capture", 5],
        ["reserve", 20],
        ["grant", 50],
      ],
    );
  });

  test("a capture with other units under the same key is 422 idempotency_key_reused; no key is refused before sending", async () => {
    const { client, own } = await newUser("capture-reused", 50);
    const hold = await client.reserve({ operation: "design_generate_image", units: 4 });
    await client.capture(hold.reservationId, 1, { idempotencyKey: "job-2-out-0" });
    await assert.rejects(client.capture(hold.reservationId, 2, { idempotencyKey: "job-2-out-0" }), (error) => {
      assert.ok(error instanceof CreditsError);
      assert.equal(error.status, 422);
      assert.equal(error.code, "idempotency_key_reused");
      assert.equal(error.idempotencyKey, "job-2-out-0");
      return true;
    });
    await assert.rejects(client.capture(hold.reservationId, 1, {}), TypeError);
    // More than is still held: 400 naming units.
    await assert.rejects(
      client.capture(hold.reservationId, 4, { idempotencyKey: "job-2-out-1" }),
      (error) => error.status === 400 && error.code === "validation_error" && error.field === "units",
    );
    assert.deepEqual(figures(await own.getBalance()), { available: 30, reserved: 15, spent: 5, granted: 50 });
    // A release returns only what is still held.
    const released = await client.release(hold.reservationId);
    assert.equal(released.capturedAmount, 5);
    assert.equal(released.releasedAmount, 15);
    assert.deepEqual(figures(await own.getBalance()), { available: 45, reserved: 0, spent: 5, granted: 50 });
  });

  test("extend moves expiresAt; extending a settled hold is 409 reservation_not_pending", async () => {
    const { client, own } = await newUser("extend", 50);
    const hold = await client.reserve({ operation: "design_generate_image", ttlSeconds: 60 });
    const before = Date.parse(hold.expiresAt);
    const extended = await client.extend(hold.reservationId, 3600);
    assert.equal(extended.status, "pending");
    const moved = Date.parse(extended.expiresAt) - before;
    assert.ok(moved >= 3540_000 && moved < 3600_000, `expiresAt moved by ${moved} ms`);
    const seen = await own.getReservation(hold.reservationId);
    assert.equal(seen.expiresAt, extended.expiresAt);
    assert.deepEqual(
      seen.events.map((e) => [e.type, e.amount]),
      [
        ["reserved", 5],
        ["extended", 0],
      ],
    );
    await assert.rejects(
      client.extend(hold.reservationId, 0),
      (error) => error.status === 400 && error.code === "validation_error" && error.field === "ttlSeconds",
    );
    await assert.rejects(own.extend(hold.reservationId, 60), (error) => error.status === 403 && error.code === "forbidden");

    await client.confirm(hold.reservationId);
    await assert.rejects(client.extend(hold.reservationId, 60), (error) => {
      assert.ok(error instanceof CreditsError);
      assert.equal(error.status, 409);
      assert.equal(error.code, "reservation_not_pending");
      assert.equal(error.reservationStatus, "confirmed");
      return true;
    });
  });

  test("per-output withCredits charges each output as it comes and releases the rest when the job throws after 2 of 4", async () => {
    const { client, own, captureKeys } = await recordingUser("per-output-throws", 50);
    const boom = new Error("the provider died after two images");
    let holdId;
    const job = async (hold, outputs) => {
      holdId = hold.reservationId;
      assert.equal((await outputs.report()).capturedUnits, 1);
      assert.deepEqual(figures(await own.getBalance()), { available: 30, reserved: 15, spent: 5, granted: 50 });
      await outputs.report();
      assert.equal(outputs.hold.capturedAmount, 10);
      throw boom;
    };
    await assert.rejects(
      client.withCredits("design_generate_image", 4, job, { perOutput: true, idempotencyKey: "job-9" }),
      (error) => error === boom,
    );
    assert.deepEqual(captureKeys, ["job-9-out-0", "job-9-out-1"]);
    const hold = await own.getReservation(holdId);
    assert.equal(hold.status, "released");
    assert.equal(hold.capturedUnits, 2);
    assert.equal(hold.capturedAmount, 10);
    assert.equal(hold.releasedAmount, 10);
    assert.deepEqual(figures(await own.getBalance()), { available: 40, reserved: 0, spent: 10, granted: 50 });

    // The queue retries the job with the same key: a replay of a released hold runs nothing, even with resume.
    for (const onReplay of ["skip", "resume"]) {
      const retried = await client.withCredits(
        "design_generate_image",
        4,
        async () => assert.fail("a released hold's job must not run again"),
        { perOutput: true, idempotencyKey: "job-9", onReplay },
      );
      assert.equal(retried.outcome, "replayed");
      assert.equal(retried.reservation.reservationId, holdId);
      assert.equal(retried.reservation.status, "released");
      assert.equal(retried.reservation.capturedAmount, 10);
    }
    assert.equal(captureKeys.length, 2);
    assert.deepEqual(figures(await own.getBalance()), { available: 40, reserved: 0, spent: 10, granted: 50 });
    const history = await own.listTransactions({ limit: 10 });
    assert.deepEqual(
      history.items.map((i) => [i.type, i.amount]),
      [
        ["release", 10],
        ["capture", 5],
        ["capture", 5],
        ["reserve", 20],
        ["grant", 50],
      ],
    );
  });

  test("per-output withCredits resumed on a pending hold charges only the outputs not yet reported", async () => {
    const { client, own, captureKeys } = await recordingUser("per-output-resume", 50);
    // A worker placed the hold, charged its first image and crashed.
    const placed = await client.reserve({ operation: "design_generate_image", units: 4 }, { idempotencyKey: "job-10" });
    await client.capture(placed.reservationId, 1, { idempotencyKey: "job-10-out-0" });

    let runs = 0;
    const job = async (hold, outputs) => {
      runs++;
      assert.equal(hold.reservationId, placed.reservationId);
      await outputs.report(); // out-0 again: a replay, not a charge
      await outputs.report();
      return { value: "two images" };
    };
    const resumed = await client.withCredits("design_generate_image", 4, job, {
      perOutput: true,
      idempotencyKey: "job-10",
      onReplay: "resume",
    });
    assert.equal(runs, 1);
    assert.equal(resumed.outcome, "confirmed");
    assert.deepEqual(captureKeys, ["job-10-out-0", "job-10-out-0", "job-10-out-1"]);
    assert.equal(resumed.reservation.capturedUnits, 2);
    assert.deepEqual(figures(await own.getBalance()), { available: 40, reserved: 0, spent: 10, granted: 50 });
  });

  test("per-output withCredits closes on success: every unit reported, extra units, unused units, none", async () => {
    const { client, own } = await newUser("per-output-ok", 100);
    const reportAll = await client.withCredits(
      "design_generate_image",
      3,
      async (_hold, outputs) => {
        for (let i = 0; i < 3; i++) await outputs.report();
        return { value: "3 of 3" };
      },
      { perOutput: true },
    );
    assert.equal(reportAll.outcome, "confirmed");
    assert.equal(reportAll.reservation.status, "confirmed");
    assert.equal(reportAll.reservation.capturedAmount, 15);
    assert.equal(reportAll.reservation.releasedAmount, 0);
    assert.deepEqual(
      (await own.getReservation(reportAll.reservation.reservationId)).events.map((e) => [e.type, e.amount]),
      [
        ["reserved", 15],
        ["captured", 5],
        ["captured", 5],
        ["captured", 5],
        ["confirmed", 0],
      ],
    );

    const withExtra = await client.withCredits(
      "design_generate_image",
      4,
      async (_hold, outputs) => {
        await outputs.report(2);
        return { value: "2 reported + 1 at the end", extraUnits: 1 };
      },
      { perOutput: true },
    );
    assert.equal(withExtra.outcome, "confirmed");
    assert.equal(withExtra.reservation.status, "confirmed");
    assert.equal(withExtra.reservation.capturedUnits, 3);
    assert.equal(withExtra.reservation.releasedAmount, 5);

    const unused = await client.withCredits(
      "design_generate_image",
      4,
      async (_hold, outputs) => {
        await outputs.report();
        await outputs.report();
        return { value: "2 of 4" };
      },
      { perOutput: true },
    );
    assert.equal(unused.outcome, "confirmed");
    assert.equal(unused.reservation.status, "confirmed");
    assert.equal(unused.reservation.capturedAmount, 10);
    assert.equal(unused.reservation.releasedAmount, 10);

    const nothing = await client.withCredits("design_generate_image", 2, async () => ({ value: null }), { perOutput: true });
    assert.equal(nothing.outcome, "released");
    assert.equal(nothing.reservation.capturedAmount, 0);

    const failed = await client.withCredits(
      "design_generate_image",
      2,
      async (_hold, outputs) => {
        await outputs.report();
        return { value: null, failed: true };
      },
      { perOutput: true },
    );
    assert.equal(failed.outcome, "released");
    assert.equal(failed.reservation.capturedAmount, 5);
    assert.equal(failed.reservation.releasedAmount, 5);

    // 15 + 15 + 10 + 0 + 5 spent of 100; nothing left held.
    assert.deepEqual(figures(await own.getBalance()), { available: 55, reserved: 0, spent: 45, granted: 100 });
  });

  test("a report on an expired hold rejects with CreditsError reservation_expired; extend keeps a long job's hold", async () => {
    const { client, own } = await newUser("per-output-expired", 50);
    const sleep = (ms) => new Promise((resolve) => setTimeout(resolve, ms));
    let holdId;
    await assert.rejects(
      client.withCredits(
        "design_generate_image",
        2,
        async (hold, outputs) => {
          holdId = hold.reservationId;
          await outputs.report();
          await sleep(1500);
          await outputs.report();
          return { value: "too late" };
        },
        { perOutput: true, ttlSeconds: 1 },
      ),
      (error) => {
        assert.ok(error instanceof CreditsError);
        assert.equal(error.status, 409);
        assert.equal(error.code, "reservation_expired");
        return true;
      },
    );
    const expired = await own.getReservation(holdId);
    assert.equal(expired.status, "expired");
    assert.equal(expired.capturedAmount, 5);
    assert.equal(expired.releasedAmount, 5);

    const long = await client.withCredits(
      "design_generate_image",
      2,
      async (hold, outputs) => {
        await outputs.report();
        await client.extend(hold.reservationId, 60);
        await sleep(1500);
        await outputs.report();
        return { value: "in time" };
      },
      { perOutput: true, ttlSeconds: 1 },
    );
    assert.equal(long.reservation.status, "confirmed");
    assert.equal(long.reservation.capturedAmount, 10);
    assert.deepEqual(figures(await own.getBalance()), { available: 35, reserved: 0, spent: 15, granted: 50 });
  });
});

describe("credit lots: burn order, expiry and debits", () => {
  const DAY_MS = 86_400_000;
  /** An RFC 3339 time `ms` from now, as the server echoes it (UTC, milliseconds). */
  const fromNow = (ms) => new Date(Date.now() + ms).toISOString();
  const sleep = (ms) => new Promise((resolve) => setTimeout(resolve, ms));
  const lot = (priority, expiresAt, remaining, reserved = 0) => ({ priority, expiresAt, remaining, reserved });
  /** The balance's figures, checking that they add up. */
  function books(balance) {
    const { available, reserved, spent, expired, debited, granted } = balance;
    assert.equal(available + reserved + spent + expired + debited, granted, "available + reserved + spent + expired + debited == granted");
    return { available, reserved, spent, expired, debited, granted };
  }

  test("a grant with priority and expiresAt lands in its own lot: balance.lots (burn order) and nextExpiry show it", async () => {
    const { userId, own } = await newUser("lots", 20); // purchase: priority 50, never expires
    const soon = new Date(Date.now() + DAY_MS);
    const later = fromNow(2 * DAY_MS);
    const promo = await admin.adminGrant(userId, { amount: 10, reason: "promo", priority: 10, expiresAt: soon });
    assert.deepEqual(promo.balance.lots, [lot(10, soon.toISOString(), 10), lot(50, null, 20)]);
    await admin.adminGrant(userId, { amount: 4, reason: "adjustment", priority: 30, expiresAt: later });
    // The same (priority, expiresAt) again adds to that lot.
    await admin.adminGrant(userId, { amount: 1, reason: "ad_reward", priority: 30, expiresAt: later });

    const balance = await own.getBalance();
    assert.deepEqual(books(balance), { available: 35, reserved: 0, spent: 0, expired: 0, debited: 0, granted: 35 });
    assert.deepEqual(balance.lots, [lot(10, soon.toISOString(), 10), lot(30, later, 5), lot(50, null, 20)]);
    assert.deepEqual(balance.nextExpiry, { amount: 10, at: soon.toISOString() });
    assert.equal(balance.plan, null);
    assert.deepEqual(await admin.adminBalance(userId), balance);

    await assert.rejects(
      admin.adminGrant(userId, { amount: 1, reason: "promo", expiresAt: new Date(Date.now() - 1000) }),
      (error) => error.status === 400 && error.code === "validation_error" && error.field === "expiresAt",
    );
    await assert.rejects(
      admin.adminGrant(userId, { amount: 1, reason: "promo", priority: 101 }),
      (error) => error.status === 400 && error.code === "validation_error" && error.field === "priority",
    );

    const fresh = await new CreditsClient({ baseUrl: server.api, token: mintToken(uniqueUser("nobody")) }).getBalance();
    assert.deepEqual(books(fresh), { available: 0, reserved: 0, spent: 0, expired: 0, debited: 0, granted: 0 });
    assert.deepEqual(fresh.lots, []);
    assert.equal(fresh.nextExpiry, null);
  });

  test("a hold takes from the priority-10 lot first (reservation.lots); a release gives the credits back to their lots", async () => {
    const { userId, client, own } = await newUser("burn", 20);
    const at = fromNow(DAY_MS);
    await admin.adminGrant(userId, { amount: 8, reason: "promo", priority: 10, expiresAt: at });

    const first = await client.reserve({ operation: "design_generate_image" }); // 5
    assert.deepEqual(first.lots, [{ priority: 10, expiresAt: at, amount: 5 }]);
    const second = await client.reserve({ operation: "design_generate_image", units: 2 }); // 10
    assert.deepEqual(second.lots, [
      { priority: 10, expiresAt: at, amount: 3 },
      { priority: 50, expiresAt: null, amount: 7 },
    ]);
    assert.deepEqual((await own.getReservation(second.reservationId)).lots, second.lots);

    let balance = await own.getBalance();
    assert.deepEqual(books(balance), { available: 13, reserved: 15, spent: 0, expired: 0, debited: 0, granted: 28 });
    assert.deepEqual(balance.lots, [lot(10, at, 0, 8), lot(50, null, 13, 7)]);
    assert.equal(balance.nextExpiry, null, "no unheld credits expire");

    const released = await client.release(second.reservationId);
    assert.deepEqual(released.lots, second.lots);
    balance = await own.getBalance();
    assert.deepEqual(books(balance), { available: 23, reserved: 5, spent: 0, expired: 0, debited: 0, granted: 28 });
    assert.deepEqual(balance.lots, [lot(10, at, 3, 5), lot(50, null, 20)]);
    assert.deepEqual(balance.nextExpiry, { amount: 3, at });
  });

  test("adminDebit takes credits back in burn order; the same key again replays and takes nothing more", async () => {
    const { userId, own } = await newUser("debit", 30);
    await admin.adminGrant(userId, { amount: 10, reason: "signup" }); // priority 10, never expires

    const first = await admin.adminDebitWithMeta(
      userId,
      { amount: 15, reason: "refund", description: "order 1001 refunded" },
      { idempotencyKey: "refund-1001" },
    );
    assert.equal(first.status, 201);
    assert.equal(first.replayed, false);
    const debit = first.body;
    assert.match(debit.debitId, /^[0-9a-f-]{36}$/);
    assert.equal(debit.amount, 15);
    assert.equal(debit.requested, 15);
    assert.deepEqual(debit.lots, [
      { priority: 10, expiresAt: null, amount: 10 },
      { priority: 50, expiresAt: null, amount: 5 },
    ]);
    assert.deepEqual(books(debit.balance), { available: 25, reserved: 0, spent: 0, expired: 0, debited: 15, granted: 40 });
    assert.deepEqual(debit.balance.lots, [lot(50, null, 25)]);

    const again = await admin.adminDebitWithMeta(
      userId,
      { amount: 15, reason: "refund", description: "order 1001 refunded" },
      { idempotencyKey: "refund-1001" },
    );
    assert.equal(again.status, 200);
    assert.equal(again.replayed, true);
    assert.equal(again.body.debitId, debit.debitId);
    assert.equal(again.body.amount, 15);
    assert.deepEqual(books(again.body.balance), books(debit.balance));
    const plain = await admin.adminDebit(
      userId,
      { amount: 15, reason: "refund", description: "order 1001 refunded" },
      { idempotencyKey: "refund-1001" },
    );
    assert.equal(plain.debitId, debit.debitId);
    assert.deepEqual(books(await own.getBalance()), books(debit.balance));
    await assert.rejects(
      admin.adminDebit(userId, { amount: 16, reason: "refund" }, { idempotencyKey: "refund-1001" }),
      (error) => error.status === 422 && error.code === "idempotency_key_reused",
    );

    const debits = (await own.listTransactions()).items.filter((item) => item.type === "debit");
    assert.equal(debits.length, 1);
    assert.equal(debits[0].amount, 15);
    assert.equal(debits[0].reason, "refund");
    assert.equal(debits[0].actor, adminId);
    assert.equal(debits[0].description, "order 1001 refunded");

    // Not for the app's server nor the user.
    await assert.rejects(
      backend.adminDebit(userId, { amount: 1, reason: "adjustment" }),
      (error) => error.status === 403 && error.code === "forbidden",
    );
  });

  test("a debit beyond what is available is 402 insufficient_credits and takes nothing; partial: true takes what there is", async () => {
    const { userId, client, own } = await newUser("debit-short", 20);
    await client.reserve({ operation: "design_generate_image" }); // 5 held: not available to a debit
    await assert.rejects(
      admin.adminDebit(userId, { amount: 40, reason: "chargeback" }, { idempotencyKey: "dispute-1" }),
      (error) => {
        assert.ok(error instanceof CreditsError);
        assert.equal(error.status, 402);
        assert.equal(error.code, "insufficient_credits");
        assert.equal(error.available, 15);
        assert.equal(error.required, 40);
        assert.equal(error.shortfall, 25);
        assert.equal(error.idempotencyKey, "dispute-1");
        return true;
      },
    );
    assert.deepEqual(books(await own.getBalance()), { available: 15, reserved: 5, spent: 0, expired: 0, debited: 0, granted: 20 });

    const partial = await admin.adminDebit(userId, { amount: 40, reason: "chargeback", partial: true });
    assert.equal(partial.amount, 15);
    assert.equal(partial.requested, 40);
    assert.deepEqual(partial.lots, [{ priority: 50, expiresAt: null, amount: 15 }]);
    assert.deepEqual(books(partial.balance), { available: 0, reserved: 5, spent: 0, expired: 0, debited: 15, granted: 20 });

    const nothing = await admin.adminDebit(userId, { amount: 40, reason: "chargeback", partial: true });
    assert.equal(nothing.amount, 0);
    assert.equal(nothing.requested, 40);
    assert.deepEqual(nothing.lots, []);
    assert.deepEqual(books(nothing.balance), books(partial.balance));
  });

  test("a lot past expiresAt: its unheld credits are expired at once, the sweep writes it down, held ones expire when they come back", async () => {
    const { userId, client, own } = await newUser("expiry", 20);
    const at = fromNow(4000); // time for the grant and the hold before it passes, even on a busy machine
    await admin.adminGrant(userId, { amount: 8, reason: "promo", expiresAt: at });
    const hold = await client.reserve({ operation: "design_generate_image" }); // 5 of the promo lot
    assert.deepEqual(hold.lots, [{ priority: 10, expiresAt: at, amount: 5 }]);
    await sleep(Math.max(0, Date.parse(at) - Date.now()) + 200);

    let balance = await own.getBalance();
    assert.deepEqual(books(balance), { available: 20, reserved: 5, spent: 0, expired: 3, debited: 0, granted: 28 });
    assert.deepEqual(balance.lots, [lot(10, at, 0, 5), lot(50, null, 20)], "a lot with held credits stays live");
    assert.equal(balance.nextExpiry, null);

    const report = await admin.adminCleanup();
    assert.ok(report.lotsExpired >= 1, `lotsExpired ${report.lotsExpired}`);
    let expiries = (await own.listTransactions()).items.filter((item) => item.type === "grant_expired");
    assert.deepEqual(
      expiries.map((item) => [item.amount, item.at]),
      [[3, at]],
    );

    // Held credits of the expired lot expire when the hold gives them back.
    await client.release(hold.reservationId);
    balance = await own.getBalance();
    assert.deepEqual(books(balance), { available: 20, reserved: 0, spent: 0, expired: 8, debited: 0, granted: 28 });
    assert.deepEqual(balance.lots, [lot(50, null, 20)]);
    expiries = (await own.listTransactions()).items.filter((item) => item.type === "grant_expired");
    assert.deepEqual(
      expiries.map((item) => item.amount),
      [5, 3],
    );
  });
});

describe("plans: an allowance each period", () => {
  /** The start of this UTC month and of the next: the period of a monthly plan anchored on the 1st. */
  function thisMonth() {
    const now = new Date();
    return {
      start: new Date(Date.UTC(now.getUTCFullYear(), now.getUTCMonth(), 1)),
      end: new Date(Date.UTC(now.getUTCFullYear(), now.getUTCMonth() + 1, 1)),
    };
  }
  const refills = async (own) =>
    (await own.listTransactions({ limit: 100 })).items
      .filter((item) => item.type === "grant" && item.reason === "plan_refill")
      .map((item) => [item.amount, item.at, item.actor]);

  test("a monthly plan shows in the balance, its allowance a priority-20 lot expiring at currentPeriodEnd; the same plan again grants nothing more", async () => {
    const { userId, own } = await newUser("plan", 0);
    const { start, end } = thisMonth();
    const balance = await admin.adminSetPlan(userId, { plan: "pro", allowance: 100, period: "month", rollover: 20, anchor: start });
    assert.deepEqual(balance.plan, {
      plan: "pro",
      allowance: 100,
      period: "month",
      rollover: 20,
      anchor: start.toISOString(),
      currentPeriodStart: start.toISOString(),
      currentPeriodEnd: end.toISOString(),
      endsAt: null,
    });
    assert.equal(balance.granted, 100);
    assert.equal(balance.available, 100);
    assert.deepEqual(balance.lots, [{ priority: 20, expiresAt: balance.plan.currentPeriodEnd, remaining: 100, reserved: 0 }]);
    assert.deepEqual(balance.nextExpiry, { amount: 100, at: end.toISOString() });
    assert.deepEqual(await own.getBalance(), balance);
    assert.deepEqual(await admin.adminBalance(userId), balance);
    // Granted by the plan, dated at the period's start.
    assert.deepEqual(await refills(own), [[100, start.toISOString(), "plan"]]);

    // The same plan again (its anchor kept, or given again) changes nothing.
    const again = await admin.adminSetPlan(userId, { plan: "pro", allowance: 100, period: "month", rollover: 20 });
    assert.deepEqual(again, balance);
    const same = await admin.adminSetPlan(userId, {
      plan: "pro",
      allowance: 100,
      period: "month",
      rollover: 20,
      anchor: start.toISOString(),
    });
    assert.deepEqual(same, balance);
    assert.equal((await own.getBalance()).granted, 100);
    assert.equal((await refills(own)).length, 1);
  });

  test("a changed allowance with a new anchor grants the new allowance at once; ending the plan sets endsAt, keeps the credits, and ending again changes nothing", async () => {
    const { userId, own } = await newUser("plan-change", 0);
    const { start, end } = thisMonth();
    await admin.adminSetPlan(userId, { plan: "basic", allowance: 100, period: "month", anchor: start });
    // Periods now counted from a second ago (whole seconds, so the echo is exact).
    const anchor = new Date(Math.floor(Date.now() / 1000) * 1000 - 1000);
    const changed = await admin.adminSetPlan(userId, { plan: "basic", allowance: 150, period: "month", anchor });
    assert.equal(changed.plan.allowance, 150);
    assert.equal(changed.plan.anchor, anchor.toISOString());
    assert.equal(changed.plan.currentPeriodStart, anchor.toISOString());
    assert.ok(changed.plan.currentPeriodEnd > end.toISOString(), changed.plan.currentPeriodEnd);
    assert.equal(changed.granted, 250);
    assert.equal(changed.available, 250);
    // The first period's allowance stays in its lot until that expires.
    assert.deepEqual(changed.lots, [
      { priority: 20, expiresAt: end.toISOString(), remaining: 100, reserved: 0 },
      { priority: 20, expiresAt: changed.plan.currentPeriodEnd, remaining: 150, reserved: 0 },
    ]);
    assert.deepEqual(await own.getBalance(), changed);
    assert.deepEqual(await refills(own), [
      [150, anchor.toISOString(), "plan"],
      [100, start.toISOString(), "plan"],
    ]);

    const ended = await admin.adminEndPlan(userId);
    assert.equal(ended.plan.endsAt, changed.plan.currentPeriodEnd);
    assert.equal(ended.available, 250, "the period's credits stay until their lot expires");
    assert.deepEqual(ended.lots, changed.lots);
    assert.deepEqual(await own.getBalance(), ended);
    assert.deepEqual(await admin.adminEndPlan(userId), ended);

    // A user without a plan: nothing to end.
    const { userId: nobody } = await newUser("plan-none", 0);
    const none = await admin.adminEndPlan(nobody);
    assert.equal(none.plan, null);
    assert.equal(none.granted, 0);
  });

  test("bad input is a 400 validation_error naming the field; a server or user token is 403 forbidden", async () => {
    const { userId, client, own } = await newUser("plan-bad", 0);
    const refused = (field) => (error) => {
      assert.ok(error instanceof CreditsError);
      assert.equal(error.status, 400);
      assert.equal(error.code, "validation_error");
      assert.equal(error.field, field);
      return true;
    };
    await assert.rejects(admin.adminSetPlan(userId, { plan: "pro", allowance: 10, period: "fortnight" }), refused("period"));
    await assert.rejects(admin.adminSetPlan(userId, { plan: "pro", allowance: 0, period: "day" }), refused("allowance"));
    await assert.rejects(admin.adminSetPlan(userId, { plan: "", allowance: 1, period: "day" }), refused("plan"));
    await assert.rejects(admin.adminSetPlan(userId, { plan: "pro", allowance: 1, period: "day", anchor: "soon" }), refused("anchor"));
    // An invalid Date never leaves the client.
    await assert.rejects(admin.adminSetPlan(userId, { plan: "pro", allowance: 1, period: "day", anchor: new Date("soon") }), TypeError);

    for (const caller of [backend, client, own]) {
      await assert.rejects(
        caller.adminSetPlan(userId, { plan: "pro", allowance: 1, period: "day" }),
        (error) => error.status === 403 && error.code === "forbidden",
      );
      await assert.rejects(caller.adminEndPlan(userId), (error) => error.status === 403 && error.code === "forbidden");
    }
    const balance = await own.getBalance();
    assert.equal(balance.plan, null);
    assert.equal(balance.granted, 0);
  });
});

describe("trust model: the app's server writes, a user's token reads", () => {
  test("a user token is refused a reserve, confirm, release and task link: 403 forbidden, nothing changes", async () => {
    const { client, own } = await newUser("read-only", 50);
    const hold = await client.reserve({ operation: "design_generate_image", units: 2 });
    const refused = (error) => {
      assert.ok(error instanceof CreditsError);
      assert.equal(error.status, 403);
      assert.equal(error.code, "forbidden");
      assert.equal(error.detail, READ_ONLY);
      return true;
    };
    await assert.rejects(own.confirm(hold.reservationId), refused);
    await assert.rejects(own.release(hold.reservationId, "mine"), refused);
    await assert.rejects(own.linkTask(hold.reservationId, `bfl-${crypto.randomUUID()}`), refused);
    await assert.rejects(own.reserve({ operation: "design_generate_image" }), refused);
    await assert.rejects(
      own.withCredits("design_generate_image", 1, async () => assert.fail("the job must not run")),
      refused,
    );
    // The user still reads all of it: the hold untouched, the balance as the server left it.
    const seen = await own.getReservation(hold.reservationId);
    assert.equal(seen.status, "pending");
    assert.deepEqual(
      seen.events.map((e) => e.type),
      ["reserved"],
    );
    assert.deepEqual(figures(await own.getBalance()), { available: 40, reserved: 10, spent: 0, granted: 50 });
    assert.ok((await own.getPrices()).operations.length > 0);
    // The server settles it.
    assert.equal((await client.confirm(hold.reservationId, { units: 1 })).capturedAmount, 5);
    assert.deepEqual(figures(await own.getBalance()), { available: 45, reserved: 0, spent: 5, granted: 50 });
  });

  test("the server acts for the user named by forUser or per call, and only for that user", async () => {
    const alice = await newUser("alice", 30);
    const bob = await newUser("bob", 20);
    assert.equal((await backend.forUser(alice.userId).getBalance()).available, 30);
    assert.equal((await backend.getBalance({ user: bob.userId })).available, 20);
    // A per-call user wins over the bound one.
    assert.equal((await alice.client.getBalance({ user: bob.userId })).userId, bob.userId);

    const hold = await backend.reserve({ operation: "design_generate_icon" }, { user: alice.userId });
    assert.equal(hold.userId, alice.userId);
    assert.equal((await alice.own.getBalance()).reserved, 4);
    assert.equal((await bob.own.getBalance()).reserved, 0);
    // A hold's routes name the user too ...
    assert.equal((await backend.getReservation(hold.reservationId, { user: alice.userId })).userId, alice.userId);
    // ... and one naming another user answers 404, so a bound client never settles someone else's hold.
    for (const attempt of [
      () => bob.client.getReservation(hold.reservationId),
      () => bob.client.confirm(hold.reservationId),
      () => bob.client.release(hold.reservationId),
      () => backend.confirm(hold.reservationId, {}, { user: bob.userId }),
    ]) {
      await assert.rejects(attempt(), (error) => error.status === 404 && error.code === "reservation_not_found");
    }
    assert.equal((await alice.client.release(hold.reservationId, "changed my mind")).status, "released");
    assert.deepEqual(figures(await alice.own.getBalance()), { available: 30, reserved: 0, spent: 0, granted: 30 });
  });

  test("a server call on a user route or a hold route without a user is a 400 naming Credits-User, and says how to fix it", async () => {
    const { userId } = await newUser("nobody-named", 10);
    const missing = (error) => {
      assert.ok(error instanceof CreditsError);
      assert.equal(error.status, 400);
      assert.equal(error.code, "validation_error");
      assert.equal(error.field, "Credits-User");
      assert.match(error.message, /forUser\(userId\)/);
      return true;
    };
    await assert.rejects(backend.getBalance(), missing);
    await assert.rejects(backend.listTransactions(), missing);
    await assert.rejects(backend.reserve({ operation: "design_generate_image" }), missing);
    let ran = false;
    await assert.rejects(
      backend.withCredits("design_generate_image", 1, async () => {
        ran = true;
        return { value: 1 };
      }),
      missing,
    );
    assert.equal(ran, false);
    assert.throws(() => backend.forUser(""), TypeError);
    assert.deepEqual(figures(await admin.adminBalance(userId)), { available: 10, reserved: 0, spent: 0, granted: 10 });

    // A hold id alone reaches nothing: every route of one hold wants the user.
    const { reservationId } = await backend.forUser(userId).reserve({ operation: "design_generate_image" });
    for (const attempt of [
      () => backend.getReservation(reservationId),
      () => backend.confirm(reservationId),
      () => backend.capture(reservationId, 1, { idempotencyKey: "nobody-named-capture" }),
      () => backend.extend(reservationId, 600),
      () => backend.release(reservationId),
      () => backend.linkTask(reservationId, "nobody-named-task"),
    ]) {
      await assert.rejects(attempt(), missing);
    }
    // An operator may leave it out; the hold is still as placed.
    assert.equal((await admin.getReservation(reservationId)).status, "pending");
  });

  test("a credits/server token from a client that is not listed is only a user", async () => {
    const rogue = new CreditsClient({ baseUrl: server.api, token: mintServerToken({ client: "rogue-app" }) });
    await assert.rejects(
      rogue.reserve({ operation: "design_generate_image" }, { user: uniqueUser("victim") }),
      (error) => error.status === 403 && error.code === "forbidden",
    );
  });

  test(`the ${MAX_OPEN_HOLDS + 1}th pending hold of a user is 409 too_many_open_holds with openHolds and limit`, async () => {
    const { client } = await newUser("many-holds", 100);
    const holds = [];
    for (let i = 0; i < MAX_OPEN_HOLDS; i++) holds.push(await client.reserve({ operation: "design_analyze_image" }));
    await assert.rejects(client.reserve({ operation: "design_analyze_image" }), (error) => {
      assert.ok(error instanceof CreditsError);
      assert.equal(error.status, 409);
      assert.equal(error.code, "too_many_open_holds");
      assert.equal(error.openHolds, MAX_OPEN_HOLDS);
      assert.equal(error.limit, MAX_OPEN_HOLDS);
      return true;
    });
    await client.release(holds[0].reservationId);
    assert.equal((await client.reserve({ operation: "design_analyze_image" })).status, "pending");
  });
});

describe("auto-recharge settings", () => {
  test("the server turns it on and off for a user, who reads it and may not change it", async () => {
    const { userId, client, own } = await newUser("recharge", 0);
    const off = {
      userId,
      enabled: false,
      pack: null,
      threshold: null,
      monthlyLimit: null,
      rechargesThisMonth: 0,
      cardSaved: false,
      disabledReason: null,
      lastRecharge: null,
    };
    assert.deepEqual(await own.getAutoRecharge(), off);
    const on = { ...off, enabled: true, pack: "starter", threshold: 20, monthlyLimit: 3 };
    assert.deepEqual(await client.setAutoRecharge({ pack: "starter", threshold: 20, monthlyLimit: 3 }), on);
    assert.deepEqual(await own.getAutoRecharge(), on);
    await assert.rejects(own.setAutoRecharge({ pack: "starter", threshold: 5, monthlyLimit: 1 }), {
      status: 403,
      code: "forbidden",
    });
    await assert.rejects(own.endAutoRecharge(), { status: 403, code: "forbidden" });
    await assert.rejects(client.setAutoRecharge({ pack: "gold", threshold: 20, monthlyLimit: 3 }), {
      status: 400,
      code: "validation_error",
      field: "pack",
    });
    assert.deepEqual(await client.endAutoRecharge(), { ...off, threshold: 20 });
    assert.deepEqual(await own.getAutoRecharge(), { ...off, threshold: 20 });
  });
});

describe("client credentials: the server's token from an OAuth token endpoint", () => {
  const clientId = SERVER_CLIENT_ID;
  const clientSecret = "s3cret with spaces/and:colons";
  let endpoint;

  after(async () => {
    await endpoint?.stop();
  });

  async function tokenEndpoint(issue, extra = {}) {
    await endpoint?.stop();
    endpoint = await startTokenEndpoint({ clientId, clientSecret, issue, ...extra });
    return endpoint;
  }

  const credentials = (extra = {}) => ({ clientId, clientSecret, tokenUrl: endpoint.tokenUrl, ...extra });

  test("fetches a token once (Basic auth, form body, scope credits/server) and reuses it", async () => {
    await tokenEndpoint(() => ({ token: mintServerToken(), expiresIn: 3600 }));
    const { userId } = await newUser("cc-cache", 50);
    const credits = new CreditsClient({ baseUrl: server.api, clientCredentials: credentials() });
    assert.equal(endpoint.issued(), 0, "nothing is fetched before the first call");

    const result = await credits.forUser(userId).withCredits("design_generate_image", 1, async () => ({ value: "ok" }));
    assert.equal(result.outcome, "confirmed");
    assert.equal((await credits.getBalance({ user: userId })).spent, 5);
    // Clients derived with forUser/with share the cache.
    await credits.forUser(uniqueUser("cc-other")).with({ acceptLanguage: "es-ES" }).getBalance();

    assert.equal(endpoint.issued(), 1, "one token for all the calls");
    assert.deepEqual(endpoint.requests, [
      {
        method: "POST",
        contentType: "application/x-www-form-urlencoded",
        grantType: "client_credentials",
        scope: "credits/server",
        clientId,
      },
    ]);
  });

  test("fetches a new token shortly before expires_in runs out", async () => {
    await tokenEndpoint(() => ({ token: mintServerToken(), expiresIn: 2 }));
    const { userId } = await newUser("cc-expiry", 0);
    const credits = new CreditsClient({ baseUrl: server.api, clientCredentials: credentials(), user: userId });
    await credits.getBalance();
    await credits.getBalance();
    assert.equal(endpoint.issued(), 1);
    // A 2 s token is refreshed after at most half its lifetime (the 60 s margin is capped).
    await new Promise((resolve) => setTimeout(resolve, 1100));
    await credits.getBalance();
    assert.equal(endpoint.issued(), 2);
  });

  test("a 401 from the API drops the cached token, fetches a new one and retries once", async () => {
    // The first token is already expired, as a revoked or clock-skewed one would be.
    await tokenEndpoint((n) => ({ token: n === 1 ? mintServerToken({ ttlSeconds: -60 }) : mintServerToken(), expiresIn: 3600 }));
    const { userId } = await newUser("cc-401", 20);
    const statuses = [];
    const recording = async (input, init) => {
      const response = await fetch(input, init);
      if (new URL(String(input)).origin === new URL(server.api).origin) statuses.push(response.status);
      return response;
    };
    const credits = new CreditsClient({
      baseUrl: server.api,
      clientCredentials: credentials(),
      fetch: recording,
      user: userId,
    });
    assert.equal((await credits.getBalance()).available, 20);
    assert.deepEqual(statuses, [401, 200]);
    assert.equal(endpoint.issued(), 2);
    await credits.getBalance();
    assert.equal(endpoint.issued(), 2, "the new token is cached");

    // A token endpoint that keeps issuing refused tokens: one retry, then the 401.
    await tokenEndpoint((n) => ({ token: mintServerToken({ ttlSeconds: -60 - n }), expiresIn: 3600 }));
    statuses.length = 0;
    const stuck = credits.with({ clientCredentials: credentials() });
    await assert.rejects(stuck.getBalance(), (error) => error.status === 401 && error.code === "unauthorized");
    assert.deepEqual(statuses, [401, 401]);
    assert.equal(endpoint.issued(), 2);
  });

  test("concurrent calls share one token fetch", async () => {
    await tokenEndpoint(() => ({ token: mintServerToken(), expiresIn: 3600 }), { delayMs: 150 });
    const users = await Promise.all([1, 2, 3, 4, 5].map((i) => newUser(`cc-concurrent-${i}`, 10 * i)));
    const credits = new CreditsClient({ baseUrl: server.api, clientCredentials: credentials() });
    const balances = await Promise.all(
      [...users, ...users].map(({ userId }) => credits.forUser(userId).getBalance()),
    );
    assert.deepEqual(
      balances.map((b) => b.available),
      [10, 20, 30, 40, 50, 10, 20, 30, 40, 50],
    );
    assert.equal(endpoint.requests.length, 1);
  });

  test("a refused client is a token_error naming the endpoint's error, never the secret", async () => {
    await tokenEndpoint(() => assert.fail("a wrong secret gets no token"));
    const credits = new CreditsClient({
      baseUrl: server.api,
      clientCredentials: credentials({ clientSecret: "wrong-secret" }),
      user: uniqueUser("cc-refused"),
    });
    await assert.rejects(credits.getBalance(), (error) => {
      assert.ok(error instanceof CreditsError);
      assert.equal(error.code, "token_error");
      assert.equal(error.status, 401);
      assert.match(error.detail, /invalid_client/);
      assert.doesNotMatch(error.message, /wrong-secret/);
      return true;
    });
    assert.equal(endpoint.requests.length, 1, "a 4xx from the token endpoint is not retried");
  });
});
