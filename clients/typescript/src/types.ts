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

export type GrantReason =
  | "ad_reward"
  | "purchase"
  | "promo"
  | "plan_refill"
  | "adjustment"
  | "signup"
  /** Stripe gave back what a dispute took when the dispute was closed won. */
  | "dispute_won";

export interface GrantRequest {
  amount: Credits;
  reason: GrantReason;
  description?: string | null;
  /**
   * The lot's burn priority, 0–100 (lower burns first). `null` or absent:
   * by reason — `promo`, `ad_reward`, `signup` 10, `plan_refill` 20,
   * `purchase`, `adjustment`, `dispute_won` 50.
   */
  priority?: number | null;
  /**
   * When the lot's unheld credits expire: RFC 3339 with a time zone, in the
   * future (`adminGrant` also takes a `Date`). `null` or absent: never.
   */
  expiresAt?: Timestamp | null;
}

export type DebitReason = "chargeback" | "refund" | "adjustment";

export interface DebitRequest {
  /** 1–1,000,000,000: the credits to take back from `available`. */
  amount: Credits;
  reason: DebitReason;
  /** ≤ 500 characters, shown in history. */
  description?: string | null;
  /**
   * `true`: take what is available when that is less than `amount` (maybe
   * 0; the debit's `amount` says how much). `false`, `null` or absent: not
   * enough available → 402 `insufficient_credits`, nothing taken.
   */
  partial?: boolean | null;
}

/** What a hold or a debit took from one lot. */
export interface LotPart {
  priority: number;
  /** `null`: the lot never expires. */
  expiresAt: Timestamp | null;
  amount: Credits;
}

/** One live lot of a balance (credits remaining or held). */
export interface LotView {
  /** 0–100; lower burns first. */
  priority: number;
  /** `null`: the lot never expires. */
  expiresAt: Timestamp | null;
  /** The lot's available part. */
  remaining: Credits;
  /** The lot's held part. */
  reserved: Credits;
}

/** The unheld credits of the soonest-expiring lot that has any. */
export interface NextExpiry {
  amount: Credits;
  at: Timestamp;
}

export type PlanPeriod = "day" | "week" | "month";

export interface PlanRequest {
  /** The plan's name: 1–64 characters, no control characters. */
  plan: string;
  /** Credits granted each period, 1–1,000,000,000. */
  allowance: Credits;
  /** UTC calendar units counted from `anchor`. */
  period: PlanPeriod;
  /** Unused credits carried into the next period, at most (0–1,000,000,000); `null` or absent: 0. */
  rollover?: Credits | null;
  /**
   * The start of the first period: RFC 3339 with a time zone
   * (`adminSetPlan` also takes a `Date`). `null` or absent: now for a
   * user's first plan; the same plan set again keeps its anchor.
   */
  anchor?: Timestamp | null;
}

/**
 * A user's plan as the balance shows it: `allowance` credits each period
 * (a `plan_refill` lot that expires at the period's end), up to `rollover`
 * unused ones carried into the next. Not in `schemaFields`: openapi.yaml
 * declares `Balance.plan` as a bare object so far.
 */
