// The image provider, called the way Black Forest Labs' API is: submit a
// job with `webhook_url` and `webhook_secret`, get `{id, polling_url}`, poll
// `polling_url` (header `x-key`) for `{status: "Pending" | "Ready" |
// "Error" | …, result}`. BFL signs its webhook with
// `X-BFL-Signature: sha256=<hex HMAC-SHA256(webhook_secret, body)>`; the
// credits API checks it with the same secret (`CREDITS_WEBHOOK_SECRET_BFL`).
//
// BFL makes one image a request, and its webhook says nothing of how many
// images came out, so the credits API confirms the whole hold: one task must
// be one image, and `maxImagesPerTask()` is 1 unless `BFL_MAX_IMAGES` says
// otherwise. `make demo` points `BFL_API_URL` at a local stand-in
// (standins/bfl.mjs) that takes `num_images` (1–4), lists the images made so
// far in `result.samples`, and reports them in its webhook's `units` (which
// the credits API captures), so `make demo` sets `BFL_MAX_IMAGES=4`.

export interface SubmittedTask {
  id: string;
  polling_url: string;
}

export interface TaskResult {
  id: string;
  /** `Pending`, `Ready`, `Error`, `Content Moderated`, `Request Moderated`, `Task not found`. */
  status: string;
  result?: { sample?: string; samples?: string[] } | null;
}

/** How many images one task may make: 1 for BFL itself; more only for a provider whose webhook reports `units`. */
export function maxImagesPerTask(): number {
  const max = Number(process.env.BFL_MAX_IMAGES ?? "1");
  return Number.isInteger(max) && max >= 1 && max <= 4 ? max : 1;
}

function config() {
  const url = process.env.BFL_API_URL;
  const key = process.env.BFL_API_KEY;
  const secret = process.env.BFL_WEBHOOK_SECRET;
  if (!url || !key || !secret) throw new Error("set BFL_API_URL, BFL_API_KEY and BFL_WEBHOOK_SECRET");
  return { url: url.replace(/\/+$/, ""), key, secret };
}

/** Submits an image job; the provider calls `webhookUrl` when it ends. */
export async function submitImageJob(prompt: string, images: number, webhookUrl: string): Promise<SubmittedTask> {
  const { url, key, secret } = config();
  const answer = await fetch(`${url}/v1/flux-dev`, {
    method: "POST",
    headers: { "content-type": "application/json", "x-key": key },
    body: JSON.stringify({ prompt, num_images: images, webhook_url: webhookUrl, webhook_secret: secret }),
  });
  if (!answer.ok) throw new Error(`the provider refused the job: ${answer.status}`);
  return (await answer.json()) as SubmittedTask;
}

/** The task as the provider sees it now. */
export async function taskResult(taskId: string): Promise<TaskResult> {
  const { url, key } = config();
  const answer = await fetch(`${url}/v1/get_result?id=${encodeURIComponent(taskId)}`, { headers: { "x-key": key } });
  if (!answer.ok) throw new Error(`the provider did not answer for task ${taskId}: ${answer.status}`);
  return (await answer.json()) as TaskResult;
}

/** BFL's statuses that end a task: the credits API maps them the same way. */
export function outcomeOf(status: string): "succeeded" | "failed" | "running" {
  const s = status.toLowerCase();
  if (s === "ready") return "succeeded";
  if (["error", "content moderated", "request moderated", "task not found"].includes(s)) return "failed";
  return "running";
}
