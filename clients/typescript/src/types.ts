// Types of every request and response body of openapi.yaml (components.schemas).
// Keep in step with `schemaFields` in schema-fields.ts: the spec test compares both.

/** Whole credits (JSON integer, 0 ≤ n ≤ 1,000,000,000). */
export type Credits = number;
/** A user id (a token's `sub`), 1–256 characters. */
export type UserId = string;
/** A user id as `Credits-User` carries it: printable ASCII, no comma, 1–256 characters. */
export type CreditsUserId = string;
/** Printable ASCII, 1–128 characters. */
export type IdempotencyKey = string;
/** RFC 3339 UTC with milliseconds, e.g. `2026-11-22T18:04:05.123Z`. */
export type Timestamp = string;
/** An operation of the price catalog, e.g. `design_generate_image`. */
export type OperationName = string;
export type Provider = "bfl" | "generic";
export type ReservationStatus = "pending" | "confirmed" | "released" | "expired" | "refunded";
/** Who settled a hold or made an event: the app's back end, a provider webhook, the expiry sweep, an operator. */
export type Actor = "server" | "webhook" | "cleanup" | "admin";
export type Language = "pt-BR" | "en-US" | "es-ES";

export interface ReserveRequest {
  operation: OperationName;
  /** 1–1000; `null` or absent means 1. */
  units?: number | null;
  taskId?: string | null;
  /** `null` or absent means `bfl`. */
  provider?: Provider | null;
  /** ≤ 500 characters. */
  description?: string | null;
  /** 1–86400; `null` or absent means 1800. */
  ttlSeconds?: number | null;
}

export interface ConfirmRequest {
  /**
   * Units to capture now, 1 to the units still held (`units − capturedUnits`).
   * Final confirm: `null` or absent means all still held. Required when
   * `final` is `false`.
   */
  units?: number | null;
  /**
   * `false`: a non-final capture (needs an `Idempotency-Key`; the hold stays
   * pending with the rest still held; see `CreditsClient.capture`).
   * `true`, `null` or absent: the final confirm, which returns the rest.
   */
  final?: boolean | null;
}

export interface ExtendRequest {
  /** 1–86400: the pending hold's `expiresAt` becomes now + `ttlSeconds` (at most 7 days after `createdAt`). */
  ttlSeconds: number;
}

export interface ReasonRequest {
  /** ≤ 200 characters. */
  reason?: string | null;
}

export interface TaskRequest {
  taskId: string;
  provider?: Provider | null;
}

export type GrantReason = "ad_reward" | "purchase" | "promo" | "plan_refill" | "adjustment" | "signup";

export interface GrantRequest {
  amount: Credits;
  reason: GrantReason;
  description?: string | null;
}

export interface Reservation {
  reservationId: string;
  userId: UserId;
  operation: OperationName;
  units: number;
  unitCost: Credits;
  amount: Credits;
  status: ReservationStatus;
  taskId: string | null;
  provider: Provider;
  description: string | null;
  createdAt: Timestamp;
  expiresAt: Timestamp;
  capturedUnits: number;
  capturedAmount: Credits;
  releasedAmount: Credits;
  settledAt: Timestamp | null;
  settledBy: Actor | null;
}

export type ReservationEventType =
  | "reserved"
  | "captured"
  | "confirmed"
  | "released"
  | "expired"
  | "refunded"
  | "task_linked"
  | "extended";

export interface ReservationEvent {
  type: ReservationEventType;
  at: Timestamp;
  by: Actor;
  amount: Credits;
}

export interface ReservationWithEvents extends Reservation {
  events: ReservationEvent[];
}

export interface Balance {
  userId: UserId;
  available: Credits;
  reserved: Credits;
  spent: Credits;
  granted: Credits;
  /** `null` for a user never seen before. */
  updatedAt: Timestamp | null;
}

export interface Grant {
  grantId: string;
  balance: Balance;
}

export interface Price {
  operation: OperationName;
  unitCost: Credits;
}

export interface Prices {
  operations: Price[];
}

export type LedgerEntryType = "grant" | "reserve" | "capture" | "confirm" | "release" | "expire" | "refund";