export interface Plan {
  plan: string;
  allowance: Credits;
  period: PlanPeriod;
  rollover: Credits;
  /** Where the periods are counted from. */
  anchor: Timestamp;
  currentPeriodStart: Timestamp | null;
  currentPeriodEnd: Timestamp | null;
  /** When an ended plan stops (the end of the period it was ended in); `null` while it goes on. */
  endsAt: Timestamp | null;
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
  /** What the hold took from which lot, in burn order. */
  lots: LotPart[];
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

/** `available + reserved + spent + expired + debited == granted`, always. */
export interface Balance {
  userId: UserId;
  available: Credits;
  reserved: Credits;
  spent: Credits;
  /** Credits of lots that expired unheld (or came back to an expired lot). */
  expired: Credits;
  /** Credits taken back by debits (`adminDebit`). */
  debited: Credits;
  granted: Credits;
  /** Every live lot (credits remaining or held), in burn order. */
  lots: LotView[];
  /** The unheld credits of the lot that expires next, and when; `null` when no unheld credit expires. */
  nextExpiry: NextExpiry | null;
  /** The user's plan; `null` without one. */
  plan: Plan | null;
  /** `null` for a user never seen before. */
  updatedAt: Timestamp | null;
}

export interface Grant {
  grantId: string;
  balance: Balance;
}

/** Credits taken back: `amount` of the `requested` (less only for a partial debit). */
export interface Debit {
  debitId: string;
  /** What was taken (≤ `requested`). */
  amount: Credits;
  requested: Credits;
  /** What was taken from which lot, in burn order. */
  lots: LotPart[];
  balance: Balance;
}

export interface Price {
  operation: OperationName;
  unitCost: Credits;
}

/** A credit pack sold through Stripe Checkout (`metadata.pack`). */
export interface Pack {
  pack: string;
  credits: Credits;
  /** Days the credits last after the Checkout Session was created; `null`: they never expire. */
  expiresInDays: number | null;
  /**
   * What it costs, in the currency's minor units (`900`: $9.00), when the
   * catalog names it: only a Checkout Session with this `amount_total` and
   * `currency` buys the pack.
   */
  amountTotal?: number;
  /** Three lower-case letters, as Stripe writes them (`"usd"`); with `amountTotal`. */
  currency?: string;
}

export interface Prices {
  operations: Price[];
  packs: Pack[];
}

export type LedgerEntryType =
  | "grant"
  | "reserve"
  | "capture"
  | "confirm"
  | "release"
  | "expire"
  | "refund"
  | "debit"
  | "grant_expired";

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

/** `adminSetSettings`'s request. */
export interface SettingsRequest {
  /**
   * `balance.low` below this many available credits (0–1,000,000,000; 0
   * turns it off for the user); `null` goes back to the deployment's
   * default (`CREDITS_LOW_BALANCE_THRESHOLD`). Required: `{}` is refused.
   */
  lowBalanceThreshold: Credits | null;
}

/** A user's settings. */
export interface Settings {
  userId: UserId;
  /** The user's own threshold; `null` when the deployment's default applies. */
  lowBalanceThreshold: Credits | null;
}

// ---- auto-recharge --------------------------------------------------------

/** `PUT /v1/auto-recharge`. */
export interface AutoRechargeRequest {
  /** A pack of the catalog with a price (`amountTotal` and `currency`). */
  pack: string;
  /** Recharge when `available` falls below this (1–1000000000): the user's `lowBalanceThreshold`. */
  threshold: Credits;
  /** Recharges at most this many times a calendar month, UTC (1–100). */
  monthlyLimit: number;
}

/** A recharge: one charge of the saved card for a pack. */
export interface Recharge {
  id: string;
  status: "pending" | "succeeded" | "failed";
  /** Stripe's error code of a failed recharge. */
  code: string | null;
  paymentIntent: string | null;
  credits: Credits;
  at: Timestamp;
}

/** `GET /v1/auto-recharge`; never set: `enabled` false, `pack` and `monthlyLimit` `null`. */
export interface AutoRecharge {
  userId: UserId;
  enabled: boolean;
  pack: string | null;
  /** The user's `lowBalanceThreshold`; `null` when the deployment's default applies. */
  threshold: Credits | null;
  monthlyLimit: number | null;
  rechargesThisMonth: number;
  /** A paid Checkout Session saved a card to charge. */
  cardSaved: boolean;
  /** Why it turned itself off (three failed recharges in a row). */
  disabledReason: string | null;
  lastRecharge: Recharge | null;
}

// ---- outgoing events ------------------------------------------------------

/** The type of an outgoing event (`detail-type` on EventBridge). */
export type EventType =
  | "hold.confirmed"
  | "hold.released"
  | "hold.expired"
  | "hold.late_success"
  | "grant.created"
  | "grant.expiring"
  | "grant.expired"
  | "debit.created"
  | "refund.created"
  | "balance.low"
  | "balance.depleted"
  | "balance.recovered";

/** `adminCreateWebhookEndpoint`'s request. */
export interface WebhookEndpointRequest {
  /**
   * Where events are POSTed: an absolute `https://` URL to a public host
   * (no private, loopback or reserved IP address; a name is checked at
   * every delivery) and no user name or password, ≤ 2048 characters (the
   * local dev server also takes loopback, and `http://` to `localhost`,
   * `127.0.0.1` or `[::1]`).
   */
  url: string;
  /** The event types to send; absent, `null` or empty: every type. At most 12. */
  events?: EventType[] | null;
  /** What the endpoint is for: ≤ 200 characters, no control characters. */
  description?: string | null;
}

export type WebhookEndpointStatus = "enabled" | "disabled";

/** A webhook endpoint, as every answer but the one that created it shows it (no secret). */
export interface WebhookEndpoint {
  id: string;
  url: string;
  /** The event types it gets; empty: every type. */
  events: EventType[];
  description: string | null;
  /** `disabled`: it failed every attempt for 5 days and gets no more deliveries. */
  status: WebhookEndpointStatus;
  createdAt: Timestamp;
  /** Since when every attempt failed; `null` once any succeeds. */
  failingSince: Timestamp | null;
  /** The last success after a failing streak; `null` before the first streak ended. */
  lastSuccessAt: Timestamp | null;
  disabledAt: Timestamp | null;
  /** Why it was disabled, in words. */
  disabledReason: string | null;
}

/** A new endpoint with its signing secret, shown in this answer only. */
export interface WebhookEndpointCreated extends WebhookEndpoint {
  /** `whsec_…`: the key deliveries are signed with (see `verifyWebhook`). Never shown again. */
  secret: string;
}

export interface WebhookEndpointList {
  /** Every endpoint (at most 20). */
  items: WebhookEndpoint[];
}

/**
 * `pending`: being attempted or waiting for its next attempt; `delivered`:
 * an attempt got a 2xx; `failed`: every attempt of the schedule failed;
 * `dropped`: not attempted again (the endpoint was disabled or deleted).
 */
export type WebhookDeliveryStatus = "pending" | "delivered" | "failed" | "dropped";

/** One event sent (or to be sent) to one endpoint, with its attempts. */
export interface WebhookDelivery {
  /** The event's id (`webhook-id`). */
  eventId: string;
  eventType: EventType;
  userId: UserId;
  status: WebhookDeliveryStatus;
  /** Every attempt so far, oldest first. */
  attempts: WebhookAttempt[];
  createdAt: Timestamp;
  /** When the next attempt is due (`pending` only); `null` otherwise. */
  nextAttemptAt: Timestamp | null;
}

export interface WebhookAttempt {
  /** 1 for the first attempt. */
  attempt: number;
  at: Timestamp;
  /** The endpoint's HTTP status; `null` when it gave none (see `error`). */
  responseCode: number | null;
  /** Why there was no answer (`timed out`, `could not connect`, …); `null` when there was one. */
  error: string | null;
  durationMs: number;
}

export interface WebhookDeliveryPage {
  /** Newest first. */
  items: WebhookDelivery[];
  /** Pass as `cursor` for the next page; `null` on the last page. */
  nextCursor: string | null;
}

/**
 * An outgoing event: a webhook's body and the `detail` of the EventBridge
 * event. `data` depends on `type` (see `CreditsEvent`). Fields may be
 * added: ignore those you do not know.
 */
export interface EventEnvelope<K extends EventType = EventType, D = unknown> {
  /** `evt_` + 32 hex digits, derived from the change: deduplicate by it (the `webhook-id`). */
  id: string;
  type: K;
  /** When the change happened (not when it was sent). */
  occurredAt: Timestamp;
  userId: UserId;
  data: D;
}

/** The grant (`grant.created`). */
export interface GrantCreatedData {
  /** The grant's id (a plan refill's history line id). */
  grantId: string;
  amount: Credits;
  reason: GrantReason;
  description: string | null;
  /** Who granted (the admin's `sub`; `plan` for a plan's refill); `null` on grants recorded without one. */
  actor: string | null;
  /** The lot's priority (burn order), 0–100. */
  priority: number;
  /** When the lot's credits expire; `null` for never. */
  expiresAt: Timestamp | null;
  grantedAt: Timestamp;
}

/** The lot whose credits expire soon (`grant.expiring`). */
export interface GrantExpiringData {
  priority: number;
  expiresAt: Timestamp;
  /** The lot's unheld credits, lost at `expiresAt` unless spent or held before. */
  amount: Credits;
}

/** The credits that expired (`grant.expired`), as the `grant_expired` history line shows them. */
export interface GrantExpiredData {
  /** The history line's id. */
  entryId: string;
  amount: Credits;
  /** Which lots they expired from. */
  lots: LotPart[];
  /** The hold whose credits came back to a lot already expired; `null` for a lot's expiry. */
  reservationId: string | null;
  expiredAt: Timestamp;
}

/** The debit (`debit.created`). */
export interface DebitCreatedData {
  debitId: string;
  /** Credits taken back; less than `requested` only with `partial` (maybe 0). */
  amount: Credits;
  requested: Credits;
  reason: DebitReason;
  description: string | null;
  /** The admin's `sub`. */
  actor: string;
  lots: LotPart[];
  debitedAt: Timestamp;
}

/** Where the balance stands (`balance.low`, `balance.depleted`, `balance.recovered`). */
export interface BalanceEventData {
  /** Available credits after the change. */
  available: Credits;
  /** The user's low-balance threshold in force (0: `balance.low` off). */
  threshold: number;
}

/** `hold.late_success`: the reservation as it is now, or only its id once it is no longer kept. */
export type HoldLateSuccessData = ReservationWithEvents | { reservationId: string };

/** Every outgoing event, discriminated by `type` (what `verifyWebhook` returns). */
export type CreditsEvent =
  | EventEnvelope<"hold.confirmed", ReservationWithEvents>
  | EventEnvelope<"hold.released", ReservationWithEvents>
  | EventEnvelope<"hold.expired", ReservationWithEvents>
  | EventEnvelope<"hold.late_success", HoldLateSuccessData>
  | EventEnvelope<"grant.created", GrantCreatedData>
  | EventEnvelope<"grant.expiring", GrantExpiringData>
  | EventEnvelope<"grant.expired", GrantExpiredData>
  | EventEnvelope<"debit.created", DebitCreatedData>
  | EventEnvelope<"refund.created", ReservationWithEvents>
  | EventEnvelope<"balance.low", BalanceEventData>
  | EventEnvelope<"balance.depleted", BalanceEventData>
  | EventEnvelope<"balance.recovered", BalanceEventData>;

/** The event of type `K`, e.g. `EventOf<"grant.created">`. */
export type EventOf<K extends EventType> = Extract<CreditsEvent, { type: K }>;

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
  /** Lot expiries this run wrote down. */
  lotsExpired: number;
  /** Plan allowances this run granted. */
  planRefills: number;
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

/**
 * A Stripe event as Stripe sends it to `POST /v1/webhooks/stripe` (only
 * these fields are read; others are ignored).
 */
export interface StripeEvent {
  /** The event's id (`evt_…`); a redelivery carries the same. */
  id: string;
  /** `checkout.session.completed`, `checkout.session.async_payment_succeeded`, `charge.refunded`, `charge.dispute.created`, `charge.dispute.closed`; others are ignored. */
  type?: string;
  /** The event's mode: only events of the service's `CREDITS_STRIPE_LIVEMODE` are acted on. */
  livemode?: boolean;
  /** The Checkout Session, Charge or Dispute the event is about. */
  data?: { object?: Record<string, unknown>; [extra: string]: unknown };
  [extra: string]: unknown;
}

export type StripeResult = "granted" | "taken_back" | "duplicate" | "parked" | "ignored";

/** What a verified Stripe event did (always answered 200). */
export interface StripeAnswer {
  result: StripeResult;
  /** Why an event was `ignored` (e.g. `event_type_not_handled`, `no_user`, `amount_mismatch`, `other_mode`). */
  reason?: string;
  /** The purchase's grant, or a won dispute's. */
  grantId?: string;
  /** Credits granted, or taken back by this event. */
  credits?: number;
  /** Of the credits to take back, those the user no longer had. */
  unrecoverable?: number;
}

export type ProblemCode =
  | "validation_error"
  | "unknown_operation"
  | "unauthorized"
  | "insufficient_credits"
  | "forbidden"
  | "reservation_not_found"
  | "endpoint_not_found"
  | "reservation_not_pending"
  | "reservation_expired"
  | "task_already_linked"
  | "too_many_open_holds"
  | "too_many_lots"
  | "too_many_endpoints"
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
  /**
   * too_many_open_holds: the most pending holds a user may have; too_many_lots:
   * the most live lots; too_many_endpoints: the most webhook endpoints (20).
   */
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
export type TooManyLotsProblem = Problem & { code: "too_many_lots"; status: 409; limit: number };
export type EndpointNotFoundProblem = Problem & { code: "endpoint_not_found"; status: 404 };
export type TooManyEndpointsProblem = Problem & { code: "too_many_endpoints"; status: 409; limit: number };
export type PayloadTooLargeProblem = Problem & { code: "payload_too_large"; status: 413 };
export type IdempotencyKeyReusedProblem = Problem & { code: "idempotency_key_reused"; status: 422 };
export type InternalProblem = Problem & { code: "internal"; status: 500 };
export type UnavailableProblem = Problem & { code: "unavailable"; status: 503 };
