// A local stand-in for an image provider shaped like Black Forest Labs' API,
// so the demo and its tests run without an account or a network:
//
// POST /v1/flux-dev {prompt, num_images?, webhook_url, webhook_secret}
//   (header x-key) → {id, polling_url}; makes placeholder images over a few
//   seconds, then calls webhook_url with {id, status, result, units} signed
//   `X-BFL-Signature: sha256=<hex HMAC-SHA256(webhook_secret, body)>`, and
//   redelivers after 1 s, 5 s and 30 s while the answer is a 5xx or none.
// GET /v1/get_result?id=… → {id, status: "Pending" | "Ready" | "Error",
//   progress, result: {sample, samples}} (samples: the images made so far).
//
// Words in the prompt change what happens:
//   fail  → one image, then status "Error";
//   slow  → Ready only after `slowMs` (longer than the demo's hold);
//   race  → the webhook leaves the moment a poll first sees "Ready", so the
//           webhook and the page's polling settle the same job at once.
import { createHmac, randomUUID } from "node:crypto";
import { createServer } from "node:http";

const PALETTE = ["#f97316", "#0ea5e9", "#a855f7", "#22c55e", "#eab308", "#ec4899"];
const RETRIES_MS = [1000, 5000, 30000];

export function bflSignature(secret, body) {
  return `sha256=${createHmac("sha256", secret).update(body).digest("hex")}`;
}