export interface LedgerEntry {
  id: string;
  type: LedgerEntryType;
  amount: Credits;
  reservationId: string | null;
  operation: string | null;
  description: string | null;
  /** Why (grants, debits and refunds: e.g. `purchase`, `signup`); `null` otherwise. */
  reason: string | null;
  /** Who did it (the caller's `sub`: an operator, the app server's client id, `stripe`); `null` when not recorded. */
  actor: string | null;
  at: Timestamp;
}

export interface HistoryPage {
  items: LedgerEntry[];
  /** Pass as `cursor` for the next page; `null` on the last page. */
  nextCursor: string | null;
}

/** Shape depends on `type` (overview, health, usage, top-users, models, dashboard). */
export type Monitoring = Record<string, unknown>;

export type MonitoringType = "overview" | "health" | "usage" | "top-users" | "models" | "dashboard";
export type MonitoringPeriod = "hour" | "day" | "week" | "month";

export interface SweepReport {
  expired: number;
  alreadySettled: number;
  /** Holds due when listed and extended since (not due any more). */
  extended: number;
  remaining: number;
  errors: number;
  scanned: number;
  durationMs: number;
}

/** What providers send to `POST /v1/webhooks/{provider}` (other fields are ignored). */
export interface WebhookPayload {
  task_id?: string;
  /** Accepted for `task_id` (BFL sends `id`). */
  id?: string;
  status: string;
  units?: number | null;
  [extra: string]: unknown;
}

export interface WebhookAnswer {
  result: "confirmed" | "released" | "ignored" | "duplicate" | "parked";
  lateSuccess?: boolean;
  reservationId?: string;
}

export type ProblemCode =
  | "validation_error"
  | "unknown_operation"
  | "unauthorized"
  | "insufficient_credits"
  | "forbidden"
  | "reservation_not_found"
  | "reservation_not_pending"
  | "reservation_expired"
  | "task_already_linked"
  | "too_many_open_holds"
  | "payload_too_large"
  | "idempotency_key_reused"
  | "unavailable"
  | "internal"
  | "not_found";

/** An RFC 9457 problem (`application/problem+json`), with every code's extra members. */
export interface Problem {
  /** `urn:credits:error:<code>`. */
  type: string;
  title: string;
  /** The HTTP status. */
  status: number;
  code: ProblemCode;
  detail: string;
  requestId: string;
  /** validation_error: the offending field. */
  field?: string;
  /** insufficient_credits */
  available?: Credits;
  /** insufficient_credits */
  required?: Credits;
  /** insufficient_credits: required − available. */
  shortfall?: Credits;
  /** reservation_not_pending: the reservation's current status. */
  reservationStatus?: ReservationStatus;
  /** too_many_open_holds: the user's pending holds. */
  openHolds?: number;
  /** too_many_open_holds: the most pending holds a user may have. */
  limit?: number;
  /**
   * unavailable: `true` when the change is known to be applied but its result
   * could not be read (retry with the same Idempotency-Key to read it); absent:
   * it may or may not have been applied.
   */
  applied?: boolean;
}

export type ValidationProblem = Problem & { code: "validation_error"; status: 400; field: string };
export type UnknownOperationProblem = Problem & { code: "unknown_operation"; status: 400 };
export type UnauthorizedProblem = Problem & { code: "unauthorized"; status: 401 };
export type InsufficientCreditsProblem = Problem & {
  code: "insufficient_credits";
  status: 402;
  available: Credits;
  required: Credits;
  shortfall: Credits;
};
export type ForbiddenProblem = Problem & { code: "forbidden"; status: 403 };
export type ReservationNotFoundProblem = Problem & { code: "reservation_not_found"; status: 404 };
export type ReservationNotPendingProblem = Problem & {
  code: "reservation_not_pending";
  status: 409;
  reservationStatus: ReservationStatus;
};
export type ReservationExpiredProblem = Problem & { code: "reservation_expired"; status: 409 };
export type TaskAlreadyLinkedProblem = Problem & { code: "task_already_linked"; status: 409 };
export type TooManyOpenHoldsProblem = Problem & {
  code: "too_many_open_holds";
  status: 409;
  openHolds: number;
  limit: number;
};
export type PayloadTooLargeProblem = Problem & { code: "payload_too_large"; status: 413 };
export type IdempotencyKeyReusedProblem = Problem & { code: "idempotency_key_reused"; status: 422 };
export type InternalProblem = Problem & { code: "internal"; status: 500 };
export type UnavailableProblem = Problem & { code: "unavailable"; status: 503 };
