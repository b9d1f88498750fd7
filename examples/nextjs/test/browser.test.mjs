// The example app in a real browser (Debian's Chromium, driven by
// playwright-core), started exactly as the README says: `make run` for the
// credits API, then `make demo` for the app and its provider and Stripe
// stand-ins. Only ports, the data folder and the clocks are set, through the
// environment both commands read: the sweep runs every second, a job's hold
// lasts 5 s and a `slow` job takes 10 s, so expiry is seen in seconds.
//
// Screenshots of the main pages land in test-results/ (kept as artifacts).
import assert from "node:assert/strict";
import { spawn } from "node:child_process";
import { mkdirSync, mkdtempSync, openSync, readFileSync, rmSync } from "node:fs";
import { createServer } from "node:net";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { after, before, test } from "node:test";
import { fileURLToPath } from "node:url";
import { chromium } from "playwright-core";

const root = fileURLToPath(new URL("../../..", import.meta.url));
const shots = fileURLToPath(new URL("../test-results/", import.meta.url));
const HOLD_TTL_SECONDS = 5;
const SLOW_SECONDS = 10;
const PT_BR_INSUFFICIENT = "Créditos insuficientes para esta operação. Assista a anúncios ou faça upgrade.";

let work;
let api;
let app;
let bflUrl;
let stripeUrl;
let adminToken;
let browser;
const started = [];

/** A port that is free now, with the next two free too (the demo's stand-ins take them). */
async function freePorts() {
  for (;;) {
    const base = 20000 + Math.floor(Math.random() * 30000);
    const free = await Promise.all(
      [base, base + 1, base + 2].map(
        (port) =>
          new Promise((resolve) => {
            const probe = createServer().once("error", () => resolve(false));
            probe.listen(port, "127.0.0.1", () => probe.close(() => resolve(true)));
          }),
      ),
    );
    if (free.every(Boolean)) return base;
  }
}

/** `make <target>` in a process group of its own (so Ctrl-C's SIGINT reaches all of it), output into a log. */
function make(target, env) {
  const log = join(work, `${target}.log`);
  const out = openSync(log, "w");
  const child = spawn("make", ["--no-print-directory", target], {
    cwd: root,
    env: { ...process.env, ...env },
    detached: true,
    stdio: ["ignore", out, out],
  });
  const run = { target, child, log, exited: new Promise((resolve) => child.on("exit", resolve)) };
  started.push(run);
  return run;
}

async function waitForOutput(run, pattern, seconds) {
  for (let i = 0; i < seconds * 4; i++) {
    const text = readFileSync(run.log, "utf8");
    const found = text.match(pattern);
    if (found) return found;
    if (run.child.exitCode !== null) break;
    await new Promise((resolve) => setTimeout(resolve, 250));
  }
  throw new Error(`make ${run.target} did not print ${pattern}:\n${readFileSync(run.log, "utf8").slice(-4000)}`);
}

async function stop(run) {
  if (run.child.exitCode !== null) return;
  try {
    process.kill(-run.child.pid, "SIGINT");
  } catch {
    return;
  }
  const timeout = new Promise((resolve) => setTimeout(() => resolve("timeout"), 20000));
  if ((await Promise.race([run.exited, timeout])) === "timeout") {
    try {
      process.kill(-run.child.pid, "SIGKILL");
    } catch {}
  }
}

before(async () => {
  work = mkdtempSync(join(tmpdir(), "credits-browser-"));
  mkdirSync(shots, { recursive: true });
  const apiPort = (await freePorts()) + 3;
  const appPort = await freePorts();
  api = `http://127.0.0.1:${apiPort}`;
  app = `http://127.0.0.1:${appPort}`;
  bflUrl = `http://127.0.0.1:${appPort + 1}`;
  stripeUrl = `http://127.0.0.1:${appPort + 2}`;

  const run = make("run", {
    CREDITS_LISTEN: `127.0.0.1:${apiPort}`,
    CREDITS_DATA_DIR: join(work, "data"),
    CREDITS_CLEANUP_INTERVAL_SECONDS: "1",
    DEMO_PORT: String(appPort),
    DYNAMODB_ENDPOINT: "",
  });
  adminToken = (await waitForOutput(run, /^export ADMIN_TOKEN=(\S+)$/m, 900))[1];
  const demo = make("demo", {
    CREDITS_API_URL: api,
    DEMO_PORT: String(appPort),
    DEMO_HOLD_TTL_SECONDS: String(HOLD_TTL_SECONDS),
    DEMO_SLOW_SECONDS: String(SLOW_SECONDS),
    DEMO_IMAGE_MS: "300",
  });
  await waitForOutput(demo, /Ready in/, 600);
  browser = await chromium.launch({
    executablePath: process.env.CHROMIUM ?? "/usr/bin/chromium",
    args: ["--no-sandbox", "--disable-gpu", "--disable-background-networking", "--disable-component-update", "--disable-sync", "--no-first-run"],
  });
});

