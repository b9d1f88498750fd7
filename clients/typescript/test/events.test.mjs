// Outgoing events end to end: the client registers a webhook endpoint on the
// real dev server (`credits serve`, which reads its change stream every
// second and delivers from there, and takes http://127.0.0.1 endpoints), a
// local receiver gets the signed deliveries, and verifyWebhook checks them
// with the secret the creation answered. Also settings, and the endpoint
// routes: list, get, deliveries, delete.
import assert from "node:assert/strict";
import { createServer } from "node:http";
import { after, before, describe, test } from "node:test";

import { CreditsClient, CreditsError, verifyWebhook } from "../dist/index.js";
import { mintToken, startServer, uniqueUser } from "./support/server.mjs";

const WAIT_MS = 20_000;

let server;
let admin;
let receiver;

/** A local webhook receiver: keeps every request (raw body, headers) and answers 204. */
function startReceiver() {
  const received = [];
  const http = createServer((req, res) => {
    const chunks = [];
    req.on("data", (chunk) => chunks.push(chunk));
    req.on("end", () => {
      received.push({ method: req.method, path: req.url, headers: req.headers, body: Buffer.concat(chunks).toString("utf8") });
      res.writeHead(204).end();
    });
  });
  return new Promise((resolveStart, reject) => {
    http.once("error", reject);
    http.listen(0, "127.0.0.1", () => {
      const { port } = http.address();
      resolveStart({
        url: (path) => `http://127.0.0.1:${port}${path}`,
        received,
        close: () => new Promise((r) => http.close(() => r())),
      });
    });
  });
}

const sleep = (ms) => new Promise((r) => setTimeout(r, ms));

/** Polls `find` until it answers something, for up to `timeoutMs`. */
async function waitFor(what, find, timeoutMs = WAIT_MS) {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const found = await find();
    if (found) return found;
    if (Date.now() > deadline) assert.fail(`nothing within ${timeoutMs} ms: ${what}\nserver log:\n${server.logs().slice(-3000)}`);
    await sleep(200);
  }
}

/** The deliveries to `path` of events of `type` for `userId`, each verified with `secret`. */
async function delivered(path, secret, type, userId) {
  const events = [];
  for (const request of receiver.received.filter((r) => r.path === path)) {
    const event = await verifyWebhook(secret, request.headers, request.body);
    if (event.type === type && event.userId === userId) events.push({ event, request });
  }
  return events;
}

before(async () => {
  [server, receiver] = await Promise.all([startServer(), startReceiver()]);
  admin = new CreditsClient({ baseUrl: server.api, token: mintToken(uniqueUser("admin"), { admin: true }) });
});

after(async () => {
  await Promise.all([server?.stop(), receiver?.close()]);
});

