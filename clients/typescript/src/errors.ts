import type { Credits, Problem, ProblemCode, ReservationStatus } from "./types.js";

/**
 * Codes the client adds for failures that never produced a problem body:
 * the network failed on every attempt (`network_error`, status 0), API
 * Gateway throttled every attempt (`rate_limited`, 429), a 2xx without JSON
 * (`unexpected_response`), or the OAuth token endpoint refused or failed
 * (`token_error`: status is the token endpoint's, 0 when unreachable).
 */
export type ClientErrorCode = "network_error" | "rate_limited" | "unexpected_response" | "token_error";

/** Any non-2xx answer of the service (or a network failure after the last retry). */
export class CreditsError extends Error {
  /** HTTP status; 0 for a network failure. */
  readonly status: number;
  readonly code: ProblemCode | ClientErrorCode;
  /** Human message in the client's `acceptLanguage`. */
  readonly detail: string;
  /** `urn:credits:error:<code>`. */
  readonly type: string;
  readonly title: string | undefined;
  readonly requestId: string | undefined;
  /** validation_error: the offending field (`Credits-User` when a server call named no user). */
  readonly field: string | undefined;
  /** insufficient_credits */
  readonly available: Credits | undefined;
  /** insufficient_credits */
  readonly required: Credits | undefined;
  /** insufficient_credits: required − available. */
  readonly shortfall: Credits | undefined;
  /** reservation_not_pending: how the reservation was settled. */
  readonly reservationStatus: ReservationStatus | undefined;
  /** too_many_open_holds: the user's pending holds. */
  readonly openHolds: number | undefined;
  /**
   * too_many_open_holds: the most pending holds a user may have; too_many_lots:
   * the most live lots; too_many_endpoints: the most webhook endpoints (20).
   */
  readonly limit: number | undefined;
  /**
   * unavailable: `true` when the service says the change was applied but its
   * result could not be read. Otherwise (undefined) a 503 or a network error
   * on a write means the change **may or may not** have been applied: retry
   * with the same `idempotencyKey`.
   */
  readonly applied: boolean | undefined;
  /** The `Idempotency-Key` the failed request carried (retry with it), if any. */
  readonly idempotencyKey: string | undefined;
  /** `Retry-After` in seconds, when the answer carried one. */
  readonly retryAfter: number | undefined;
  /** The problem body as received (undefined when there was none). */
  readonly problem: Partial<Problem> | undefined;

  constructor(init: {
    status: number;
    code: ProblemCode | ClientErrorCode;
    detail: string;
    type?: string;
    title?: string;
    requestId?: string;
    field?: string;
    available?: Credits;
    required?: Credits;
    shortfall?: Credits;
    reservationStatus?: ReservationStatus;
    openHolds?: number;
    limit?: number;
    applied?: boolean;
    idempotencyKey?: string;
    retryAfter?: number;
    problem?: Partial<Problem>;
    /** Appended to `message` only (never to `detail`, which is the service's words). */
    hint?: string;
    cause?: unknown;
  }) {
    super(`${init.code}${init.status ? ` (${init.status})` : ""}: ${init.detail}${init.hint ? ` (${init.hint})` : ""}`, {
      cause: init.cause,
    });
    this.name = "CreditsError";
    this.status = init.status;
    this.code = init.code;
    this.detail = init.detail;
    this.type = init.type ?? `urn:credits:error:${init.code}`;
    this.title = init.title;
    this.requestId = init.requestId;
    this.field = init.field;
    this.available = init.available;
    this.required = init.required;
    this.shortfall = init.shortfall;
    this.reservationStatus = init.reservationStatus;
    this.openHolds = init.openHolds;
    this.limit = init.limit;
    this.applied = init.applied;
    this.idempotencyKey = init.idempotencyKey;
    this.retryAfter = init.retryAfter;
    this.problem = init.problem;
  }
}

export function isCreditsError(error: unknown, code?: CreditsError["code"]): error is CreditsError {
  return error instanceof CreditsError && (code === undefined || error.code === code);
}

/**
 * Codes for answers without a problem body: API Gateway's own
 * `{"message": "…"}` (a missing or bad token, throttling, a function that
 * timed out or failed) and anything else that is not ours.
 */
const fallbackCodes: Record<number, ProblemCode | ClientErrorCode> = {
  400: "validation_error",
  401: "unauthorized",
  402: "insufficient_credits",
  403: "forbidden",
  404: "not_found",
  413: "payload_too_large",
  422: "idempotency_key_reused",
  429: "rate_limited",
  503: "unavailable",
};

/** Builds the error of a non-2xx response from its (possibly non-problem) body. */
export function errorFromResponse(
  status: number,
  body: unknown,
  headers: {
    requestId?: string | undefined;
    retryAfter?: number | undefined;
    idempotencyKey?: string | undefined;
    hint?: string | undefined;
  },
): CreditsError {
  const p = (body && typeof body === "object" ? body : {}) as Partial<Problem> & { message?: unknown };
  const num = (v: unknown) => (typeof v === "number" ? v : undefined);
  const str = (v: unknown) => (typeof v === "string" ? v : undefined);
  const code =
    (str(p.code) as ProblemCode | undefined) ??
    fallbackCodes[status] ??
    (status >= 500 ? "internal" : "unexpected_response");
  const requestId = str(p.requestId) ?? headers.requestId;
  return new CreditsError({
    status,
    code,
    detail: str(p.detail) ?? str(p.message) ?? `HTTP ${status}`,
    ...(str(p.type) !== undefined && { type: str(p.type) }),
    ...(str(p.title) !== undefined && { title: str(p.title) }),
    ...(requestId !== undefined && { requestId }),
    ...(str(p.field) !== undefined && { field: str(p.field) }),
    ...(num(p.available) !== undefined && { available: num(p.available) }),
    ...(num(p.required) !== undefined && { required: num(p.required) }),
    ...(num(p.shortfall) !== undefined && { shortfall: num(p.shortfall) }),
    ...(str(p.reservationStatus) !== undefined && { reservationStatus: str(p.reservationStatus) as ReservationStatus }),
    ...(num(p.openHolds) !== undefined && { openHolds: num(p.openHolds) }),
    ...(num(p.limit) !== undefined && { limit: num(p.limit) }),
    ...(p.applied === true && { applied: true }),
    ...(headers.idempotencyKey !== undefined && { idempotencyKey: headers.idempotencyKey }),
    ...(headers.retryAfter !== undefined && { retryAfter: headers.retryAfter }),
    ...(headers.hint !== undefined && { hint: headers.hint }),
    ...(body && typeof body === "object" ? { problem: p } : {}),
  });
}
