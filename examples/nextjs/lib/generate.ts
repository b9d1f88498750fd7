// A generation from the button to the charge, on the app's server:
//
// 1. `startJob`: hold the credits (key `generate-<job id>`), submit the job to
//    the provider with this app as its webhook, link the provider's task to
//    the hold. A reserve that answers as a replay means this job was already
//    started (a double-click, a retry): the provider is not called again.
// 2. Then two settlement paths run at once, as they do in production:
//    - the provider's webhook (relayed by app/api/webhooks/bfl) settles the
//      hold through the credits API;
//    - `refreshJob`, called by the page's polling, asks the provider and
//      confirms or releases the hold itself.
//    The credits API charges exactly once whichever comes first; the loser
//    reads the hold as the winner left it.
// 3. A job nobody settles before the hold's `expiresAt` (the provider is
//    slow, the app crashed) is expired by the credits API's sweep: the
//    credits go back, and a success after that is recorded, not charged.
import { CreditsError, type CreditsClient, type Reservation, type ReservationWithEvents } from "@credits/client";
import { type Job, holdKey } from "./jobs";
import { outcomeOf, submitImageJob, taskResult } from "./provider";

export const OPERATION = "design_generate_image";

/** How long a hold waits for its job before the sweep returns it (`DEMO_HOLD_TTL_SECONDS`, default 120). */
function holdTtlSeconds(): number {
  const ttl = Number(process.env.DEMO_HOLD_TTL_SECONDS ?? "120");
  return Number.isInteger(ttl) && ttl >= 1 && ttl <= 86_400 ? ttl : 120;
}

/** What the page is shown of a job. */
export interface JobView {
  id: string;
  status: "running" | "succeeded" | "failed" | "expired";
  prompt: string;
  images: number;
  samples: string[];
  /** How the provider says the job stands (`unknown` until its task is known). */
  provider: "running" | "succeeded" | "failed" | "unknown";
  /** The provider finished after the hold expired: not charged. */
  lateSuccess: boolean;
  hold: Pick<Reservation, "reservationId" | "status" | "amount" | "capturedAmount" | "releasedAmount" | "settledBy" | "expiresAt"> | null;
}

/**
 * Holds `images` × the operation's price for the session's user and starts
 * the provider's job, once per job record: whatever repeats this call, the
 * reserve replays and `withCredits` does not run the submission again.
 */
export async function startJob(credits: CreditsClient, job: Job, prompt: string, images: number, webhookUrl: string): Promise<JobView> {
  const run = await credits.withCredits(
    OPERATION,
    images,
    async () => {
      const task = await submitImageJob(prompt, images, webhookUrl);
      // The webhook (or refreshJob) settles the hold: leave it pending, linked to the task.
      return { value: task, taskId: task.id, pending: true as const };
    },
    { idempotencyKey: holdKey(job), provider: "bfl", description: prompt.slice(0, 500), ttlSeconds: holdTtlSeconds() },
  );
  // Recorded on the job whichever request started it; the replayed one only
  // learns the hold (the started one sets the task when its submission returns).
  job.prompt ??= prompt;
  job.images ??= images;
  job.reservationId = run.reservation.reservationId;
  if (run.outcome !== "replayed") {
    job.status = "running";
    job.taskId = run.reservation.taskId ?? undefined;
  } else if (job.status === "draft") {
    job.status = "running";
  }
  return view(job, run.reservation, "unknown");
}

/**
 * The page's polling: asks the provider how the job stands and, when it has
 * ended, confirms (the images made) or releases the hold — racing the
 * provider's webhook, which may settle it first.
 */
export async function refreshJob(credits: CreditsClient, job: Job): Promise<JobView> {
  if (!job.reservationId) throw new Error(`job ${job.id} was never started`);
  let providerDone: JobView["provider"] = "unknown";
  if (job.taskId) {
    const result = await taskResult(job.taskId);
    job.samples = result.result?.samples ?? (result.result?.sample ? [result.result.sample] : job.samples);
    providerDone = outcomeOf(result.status);
  }
  let hold: ReservationWithEvents | Reservation = await credits.getReservation(job.reservationId);
  if (hold.status === "pending" && (providerDone === "succeeded" || providerDone === "failed")) {
    hold = await settle(credits, hold, providerDone === "succeeded" ? job.samples.length : 0);
  }
  job.status = statusOf(hold.status);
  return view(job, hold, providerDone);
}

/**
 * Confirms `units` images (0: releases). A hold the webhook settled first,
 * or the sweep expired, answers 409: then the hold as it is now is the answer.
 */
async function settle(credits: CreditsClient, hold: Reservation, units: number): Promise<Reservation> {
  try {
    return units > 0
      ? await credits.confirm(hold.reservationId, { units: Math.min(units, hold.units) })
      : await credits.release(hold.reservationId, "provider failed");
  } catch (error) {
    if (error instanceof CreditsError && (error.code === "reservation_not_pending" || error.code === "reservation_expired")) {
      return credits.getReservation(hold.reservationId);
    }
    throw error;
  }
}

function statusOf(holdStatus: Reservation["status"]): JobView["status"] {
  switch (holdStatus) {
    case "confirmed":
    case "refunded":
      return "succeeded";
    case "released":
      return "failed";
    case "expired":
      return "expired";
    default:
      return "running";
  }
}

function view(job: Job, hold: Reservation, provider: JobView["provider"]): JobView {
  return {
    id: job.id,
    status: job.status === "draft" ? "running" : job.status,
    prompt: job.prompt ?? "",
    images: job.images ?? hold.units,
    // Shown as they arrive while the hold stands, and once it is charged;
    // never for a job that ended uncharged (failed, or expired before a late success).
    samples: hold.status === "pending" || hold.status === "confirmed" ? job.samples : [],
    provider,
    lateSuccess: hold.status === "expired" && provider === "succeeded",
    hold: {
      reservationId: hold.reservationId,
      status: hold.status,
      amount: hold.amount,
      capturedAmount: hold.capturedAmount,
      releasedAmount: hold.releasedAmount,
      settledBy: hold.settledBy,
      expiresAt: hold.expiresAt,
    },
  };
}
