import type { CallOptions, CreditsClient } from "./client.js";
import { CreditsError } from "./errors.js";
import type { Provider, Reservation } from "./types.js";

/** What a `withCredits` job reports. */
export interface JobResult<T> {
  value: T;
  /** Units that came out: confirm captures this many (0 releases); absent captures all held. */
  units?: number;
  /** The provider's task id, linked to the hold so its webhook can settle it. */
  taskId?: string;
  /** The job failed without throwing: the hold is released. */
  failed?: boolean;
  /**
   * Submitted to an asynchronous provider: `taskId` is linked and the hold
   * is left pending for the provider's webhook (or your poller) to settle.
   * Not with `units` or `failed` (a TypeError: those settle now).
   */
  pending?: boolean;
}

/**
 * What a per-output `withCredits` job (`{ perOutput: true }`) reports when it
 * ends; its outputs were charged one by one with `outputs.report()`.
 */
export interface PerOutputJobResult<T> {
  value: T;
  /**
   * Submitted to an asynchronous provider: no final confirm or release; the
   * provider's webhook (or your poller) settles the hold. Reported outputs
   * stay charged. Not with `extraUnits` or `failed` (a TypeError).
   */
  pending?: boolean;
  /**
   * Units to charge at the end on top of those reported (default 0): the
   * final confirm captures them. Not a total: units already reported are
   * never counted again.
   */
  extraUnits?: number;
  /** Not in per-output mode (a job that returns it gets a TypeError): see `extraUnits`. */
  units?: never;
  /** The provider's task id, linked to the hold so its webhook can settle it. */
  taskId?: string;
  /** The job failed without throwing: the rest of the hold is released (reported outputs stay charged). */
  failed?: boolean;
}

export interface ReportOptions {
  /**
   * The output's index, which names its capture: `<idempotencyKey>-out-<index>`.
   * Default: one more than the highest index used so far (0 for the first).
   * Pass the index of an earlier report to repeat it (after a
   * `network_error` or `unavailable`, whose outcome is unknown): it is
   * charged at most once.
   */
  index?: number;
  signal?: AbortSignal;
}

/** The second argument of a per-output `withCredits` job. */
export interface Outputs {
  /**
   * Charge one output now: a non-final capture of `units` (default 1) with
   * the key `<idempotencyKey>-out-<index>`, so a repeated report (same
   * index, same units) never charges twice. Resolves to the hold after the
   * capture; rejects with a `CreditsError` when the capture fails, e.g.
   * 409 `reservation_expired` once the hold has expired (extend long jobs
   * with `extend`), or 400 `validation_error` (`units`) when fewer units are
   * left than asked. Await every report before the job returns.
   */
  report(units?: number, options?: ReportOptions): Promise<Reservation>;
  /** The hold as the latest report (or the reserve) left it: `capturedUnits` so far. */
  readonly hold: Reservation;
}

export interface WithCreditsOptions extends CallOptions {
  /**
   * The reserve's key (generated when absent): the job runs once per key
   * (see `onReplay`). In per-output mode each output's capture key is
   * derived from it (`<key>-out-<index>`), so it must be at most 120 characters.
   */
  idempotencyKey?: string;
  description?: string;
  provider?: Provider;
  /** The provider task id, when known before the job runs. */
  taskId?: string;
  ttlSeconds?: number;
  /** Reason recorded when the hold is released. */
  releaseReason?: string;
  /**
   * Charge each output as it is produced instead of all at the end: the job
   * gets `outputs` as its second argument and calls `outputs.report()` per
   * output, and returns a `PerOutputJobResult`. See `withCredits`.
   */
  perOutput?: boolean;
  /**
   * When the reserve is a replay of `idempotencyKey` (another run of the
   * key placed the hold). `"skip"` (default): the job does not run; the
   * result is `outcome: "replayed"`. `"resume"`: the job runs when the hold
   * is still `pending`, as on a fresh hold (per-output reports reuse their
   * keys, so outputs already charged are not charged again); a settled hold
   * is still `"replayed"`. For a trusted worker resuming its own job after
   * a crash only — NEVER with a key that came from a browser: each repeat of
   * the request would run the job again on one hold.
   */
  onReplay?: "skip" | "resume";
}

/** `withCredits` ran the job. */
export interface JobRan<T> {
  /**
   * `confirmed`: the job succeeded and was charged. `released`: it failed,
   * or produced nothing, and the hold went back (in per-output mode, outputs
   * it reported before failing stay charged). `pending`: the job returned
   * `pending: true`; the hold is left for the provider's webhook or your
   * poller (`reservation.status` says whether it is settled already).
   */
  outcome: "confirmed" | "released" | "pending";
  value: T;
  /** The hold as the job left it (`capturedAmount`: what the job cost). */
  reservation: Reservation;
}