after(async () => {
  await browser?.close();
  for (const run of started.reverse()) await stop(run);
  if (work) rmSync(work, { recursive: true, force: true });
});

// ---- the credits API and the stand-ins, as an operator sees them ----------

async function adminCall(path, init = {}) {
  const answer = await fetch(`${api}${path}`, {
    ...init,
    headers: { authorization: `Bearer ${adminToken}`, "content-type": "application/json", ...init.headers },
  });
  const body = await answer.json();
  assert.ok(answer.ok, `${path}: ${answer.status} ${JSON.stringify(body)}`);
  return body;
}

const grant = (user, amount) =>
  adminCall(`/v1/admin/users/${user}/grants`, {
    method: "POST",
    headers: { "idempotency-key": `welcome-${user}` },
    body: JSON.stringify({ amount, reason: "promo" }),
  });
const balanceOf = (user) => adminCall(`/v1/admin/users/${user}/balance`);
const historyOf = async (user) => (await adminCall(`/v1/admin/users/${user}/transactions?limit=200`)).items;
const holdOf = (id) => adminCall(`/v1/reservations/${id}`);
const standIn = async (url) => (await fetch(url)).json();

const unique = (name) => `${name}-${Date.now().toString(36)}${Math.floor(Math.random() * 1e4)}`;

// ---- the app, as a user sees it -------------------------------------------

async function signedIn(user, locale = "en-US") {
  const context = await browser.newContext({ locale, viewport: { width: 1200, height: 820 } });
  const page = await context.newPage();
  await page.goto(`${app}/signin`);
  await page.fill("#userId", user);
  await page.locator("form:has(#userId) button[type=submit]").click();
  await page.waitForURL(`${app}/`);
  return page;
}

/** Generate from the page; resolves to the job card once the job reaches `status`. */
async function generate(page, prompt, images, status, { click = "click" } = {}) {
  await page.fill("#prompt", prompt);
  await page.selectOption("#images", String(images));
  // Enabled once the app's server has made the job record the click will start.
  await page.waitForSelector("[data-testid=generate]:not([disabled])");
  const button = page.getByTestId("generate");
  await (click === "dblclick" ? button.dblclick() : button.click());
  const card = page.locator(`[data-testid=job][data-job-status="${status}"]`, { hasText: prompt }).first();
  await card.waitFor({ timeout: 30000 });
  return card;
}

const figure = async (page, id) => Number(await page.getByTestId(id).first().textContent());

test("generate 2 images with 50 credits: both images shown, 10 spent, the balance read straight from the API", async () => {
  const user = unique("ana");
  await grant(user, 50);
  const page = await signedIn(user);
  await page.getByTestId("direct-balance").waitFor();
  const card = await generate(page, "a lighthouse at dawn, watercolor", 2, "succeeded");
  await card.getByTestId("image").nth(1).waitFor();
  assert.equal(await card.getByTestId("image").count(), 2);
  assert.match(await card.getByTestId("job-status").textContent(), /charged 10 credits/);
  assert.equal(await figure(page, "available"), 40);
  assert.equal(await figure(page, "spent"), 10);
  // Another origin (the app) read the credits API with the user's own token (CORS).
  await page.getByTestId("direct-balance").filter({ hasText: "40 available" }).waitFor();
  const balance = await balanceOf(user);
  assert.deepEqual([balance.available, balance.reserved, balance.spent], [40, 0, 10]);
  await page.screenshot({ path: join(shots, "generate.png") });
  await page.context().close();
});