describe("outgoing events against the dev server", () => {
  test("settings: the low-balance threshold is set, cleared with null, and required", async () => {
    const userId = uniqueUser("settings");
    assert.deepEqual(await admin.adminSetSettings(userId, { lowBalanceThreshold: 20 }), { userId, lowBalanceThreshold: 20 });
    assert.deepEqual(await admin.adminSetSettings(userId, { lowBalanceThreshold: 20 }), { userId, lowBalanceThreshold: 20 });
    assert.deepEqual(await admin.adminSetSettings(userId, { lowBalanceThreshold: 0 }), { userId, lowBalanceThreshold: 0 });
    assert.deepEqual(await admin.adminSetSettings(userId, { lowBalanceThreshold: null }), { userId, lowBalanceThreshold: null });
    await assert.rejects(admin.adminSetSettings(userId, {}), { status: 400, code: "validation_error", field: "lowBalanceThreshold" });
    await assert.rejects(admin.adminSetSettings(userId, { lowBalanceThreshold: -1 }), {
      status: 400,
      code: "validation_error",
      field: "lowBalanceThreshold",
    });
    // Admin only.
    const own = new CreditsClient({ baseUrl: server.api, token: mintToken(userId) });
    await assert.rejects(own.adminSetSettings(userId, { lowBalanceThreshold: 5 }), { status: 403, code: "forbidden" });
  });

  test("a registered endpoint gets grant.created, debit.created and balance.low, signed; list, get, deliveries, delete", async () => {
    const path = `/hooks/${uniqueUser("ep")}`;
    const request = {
      url: receiver.url(path),
      events: ["grant.created", "debit.created", "balance.low"],
      description: "ts client test",
    };
    const created = await admin.adminCreateWebhookEndpoint(request);
    assert.match(created.id, /^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$/);
    assert.match(created.secret, /^whsec_[A-Za-z0-9+/]+={0,2}$/);
    const { secret, ...view } = created;
    assert.deepEqual(
      { ...view, createdAt: typeof view.createdAt },
      {
        id: created.id,
        url: request.url,
        events: request.events,
        description: request.description,
        status: "enabled",
        createdAt: "string",
        failingSince: null,
        lastSuccessAt: null,
        disabledAt: null,
        disabledReason: null,
      },
    );
    // The secret is shown once: get and list leave it out.
    assert.deepEqual(await admin.adminGetWebhookEndpoint(created.id), view);
    const list = await admin.adminListWebhookEndpoints();
    assert.deepEqual(
      list.items.find((e) => e.id === created.id),
      view,
    );
    assert.ok(list.items.every((e) => !("secret" in e)));

    // A grant → grant.created at the receiver, verified with the secret.
    const userId = uniqueUser("events");
    const grant = await admin.adminGrant(userId, { amount: 50, reason: "purchase", description: "Starter pack" });
    const [{ event, request: req }] = await waitFor("grant.created at the receiver", async () => {
      const found = await delivered(path, secret, "grant.created", userId);
      return found.length > 0 && found;
    });
    assert.equal(req.method, "POST");
    assert.match(req.headers["content-type"], /^application\/json/);
    assert.equal(req.headers["webhook-id"], event.id);
    assert.match(event.id, /^evt_[0-9a-f]{32}$/);
    assert.ok(Math.abs(Number(req.headers["webhook-timestamp"]) - Date.now() / 1000) < 60);
    assert.equal(event.type, "grant.created");
    if (event.type === "grant.created") {
      assert.equal(event.data.amount, 50);
      assert.equal(event.data.reason, "purchase");
      assert.equal(event.data.description, "Starter pack");
      assert.equal(event.data.grantId, grant.grantId);
      assert.equal(event.data.expiresAt, null);
      assert.equal(typeof event.data.priority, "number");
    }
    // Another secret, or a changed body, does not verify.
    await assert.rejects(verifyWebhook(`whsec_${Buffer.alloc(32, 1).toString("base64")}`, req.headers, req.body), {
      name: "WebhookVerificationError",
      reason: "invalid_signature",
    });
    await assert.rejects(verifyWebhook(secret, req.headers, req.body.replace('"amount":50', '"amount":500')), {
      reason: "invalid_signature",
    });

    // A threshold, then a debit below it → debit.created and balance.low.
    await admin.adminSetSettings(userId, { lowBalanceThreshold: 20 });
    const debit = await admin.adminDebit(userId, { amount: 40, reason: "refund" });
    const [{ event: debited }] = await waitFor("debit.created at the receiver", async () => {
      const found = await delivered(path, secret, "debit.created", userId);
      return found.length > 0 && found;
    });
    assert.equal(debited.type, "debit.created");
    assert.equal(debited.data.debitId, debit.debitId);
    assert.equal(debited.data.amount, 40);
    assert.equal(debited.data.reason, "refund");
    const low = await waitFor("balance.low at the receiver", async () => {
      const found = await delivered(path, secret, "balance.low", userId);
      return found.find(({ event: e }) => e.data.available === 10);
    });
    assert.deepEqual(low.event.data, { available: 10, threshold: 20 });
    // Only the subscribed types came.
    for (const r of receiver.received.filter((x) => x.path === path)) {
      assert.ok(request.events.includes(JSON.parse(r.body).type), r.body);
    }

    // The delivery log: delivered on the first attempt with our 204.
    const deliveries = await waitFor("the grant.created delivery logged as delivered", async () => {
      const page = await admin.adminListWebhookDeliveries(created.id, { limit: 100 });
      const d = page.items.find((x) => x.eventId === event.id);
      return d?.status === "delivered" && page;
    });
    const logged = deliveries.items.find((x) => x.eventId === event.id);
    assert.equal(logged.eventType, "grant.created");
    assert.equal(logged.userId, userId);
    assert.equal(logged.nextAttemptAt, null);
    assert.equal(logged.attempts.length, 1);
    assert.equal(logged.attempts[0].attempt, 1);
    assert.equal(logged.attempts[0].responseCode, 204);
    assert.equal(logged.attempts[0].error, null);
    assert.equal(typeof logged.attempts[0].durationMs, "number");
    // Paged one at a time, newest first, every delivery once.
    const seen = [];
    let cursor;
    do {
      const page = await admin.adminListWebhookDeliveries(created.id, { limit: 1, ...(cursor && { cursor }) });
      assert.ok(page.items.length <= 1);
      seen.push(...page.items.map((d) => d.eventId));
      cursor = page.nextCursor ?? undefined;
    } while (cursor);
    assert.deepEqual(seen, deliveries.items.map((d) => d.eventId));
    assert.ok(seen.length >= 3);

    // Delete: 204, then it is gone everywhere.
    assert.equal(await admin.adminDeleteWebhookEndpoint(created.id), undefined);
    await assert.rejects(admin.adminGetWebhookEndpoint(created.id), { status: 404, code: "endpoint_not_found" });
    await assert.rejects(admin.adminDeleteWebhookEndpoint(created.id), (error) => {
      assert.ok(error instanceof CreditsError);
      assert.equal(error.code, "endpoint_not_found");
      assert.equal(error.status, 404);
      return true;
    });
    await assert.rejects(admin.adminListWebhookDeliveries(created.id), { status: 404, code: "endpoint_not_found" });
    assert.ok(!(await admin.adminListWebhookEndpoints()).items.some((e) => e.id === created.id));

    // Nothing more reaches the receiver for a deleted endpoint.
    const before = receiver.received.filter((r) => r.path === path).length;
    await admin.adminGrant(userId, { amount: 5, reason: "promo" });
    await sleep(3000);
    assert.equal(receiver.received.filter((r) => r.path === path).length, before);
  });

  test("bad endpoint requests: a URL that is not http(s) to this machine, an unknown event type, a malformed id", async () => {
    await assert.rejects(admin.adminCreateWebhookEndpoint({ url: "ftp://127.0.0.1/hooks" }), {
      status: 400,
      code: "validation_error",
      field: "url",
    });
    await assert.rejects(admin.adminCreateWebhookEndpoint({ url: "http://example.com/hooks" }), {
      status: 400,
      code: "validation_error",
      field: "url",
    });
    await assert.rejects(admin.adminCreateWebhookEndpoint({ url: receiver.url("/x"), events: ["hold.created"] }), {
      status: 400,
      code: "validation_error",
    });
    await assert.rejects(admin.adminGetWebhookEndpoint("not-a-uuid"), { status: 400, code: "validation_error" });
    await assert.rejects(admin.adminGetWebhookEndpoint("00000000-0000-4000-8000-000000000000"), {
      status: 404,
      code: "endpoint_not_found",
    });
    // Admin only.
    const user = new CreditsClient({ baseUrl: server.api, token: mintToken(uniqueUser("u")) });
    await assert.rejects(user.adminListWebhookEndpoints(), { status: 403, code: "forbidden" });
    await assert.rejects(user.adminCreateWebhookEndpoint({ url: receiver.url("/x") }), { status: 403, code: "forbidden" });
  });
});