/**
 * `withCredits` did not run the job: the reserve was a replay of the same
 * idempotency key, so another run of the key has the hold (or had it).
 */
export interface JobReplayed {
  outcome: "replayed";
  value: undefined;
  /** The hold as it stands: `pending` while that run is under way, or as it settled it. */
  reservation: Reservation;
}

/** What `withCredits` did: narrow on `outcome` before using `value`. */
export type WithCreditsResult<T> = JobRan<T> | JobReplayed;

/** A capture key is at most 128 characters; `-out-999` (a hold has at most 1000 outputs) takes 8. */
const MAX_OUTPUT_KEY_BASE = 120;

/** The capture key of a per-output job's output `index`. */
function outputKey(base: string, index: number): string {
  if (!Number.isSafeInteger(index) || index < 0) {
    throw new TypeError(`an output index is an integer ≥ 0, got ${String(index)}`);
  }
  const key = `${base}-out-${index}`;
  if (key.length > 128) throw new TypeError(`the capture key ${JSON.stringify(key)} is longer than 128 characters`);
  return key;
}

/** `CreditsClient.withCredits` (documented there), `client` acting for `user`. */
export async function runWithCredits<T>(
  client: CreditsClient,
  user: string | undefined,
  operation: string,
  units: number,
  job:
    | ((hold: Reservation, outputs: Outputs) => Promise<PerOutputJobResult<T>> | PerOutputJobResult<T>)
    | ((hold: Reservation) => Promise<JobResult<T>> | JobResult<T>),
  options: WithCreditsOptions,
): Promise<WithCreditsResult<T>> {
  const call: CallOptions = {
    ...(options.signal && { signal: options.signal }),
    ...(user !== undefined && { user }),
  };
  const idempotencyKey = options.idempotencyKey ?? crypto.randomUUID();
  if (options.perOutput && idempotencyKey.length > MAX_OUTPUT_KEY_BASE) {
    throw new TypeError(
      `in per-output mode the idempotencyKey is at most ${MAX_OUTPUT_KEY_BASE} characters (each output's key adds -out-<index>)`,
    );
  }
  const reserved = await client.reserveWithMeta(
    {
      operation,
      units,
      ...(options.taskId !== undefined && { taskId: options.taskId }),
      ...(options.provider !== undefined && { provider: options.provider }),
      ...(options.description !== undefined && { description: options.description }),
      ...(options.ttlSeconds !== undefined && { ttlSeconds: options.ttlSeconds }),
    },
    { idempotencyKey, ...call },
  );
  let hold = reserved.body;
  // A key this call made up is known to nobody else: a replay of it is this
  // call's own retry of a reserve whose answer was lost, so the job is ours to run.
  const ownKey = options.idempotencyKey === undefined;
  const resume = (options.onReplay === "resume" || ownKey) && hold.status === "pending";
  if (reserved.replayed && !resume) {
    // Another run of this key placed the hold: it runs the job, not this one.
    return { outcome: "replayed", value: undefined, reservation: hold };
  }
  if (options.perOutput) {
    return perOutput(
      client,
      hold,
      idempotencyKey,
      job as (hold: Reservation, outputs: Outputs) => Promise<PerOutputJobResult<T>> | PerOutputJobResult<T>,
      options,
      call,
    );
  }

  const release = () => settleRelease(client, hold.reservationId, options.releaseReason ?? "job failed", call);
  let result: JobResult<T>;
  try {
    result = await (job as (hold: Reservation) => Promise<JobResult<T>> | JobResult<T>)(hold);
  } catch (error) {
    try {
      await release();
    } catch {
      // The hold expires by itself; the job's error is the one that matters.
    }
    throw error;
  }
  if (result.pending && (result.failed || result.units !== undefined)) {
    await release().catch(() => undefined);
    throw new TypeError(
      "a job that returns pending: true leaves the hold to settle later: no units or failed; the hold was released",
    );
  }

  if (result.taskId !== undefined && result.taskId !== hold.taskId) {
    hold = await client.linkTask(hold.reservationId, result.taskId, options.provider, call);
  }
  if (result.pending) {
    return { outcome: "pending", value: result.value, reservation: hold };
  }
  if (result.failed || result.units === 0) {
    return { outcome: "released", value: result.value, reservation: await release() };
  }
  const confirmed = await settleConfirm(client, hold.reservationId, result.units, call);
  return { outcome: "confirmed", value: result.value, reservation: confirmed };
}

