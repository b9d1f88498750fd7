// POST /api/jobs: a new job record for the signed-in user, before anything
// is held. Its id, made here, names the hold's idempotency key, so the
// Generate request that follows (clicked twice, retried, replayed) can
// start one provider job at most.
import { signInFirst } from "../../../lib/credits";
import { createJob } from "../../../lib/jobs";
import { currentUserId } from "../../../lib/session";

export async function POST(request: Request): Promise<Response> {
  const userId = currentUserId(request.headers);
  if (!userId) return signInFirst();
  const job = createJob(userId);
  return Response.json({ jobId: job.id }, { status: 201, headers: { "cache-control": "no-store" } });
}
