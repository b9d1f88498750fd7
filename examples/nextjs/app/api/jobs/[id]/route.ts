// GET /api/jobs/{id}: the page's polling. Asks the provider how the job
// stands, settles the hold when the job has ended (racing the provider's
// webhook: one charge whichever wins), and answers the job with the user's
// balance. A job of another user answers 404.
import { creditsFor, errorResponse, signInFirst } from "../../../../lib/credits";
import { refreshJob } from "../../../../lib/generate";
import { jobOf } from "../../../../lib/jobs";
import { currentUserId } from "../../../../lib/session";

export async function GET(request: Request, context: { params: Promise<{ id: string }> }): Promise<Response> {
  const userId = currentUserId(request.headers);
  if (!userId) return signInFirst();
  const job = jobOf(userId, (await context.params).id);
  if (!job?.reservationId) return Response.json({ code: "not_found", detail: "No such job." }, { status: 404 });
  try {
    const credits = creditsFor(userId, request.headers);
    const view = await refreshJob(credits, job);
    const balance = await credits.getBalance();
    return Response.json({ job: view, balance }, { headers: { "cache-control": "no-store" } });
  } catch (error) {
    return errorResponse(error);
  }
}
