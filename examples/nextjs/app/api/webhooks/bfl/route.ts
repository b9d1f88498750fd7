// POST /api/webhooks/bfl: relays Black Forest Labs' webhook to the credits API
// when the app, not the credits API, is the `webhook_url` given to BFL.
// The raw body and its `X-BFL-Signature` pass through untouched: the credits
// API verifies the signature (CREDITS_WEBHOOK_SECRET_BFL) and settles the hold.
import type { WebhookAnswer } from "@credits/client";
import { creditsApi } from "../../../../lib/credits";

export async function POST(request: Request): Promise<Response> {
  const signature = request.headers.get("x-bfl-signature");
  if (!signature) return Response.json({ code: "forbidden" }, { status: 403 });
  const raw = await request.text(); // the exact bytes BFL signed
  // The credits API refuses bodies over 64 KiB anyway: do not relay them.
  if (raw.length > 64 * 1024) return Response.json({ code: "payload_too_large" }, { status: 413 });
  const answer = await fetch(`${creditsApi}/v1/webhooks/bfl`, {
    method: "POST",
    headers: { "content-type": "application/json", "x-bfl-signature": signature },
    body: raw,
  });
  const body = (await answer.json().catch(() => null)) as WebhookAnswer | null;
  // A 5xx makes BFL redeliver (1 s, 5 s, 30 s); anything else is final.
  return Response.json(body ?? {}, { status: answer.status });
}