test("a failing prompt: the credits come back and the page says so", async () => {
  const user = unique("bruno");
  await grant(user, 50);
  const page = await signedIn(user);
  const card = await generate(page, "a cat that will fail", 3, "failed");
  assert.match(await card.getByTestId("job-status").textContent(), /provider failed: the 15 held credits are back/);
  assert.equal(await figure(page, "available"), 50);
  const balance = await balanceOf(user);
  assert.deepEqual([balance.available, balance.reserved, balance.spent], [50, 0, 0]);
  await page.screenshot({ path: join(shots, "failed.png") });
  await page.context().close();
});

test("Generate double-clicked, then the same request replayed from the page: one hold, one job, one charge", async () => {
  const user = unique("carmen");
  await grant(user, 50);
  const page = await signedIn(user);
  const prompt = `twin ${user}`;
  const sent = [];
  page.on("request", (request) => {
    if (request.url().endsWith("/api/generate")) sent.push(request.postData());
  });
  const card = await generate(page, prompt, 2, "succeeded", { click: "dblclick" });
  const reservation = await card.getAttribute("data-reservation");
  assert.ok(sent.length >= 1);

  // The browser sends the same request again, twice at once, after the job settled.
  const replays = await page.evaluate(
    (body) =>
      Promise.all(
        [1, 2].map(async () => {
          const answer = await fetch("/api/generate", { method: "POST", headers: { "content-type": "application/json" }, body });
          return { status: answer.status, body: await answer.json() };
        }),
      ),
    sent[0],
  );
  for (const replay of replays) {
    assert.ok(replay.status < 300, JSON.stringify(replay));
    assert.equal(replay.body.hold.reservationId, reservation);
    assert.equal(replay.body.hold.status, "confirmed");
  }
  const lines = await historyOf(user);
  assert.equal(lines.filter((l) => l.type === "reserve").length, 1, "one hold");
  assert.equal(lines.filter((l) => l.type === "confirm").length, 1, "one charge");
  const jobs = (await standIn(`${bflUrl}/_standin/tasks`)).filter((t) => t.prompt === prompt);
  assert.equal(jobs.length, 1, "one provider job");
  assert.equal((await balanceOf(user)).spent, 10);
  await page.context().close();
});

test("the provider's webhook and the page's polling settle the same job at the same moment: one charge, every time", async () => {
  const user = unique("dora");
  const rounds = 8;
  await grant(user, 5 * rounds);
  const page = await signedIn(user);
  const holds = [];
  for (let round = 0; round < rounds; round++) {
    const card = await generate(page, `race ${round}`, 1, "succeeded");
    holds.push(await card.getAttribute("data-reservation"));
  }
  const settledBy = {};
  for (const id of holds) {
    const hold = await holdOf(id);
    assert.equal(hold.status, "confirmed");
    assert.equal(hold.capturedAmount, 5);
    assert.equal(hold.events.filter((e) => e.type === "confirmed").length, 1, JSON.stringify(hold.events));
    settledBy[hold.settledBy] = (settledBy[hold.settledBy] ?? 0) + 1;
  }
  const balance = await balanceOf(user);
  assert.deepEqual([balance.available, balance.reserved, balance.spent], [0, 0, 5 * rounds]);
  // Every racing webhook reached the credits API and was answered 200.
  const webhooks = (await standIn(`${bflUrl}/_standin/webhooks`)).filter((w) => holds.includes(w.answer?.reservationId));
  assert.equal(webhooks.length, rounds);
  assert.ok(webhooks.every((w) => w.code === 200));
  console.log(`# ${rounds} racing jobs settled by: ${JSON.stringify(settledBy)}`);
  await page.context().close();
});

test("a job that outlives its hold: the sweep returns the credits, the late success is recorded and not charged", async () => {
  const user = unique("enzo");
  await grant(user, 50);
  const page = await signedIn(user);
  const card = await generate(page, "a slow panorama", 1, "expired");
  assert.match(await card.getByTestId("job-status").textContent(), /outlived its hold/);
  assert.equal(await figure(page, "available"), 50);
  // The provider finishes after the hold expired; its webhook is answered as a late success.
  await card.getByTestId("job-status").filter({ hasText: "late success" }).waitFor({ timeout: (SLOW_SECONDS + 10) * 1000 });
  const id = await card.getAttribute("data-reservation");
  const hold = await holdOf(id);
  assert.equal(hold.status, "expired");
  assert.equal(hold.settledBy, "cleanup");
  assert.equal(hold.capturedAmount, 0);
  const late = (await standIn(`${bflUrl}/_standin/webhooks`)).find((w) => w.answer?.reservationId === id);
  assert.equal(late?.answer?.lateSuccess, true, JSON.stringify(late));
  const balance = await balanceOf(user);
  assert.deepEqual([balance.available, balance.reserved, balance.spent], [50, 0, 0]);
  await page.screenshot({ path: join(shots, "expired.png") });
  await page.context().close();
});