/** A placeholder image: the prompt on a colour of its own. */
function placeholder(prompt, n) {
  const colour = PALETTE[(prompt.length + n) % PALETTE.length];
  const text = prompt.slice(0, 40).replace(/[&<>"']/g, (c) => `&#${c.charCodeAt(0)};`);
  return `<svg xmlns="http://www.w3.org/2000/svg" width="256" height="256" viewBox="0 0 256 256">
<defs><linearGradient id="g" x1="0" y1="0" x2="1" y2="1"><stop offset="0" stop-color="${colour}"/><stop offset="1" stop-color="#111827"/></linearGradient></defs>
<rect width="256" height="256" fill="url(#g)"/><circle cx="${60 + n * 40}" cy="90" r="34" fill="#fff8"/>
<text x="128" y="190" font-family="sans-serif" font-size="14" fill="#fff" text-anchor="middle">${text}</text>
<text x="128" y="215" font-family="sans-serif" font-size="12" fill="#fffa" text-anchor="middle">image ${n + 1}</text></svg>`;
}

/**
 * Starts the stand-in on `port` (0: any). `imageMs`: time per image;
 * `slowMs`: how long a `slow` job takes; `apiKey`: the `x-key` it expects.
 * Resolves to `{ url, server, webhooks }`; `webhooks` lists every delivery
 * attempt with its answer (also at GET /_standin/webhooks; the jobs it was
 * given at GET /_standin/tasks).
 */
export async function startBfl({ port = 0, host = "127.0.0.1", apiKey, imageMs = 1200, slowMs = 150_000, log = () => {} }) {
  const tasks = new Map();
  const webhooks = [];
  let base = "";

  async function callBack(task) {
    // `units`: the images made, which the credits API captures (BFL's own webhook has no such field).
    const ready = task.status === "Ready";
    const body = JSON.stringify({ id: task.id, status: task.status, result: ready ? result(task) : null, ...(ready && { units: task.made.length }) });
    for (let attempt = 0; ; attempt++) {
      const record = { task: task.id, status: task.status, attempt: attempt + 1, code: 0, answer: null, at: new Date().toISOString() };
      try {
        const answer = await fetch(task.webhookUrl, {
          method: "POST",
          headers: { "content-type": "application/json", "x-bfl-signature": bflSignature(task.webhookSecret, body) },
          body,
        });
        record.code = answer.status;
        record.answer = await answer.json().catch(() => null);
      } catch (error) {
        record.answer = { error: String(error?.message ?? error) };
      }
      webhooks.push(record);
      log(`bfl stand-in: webhook ${task.id} ${task.status} attempt ${attempt + 1} → ${record.code} ${JSON.stringify(record.answer)}`);
      if (record.code > 0 && record.code < 500) return;
      if (attempt >= RETRIES_MS.length) return; // BFL gives up after its third retry
      await new Promise((resolve) => setTimeout(resolve, RETRIES_MS[attempt]));
    }
  }

  function result(task) {
    const samples = task.made.map((n) => `${base}/images/${task.id}/${n}.svg`);
    return { sample: samples[0] ?? null, samples };
  }

  function finish(task, status) {
    task.status = status;
    // A racing job's webhook waits for the first poll that sees it ended.
    if (!task.race) callBack(task).catch(() => {});
  }

  function run(task) {
    const failing = /\bfail/i.test(task.prompt);
    const slow = /\bslow/i.test(task.prompt);
    const count = failing ? 1 : task.images;
    const step = slow ? Math.max(imageMs, Math.floor(slowMs / count)) : imageMs;
    let n = 0;
    const next = () => {
      if (n < count) {
        task.made.push(n++);
        task.progress = n / task.images;
        setTimeout(next, n < count ? step : Math.min(step, 400));
        return;
      }
      finish(task, failing ? "Error" : "Ready");
    };
    setTimeout(next, step);
  }

  const server = createServer((req, res) => {
    let raw = "";
    req.setEncoding("utf8");
    req.on("data", (chunk) => (raw += chunk));
    req.on("end", () => {
      const url = new URL(req.url, base);
      const json = (status, value) => {
        res.writeHead(status, { "content-type": "application/json" });
        res.end(JSON.stringify(value));
      };
      const image = url.pathname.match(/^\/images\/([\w-]+)\/(\d+)\.svg$/);
      if (req.method === "GET" && image) {
        const task = tasks.get(image[1]);
        if (!task || !task.made.includes(Number(image[2]))) return json(404, { detail: "Not found" });
        res.writeHead(200, { "content-type": "image/svg+xml", "cache-control": "public, max-age=3600" });
        return res.end(placeholder(task.prompt, Number(image[2])));
      }
      if (url.pathname === "/_standin/webhooks") return json(200, webhooks);
      if (url.pathname === "/_standin/tasks") {
        return json(200, [...tasks.values()].map(({ id, prompt, images, status, made }) => ({ id, prompt, images, status, made: made.length })));
      }
      if (req.headers["x-key"] !== apiKey) return json(403, { detail: "Not authenticated - Invalid Authentication" });

      if (req.method === "POST" && url.pathname.startsWith("/v1/")) {
        let body;
        try {
          body = JSON.parse(raw);
        } catch {
          return json(422, { detail: "invalid JSON" });
        }
        const images = body.num_images ?? 1;
        if (typeof body.prompt !== "string" || !Number.isInteger(images) || images < 1 || images > 4) {
          return json(422, { detail: "prompt and num_images (1-4)" });
        }
        if (typeof body.webhook_url !== "string" || typeof body.webhook_secret !== "string") {
          return json(422, { detail: "webhook_url and webhook_secret" });
        }
        const task = {
          id: randomUUID(),
          prompt: body.prompt,
          images,
          made: [],
          progress: 0,
          status: "Pending",
          race: /\brace/i.test(body.prompt),
          webhookUrl: body.webhook_url,
          webhookSecret: body.webhook_secret,
        };
        tasks.set(task.id, task);
        run(task);
        return json(200, { id: task.id, polling_url: `${base}/v1/get_result?id=${task.id}` });
      }
      if (req.method === "GET" && url.pathname === "/v1/get_result") {
        const task = tasks.get(url.searchParams.get("id") ?? "");
        if (!task) return json(200, { id: url.searchParams.get("id"), status: "Task not found", result: null });
        if (task.race && task.status !== "Pending" && !task.called) {
          task.called = true;
          callBack(task).catch(() => {});
        }
        return json(200, { id: task.id, status: task.status, progress: task.progress, result: result(task) });
      }
      return json(404, { detail: "Not Found" });
    });
  });
  await new Promise((resolve) => server.listen(port, host, resolve));
  base = `http://${host}:${server.address().port}`;
  return { url: base, server, webhooks };
}
