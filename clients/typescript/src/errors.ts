import type { Credits, Problem, ProblemCode, ReservationStatus } from "./types.js";

/** Codes the client adds for failures that never produced a problem body. */
export type ClientErrorCode = "network_error" | "unexpected_response";

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
  /** validation_error: the offending field. */
  readonly field: string | undefined;
  /** insufficient_credits */
  readonly available: Credits | undefined;
  /** insufficient_credits */
  readonly required: Credits | undefined;
  /** insufficient_credits: required − available. */
  readonly shortfall: Credits | undefined;
  /** reservation_not_pending: how the reservation was settled. */
  readonly reservationStatus: ReservationStatus | undefined;
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
    retryAfter?: number;
    problem?: Partial<Problem>;
    cause?: unknown;
  }) {
    super(`${init.code}${init.status ? ` (${init.status})` : ""}: ${init.detail}`, { cause: init.cause });
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
    this.retryAfter = init.retryAfter;
    this.problem = init.problem;
  }
}

export function isCreditsError(error: unknown, code?: CreditsError["code"]): error is CreditsError {
  return error instanceof CreditsError && (code === undefined || error.code === code);
}

const fallbackCodes: Record<number, ProblemCode> = {
  400: "validation_error",
  401: "unauthorized",
  402: "insufficient_credits",
  403: "forbidden",
  404: "not_found",
  413: "payload_too_large",
  422: "idempotency_key_reused",
  503: "unavailable",
};

/** Builds the error of a non-2xx response from its (possibly non-problem) body. */
export function errorFromResponse(
  status: number,
  body: unknown,
  headers: { requestId?: string | undefined; retryAfter?: number | undefined },
): CreditsError {
  const p = (body && typeof body === "object" ? body : {}) as Partial<Problem> & { message?: unknown };
  const num = (v: unknown) => (typeof v === "number" ? v : undefined);
  const str = (v: unknown) => (typeof v === "string" ? v : undefined);
  const code = (str(p.code) as ProblemCode | undefined) ?? fallbackCodes[status] ?? (status >= 500 ? "internal" : "unexpected_response");
  return new CreditsError({
    status,
    code,
    detail: str(p.detail) ?? str(p.message) ?? `HTTP ${status}`,
    ...(str(p.type) !== undefined && { type: str(p.type) }),
    ...(str(p.title) !== undefined && { title: str(p.title) }),
    ...((str(p.requestId) ?? headers.requestId) !== undefined && { requestId: str(p.requestId) ?? headers.requestId }),
    ...(str(p.field) !== undefined && { field: str(p.field) }),
    ...(num(p.available) !== undefined && { available: num(p.available) }),
    ...(num(p.required) !== undefined && { required: num(p.required) }),
    ...(num(p.shortfall) !== undefined && { shortfall: num(p.shortfall) }),
    ...(str(p.reservationStatus) !== undefined && { reservationStatus: str(p.reservationStatus) as ReservationStatus }),
    ...(headers.retryAfter !== undefined && { retryAfter: headers.retryAfter }),
    ...(body && typeof body === "object" ? { problem: p } : {}),
  });
}