test("the user's own token cannot write to the credits API from the page: 403, nothing changed", async () => {
  const user = unique("fabio");
  await grant(user, 50);
  const page = await signedIn(user);
  const card = await generate(page, "a quiet fox", 1, "succeeded");
  const id = await card.getAttribute("data-reservation");
  const answers = await page.evaluate(
    async ({ id, user }) => {
      const { token, api } = await (await fetch("/api/session")).json();
      const write = async (path, body) => {
        const answer = await fetch(`${api}${path}`, {
          method: "POST",
          headers: { authorization: `Bearer ${token}`, "content-type": "application/json", "credits-user": user, "idempotency-key": "mine" },
          body: JSON.stringify(body),
        });
        return { status: answer.status, code: (await answer.json()).code };
      };
      return [
        await write("/v1/reservations", { operation: "design_generate_image", units: 1 }),
        await write(`/v1/reservations/${id}/release`, {}),
        await write(`/v1/admin/users/${user}/grants`, { amount: 1000, reason: "promo" }),
      ];
    },
    { id, user },
  );
  for (const answer of answers) assert.deepEqual(answer, { status: 403, code: "forbidden" });
  assert.equal((await holdOf(id)).status, "confirmed");
  const balance = await balanceOf(user);
  assert.deepEqual([balance.available, balance.spent, balance.granted], [45, 5, 50]);
  await page.context().close();
});

test("not enough credits: the page shows the 402's message in the browser's language (pt-BR)", async () => {
  const user = unique("gabi");
  const page = await signedIn(user, "pt-BR");
  await page.fill("#prompt", "um farol");
  await page.waitForSelector("[data-testid=generate]:not([disabled])");
  await page.getByTestId("generate").click();
  const error = page.getByTestId("error");
  await error.waitFor();
  assert.match(await error.textContent(), new RegExp(PT_BR_INSUFFICIENT.replace(/[.]/g, "\\.")));
  assert.equal(await page.getByTestId("generate").textContent(), "Gerar");
  assert.equal((await historyOf(user)).length, 0, "nothing held");
  await page.screenshot({ path: join(shots, "insufficient-pt-BR.png") });
  await page.context().close();
});

test("buy a pack through Checkout: granted once though the webhook is delivered twice; history in the browser's language", async () => {
  const user = unique("hugo");
  const page = await signedIn(user, "es-ES");
  await page.goto(`${app}/credits`);
  await page.screenshot({ path: join(shots, "buy.png") });
  await page.getByTestId("buy-starter").click();
  await page.waitForURL(new RegExp(`^${stripeUrl}/c/pay/`));
  await page.screenshot({ path: join(shots, "checkout.png") });
  await page.getByRole("button", { name: /Pay/ }).click();
  await page.waitForURL(`${app}/credits?checkout=success`);
  await page.getByTestId("checkout-notice").filter({ hasText: "Tus créditos llegaron" }).waitFor({ timeout: 20000 });
  assert.equal(await figure(page, "available"), 100);

  // Stripe's stand-in delivers the event twice: granted, then a duplicate.
  let mine = [];
  for (let i = 0; i < 40 && mine.length < 2; i++) {
    await new Promise((resolve) => setTimeout(resolve, 250));
    mine = (await standIn(`${stripeUrl}/_standin/deliveries`)).filter((d) => d.user === user);
  }
  assert.deepEqual(mine.map((d) => [d.status, d.answer?.result]), [[200, "granted"], [200, "duplicate"]]);
  const balance = await balanceOf(user);
  assert.deepEqual([balance.available, balance.granted], [100, 100]);
  const lines = await historyOf(user);
  assert.deepEqual(lines.map((l) => [l.type, l.reason, l.actor]), [["grant", "purchase", "stripe"]]);

  await page.goto(`${app}/history`);
  const row = page.locator("[data-testid=history] tbody tr").first();
  assert.match(await row.textContent(), /Créditos añadidos.*\+100.*compra.*stripe/);
  await page.screenshot({ path: join(shots, "history-es.png") });
  await page.context().close();
});