/** `withCredits` once the hold is placed, in per-output mode. */
async function perOutput<T>(
  client: CreditsClient,
  reserved: Reservation,
  idempotencyKey: string,
  job: (hold: Reservation, outputs: Outputs) => Promise<PerOutputJobResult<T>> | PerOutputJobResult<T>,
  options: WithCreditsOptions,
  call: CallOptions,
): Promise<JobRan<T>> {
  const id = reserved.reservationId;
  let hold = reserved;
  // Captured units only grow: keep the freshest view whatever order answers arrive in.
  const seen = (next: Reservation) => {
    if (next.capturedUnits >= hold.capturedUnits) hold = next;
    return next;
  };
  let nextIndex = 0;
  let finished = false;
  const outputs: Outputs = {
    async report(units = 1, reportOptions = {}) {
      if (finished) throw new Error("outputs.report() after the job ended: the hold is already settled");
      // The index is taken before any await, so concurrent reports get distinct ones.
      const index = reportOptions.index ?? nextIndex;
      const key = outputKey(idempotencyKey, index);
      nextIndex = Math.max(nextIndex, index + 1);
      const signal = reportOptions.signal ?? call.signal;
      return seen(
        await client.capture(id, units, {
          idempotencyKey: key,
          ...(signal && { signal }),
          ...(call.user !== undefined && { user: call.user }),
        }),
      );
    },
    get hold() {
      return hold;
    },
  };

  const releaseRest = () => settleRelease(client, id, options.releaseReason ?? "job failed", call);
  let result: PerOutputJobResult<T>;
  try {
    result = await job(hold, outputs);
  } catch (error) {
    finished = true;
    try {
      await releaseRest();
    } catch {
      // The hold expires by itself; the job's error is the one that matters.
    }
    throw error;
  }
  finished = true;
  if (result.units !== undefined) {
    await releaseRest().catch(() => undefined);
    throw new TypeError(
      "a per-output job returns extraUnits (units beyond those reported), not units; the rest of the hold was released",
    );
  }
  if (result.pending && (result.failed || result.extraUnits !== undefined)) {
    await releaseRest().catch(() => undefined);
    throw new TypeError(
      "a job that returns pending: true leaves the hold to settle later: no extraUnits or failed; the rest of the hold was released",
    );
  }

  if (result.taskId !== undefined && result.taskId !== hold.taskId) {
    seen(await client.linkTask(id, result.taskId, options.provider, call));
  }
  if (result.pending) {
    return { outcome: "pending", value: result.value, reservation: hold };
  }
  const extra = result.extraUnits ?? 0;
  let settled: Reservation;
  if (result.failed) {
    settled = await releaseRest();
  } else if (extra > 0 || hold.capturedUnits > 0) {
    // Captures `extra` more, or closes the hold at what was reported
    // (0 more): the unused rest goes back.
    settled = await settleConfirm(client, id, extra, call, true);
  } else {
    // Nothing came out: the whole hold goes back. A webhook may have closed it already.
    settled = await settleRelease(client, id, "no outputs", call, true);
  }
  const outcome = !result.failed && settled.capturedUnits > 0 ? "confirmed" : "released";
  return { outcome, value: result.value, reservation: settled };
}

/**
 * Final confirm; a hold already confirmed (the provider's webhook won the
 * race) counts as confirmed, and with `orClosed` one already released or
 * expired too (a retried per-output job whose hold closed before: its
 * reported outputs were charged once, nothing is left to settle).
 */
async function settleConfirm(
  client: CreditsClient,
  reservationId: string,
  units: number | undefined,
  options: CallOptions,
  orClosed = false,
): Promise<Reservation> {
  try {
    return await client.confirm(reservationId, units === undefined ? {} : { units }, options);
  } catch (error) {
    if (error instanceof CreditsError && error.code === "reservation_not_pending") {
      const { events: _events, ...current } = await client.getReservation(reservationId, options);
      if (current.status === "confirmed") return current;
      if (orClosed && (current.status === "released" || current.status === "expired")) return current;
    }
    throw error;
  }
}

/**
 * Release; a hold already released or expired counts as released (and
 * one already confirmed too, with `orConfirmed`).
 */
async function settleRelease(
  client: CreditsClient,
  reservationId: string,
  reason: string,
  options: CallOptions,
  orConfirmed = false,
): Promise<Reservation> {
  try {
    return await client.release(reservationId, reason, options);
  } catch (error) {
    if (error instanceof CreditsError && error.code === "reservation_not_pending") {
      const { events: _events, ...current } = await client.getReservation(reservationId, options);
      if (current.status === "released" || current.status === "expired") return current;
      if (orConfirmed && current.status === "confirmed") return current;
    }
    throw error;
  }
}
