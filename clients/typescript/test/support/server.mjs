// Starts the real dev server (`credits serve`) for the tests and stops it.
import { spawn, execFileSync } from "node:child_process";
import { createHmac, randomUUID } from "node:crypto";
import { mkdtemp, rm } from "node:fs/promises";
import { createServer } from "node:net";
import { tmpdir } from "node:os";
import { dirname, join, resolve } from "node:path";
import { fileURLToPath } from "node:url";

const here = dirname(fileURLToPath(import.meta.url));
export const repoRoot = resolve(here, "../../../..");
export const creditsBin = process.env.CREDITS_BIN || join(repoRoot, "target/debug/credits");
export const BFL_SECRET = "test-bfl-secret";
/** The app server's client id the test server trusts (`CREDITS_SERVER_CLIENT_IDS`). */
export const SERVER_CLIENT_ID = "dev-server";
/** Pending holds one user may have on the test server (small, so the limit is cheap to reach). */
export const MAX_OPEN_HOLDS = 5;

function freePort() {
  return new Promise((resolvePort, reject) => {
    const server = createServer();
    server.unref();
    server.on("error", reject);
    server.listen(0, "127.0.0.1", () => {
      const { port } = server.address();
      server.close(() => resolvePort(port));
    });
  });
}

/** Starts `credits serve` on a free port with a fresh data dir; resolves once it printed its tokens. */
export async function startServer({ timeoutMs = 60_000 } = {}) {
  const dataDir = await mkdtemp(join(tmpdir(), "credits-ts-client-"));
  const port = await freePort();
  const child = spawn(creditsBin, ["serve", "--data-dir", dataDir], {
    // DynamoDB Local is found under node_modules/ of the working directory or one above it.
    cwd: repoRoot,
    env: {
      ...process.env,
      CREDITS_LISTEN: `127.0.0.1:${port}`,
      CREDITS_WEBHOOK_SECRET_BFL: BFL_SECRET,
      CREDITS_SERVER_CLIENT_IDS: SERVER_CLIENT_ID,
      CREDITS_MAX_OPEN_HOLDS: String(MAX_OPEN_HOLDS),
      RUST_LOG: process.env.RUST_LOG ?? "warn",
    },
    stdio: ["ignore", "pipe", "pipe"],
    // Its own process group, so stop() can also end DynamoDB Local (its child) if the server dies first.
    detached: true,
  });
  let stdout = "";
  let stderr = "";
  child.stderr.on("data", (chunk) => {
    stderr += chunk;
    if (stderr.length > 100_000) stderr = stderr.slice(-50_000);
  });
  const exited = new Promise((resolveExit) => child.once("exit", (code, signal) => resolveExit({ code, signal })));

  const ready = await new Promise((resolveReady, reject) => {
    const timer = setTimeout(() => {
      reject(new Error(`credits serve printed no ADMIN_TOKEN within ${timeoutMs} ms\nstdout:\n${stdout}\nstderr:\n${stderr}`));
    }, timeoutMs);
    child.stdout.on("data", (chunk) => {
      stdout += chunk;
      if (/^export ADMIN_TOKEN=\S+$/m.test(stdout)) {
        clearTimeout(timer);
        const read = (name) => stdout.match(new RegExp(`^export ${name}=(\\S+)$`, "m"))?.[1];
        resolveReady({
          api: read("API"),
          userToken: read("USER_TOKEN"),
          serverToken: read("SERVER_TOKEN"),
          adminToken: read("ADMIN_TOKEN"),
        });
      }
    });
    child.once("error", (error) => {
      clearTimeout(timer);
      reject(new Error(`cannot start ${creditsBin}: ${error.message} (build it: cargo build -q -p credits-cli --bin credits)`));
    });
    exited.then(({ code, signal }) => {
      clearTimeout(timer);
      reject(new Error(`credits serve exited early (${code ?? signal})\nstdout:\n${stdout}\nstderr:\n${stderr}`));
    });
  });

  const killGroup = (signal) => {
    try {
      process.kill(-child.pid, signal);
    } catch {
      // already gone
    }
  };
  const wait = (ms) => new Promise((r) => setTimeout(r, ms).unref?.());

  async function stop() {
    if (child.exitCode === null && child.signalCode === null) {
      child.kill("SIGINT"); // Ctrl-C: the server stops DynamoDB Local itself
      const stopped = await Promise.race([exited.then(() => true), wait(10_000).then(() => false)]);
      if (!stopped) {
        killGroup("SIGKILL");
        await exited;
      }
    }
    // Whatever of the group is left (DynamoDB Local when the server was killed early).
    killGroup("SIGKILL");
    await rm(dataDir, { recursive: true, force: true }).catch(() => {});
  }
  process.once("exit", () => killGroup("SIGKILL"));

  return { ...ready, port, dataDir, stop, logs: () => stderr };
}

/** A token for `user` minted with the dev server's (default) secret. */
export function mintToken(user, { admin = false } = {}) {
  const args = ["token", "--user", user];
  if (admin) args.push("--admin");
  return execFileSync(creditsBin, args, { encoding: "utf8", cwd: repoRoot }).trim();
}

/** A client-credentials token of the app's back end (scope `credits/server`), as an OAuth server would issue. */
export function mintServerToken({ client = SERVER_CLIENT_ID, ttlSeconds } = {}) {
  const args = ["token", "--server", "--client", client];
  if (ttlSeconds !== undefined) args.push(`--ttl=${ttlSeconds}`);
  return execFileSync(creditsBin, args, { encoding: "utf8", cwd: repoRoot }).trim();
}

/** A fresh user id, so every test starts from a zero balance. */
export function uniqueUser(label) {
  return `ts-${label}-${randomUUID()}`;
}

/** POSTs a BFL webhook signed like Black Forest Labs does. */
export async function sendBflWebhook(api, payload, secret = BFL_SECRET) {
  const body = JSON.stringify(payload);
  const signature = createHmac("sha256", secret).update(body).digest("hex");
  const response = await fetch(`${api}/v1/webhooks/bfl`, {
    method: "POST",
    headers: { "content-type": "application/json", "x-bfl-signature": `sha256=${signature}` },
    body,
  });
  return { status: response.status, body: await response.json().catch(() => null) };
}
