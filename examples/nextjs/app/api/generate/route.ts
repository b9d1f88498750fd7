// POST /api/generate {"jobId": "…", "prompt": "…", "images": 2}
// The Generate button. On the app's server, with the server credential
// acting for the session's user: holds the credits and starts the provider's
// job (lib/generate.ts). `jobId` is a job record this server made for this
// user (POST /api/jobs); its id names the hold's key, so sending this request
// twice, at once or after the job ended, starts one job and charges once.
import { creditsFor, errorResponse, signInFirst } from "../../../lib/credits";
import { startJob } from "../../../lib/generate";
import { jobOf } from "../../../lib/jobs";
import { maxImagesPerTask } from "../../../lib/provider";
import { currentUserId } from "../../../lib/session";

interface GenerateBody {
  jobId?: unknown;
  prompt?: unknown;
  images?: unknown;
}

export async function POST(request: Request): Promise<Response> {
  // Who pays comes from the app's verified session, never from the request's data.
  const userId = currentUserId(request.headers);
  if (!userId) return signInFirst();

  let body: GenerateBody;
  try {
    body = (await request.json()) as GenerateBody;
  } catch {
    return Response.json({ code: "validation_error", detail: "Send a JSON body." }, { status: 400 });
  }
  const { jobId, prompt, images = 1 } = body;
  if (typeof jobId !== "string" || typeof prompt !== "string" || prompt.trim() === "" || prompt.length > 500) {
    return Response.json({ code: "validation_error", detail: "jobId and a prompt (1-500 characters) please." }, { status: 400 });
  }
  const most = maxImagesPerTask();
  if (typeof images !== "number" || !Number.isInteger(images) || images < 1 || images > most) {
    return Response.json({ code: "validation_error", detail: `images: 1 to ${most}.` }, { status: 400 });
  }
  const job = jobOf(userId, jobId);
  if (!job) return Response.json({ code: "not_found", detail: "No such job." }, { status: 404 });

  // The provider calls this app back (app/api/webhooks/bfl relays it to the
  // credits API). In production the app's public URL must be set: the
  // request's own origin is the server's bind address, which no provider reaches.
  if (!process.env.APP_URL && process.env.NODE_ENV === "production") {
    console.error("set APP_URL: the provider's webhook must reach this app");
    return Response.json({ code: "internal", detail: "Something went wrong." }, { status: 500 });
  }
  const app = (process.env.APP_URL ?? new URL(request.url).origin).replace(/\/+$/, "");
  try {
    const view = await startJob(creditsFor(userId, request.headers), job, prompt, images, `${app}/api/webhooks/bfl`);
    return Response.json(view, { status: 202, headers: { "cache-control": "no-store" } });
  } catch (error) {
    return errorResponse(error);
  }
}
