// The fields the client's types declare, per schema of openapi.yaml
// (components.schemas), and the values of its enums. The compiler checks
// each list against the TypeScript type (a field the type has but the list
// lacks, or the other way round, fails `tsc`); test/spec.test.mjs checks each
// list against the spec (a property the spec has but the list lacks fails).

import type * as T from "./types.js";

/** The keys of T without index signatures. */
type KnownKeys<X> = keyof {
  [K in keyof X as string extends K ? never : number extends K ? never : symbol extends K ? never : K]: X[K];
};
type Missing<X, K extends readonly PropertyKey[]> = Exclude<KnownKeys<X>, K[number]>;

/** Every field of X, no more, no less (a second argument naming the missing field is demanded otherwise). */
function fieldsOf<X>() {
  return <const K extends readonly (KnownKeys<X> & string)[]>(
    keys: K,
    ..._missing: [Missing<X, K>] extends [never] ? [] : [missingField: Missing<X, K>]
  ): readonly string[] => keys;
}

/** Fields that X declares (X may declare more: problem variants carry the union of all extras). */
function someFieldsOf<X>() {
  return <const K extends readonly (KnownKeys<X> & string)[]>(keys: K): readonly string[] => keys;
}

/** A schema that is not an object (a scalar or an enum): no fields. */
function scalar<_X>(): readonly string[] {
  return [];
}

/** Every member of the union U, no more, no less. */
function valuesOf<U extends string>() {
  return <const V extends readonly U[]>(
    values: V,
    ..._missing: [Exclude<U, V[number]>] extends [never] ? [] : [missingValue: Exclude<U, V[number]>]
  ): readonly string[] => values;
}

const problem = [...fieldsOf<T.Problem>()(
  [
    "type",
    "title",
    "status",
    "code",
    "detail",
    "requestId",
    "field",
    "available",
    "required",
    "shortfall",
    "reservationStatus",
    "openHolds",
    "limit",
    "applied",
  ],
)];
const problemBase = ["type", "title", "status", "code", "detail", "requestId"] as const;

export const schemaFields: Readonly<Record<string, readonly string[]>> = {
  Credits: scalar<T.Credits>(),
  UserId: scalar<T.UserId>(),
  CreditsUserId: scalar<T.CreditsUserId>(),
  IdempotencyKey: scalar<T.IdempotencyKey>(),
  Timestamp: scalar<T.Timestamp>(),
  OperationName: scalar<T.OperationName>(),
  Provider: scalar<T.Provider>(),
  ReservationStatus: scalar<T.ReservationStatus>(),
  Actor: scalar<T.Actor>(),
  ReserveRequest: fieldsOf<T.ReserveRequest>()(["operation", "units", "taskId", "provider", "description", "ttlSeconds"]),
  ConfirmRequest: fieldsOf<T.ConfirmRequest>()(["units", "final"]),
  ExtendRequest: fieldsOf<T.ExtendRequest>()(["ttlSeconds"]),
  ReasonRequest: fieldsOf<T.ReasonRequest>()(["reason"]),
  TaskRequest: fieldsOf<T.TaskRequest>()(["taskId", "provider"]),
  GrantRequest: fieldsOf<T.GrantRequest>()(["amount", "reason", "description", "priority", "expiresAt"]),
  PlanRequest: fieldsOf<T.PlanRequest>()(["plan", "allowance", "period", "rollover", "anchor"]),
  DebitRequest: fieldsOf<T.DebitRequest>()(["amount", "reason", "description", "partial"]),
  LotPart: fieldsOf<T.LotPart>()(["priority", "expiresAt", "amount"]),
  LotView: fieldsOf<T.LotView>()(["priority", "expiresAt", "remaining", "reserved"]),
  NextExpiry: fieldsOf<T.NextExpiry>()(["amount", "at"]),
  PlanView: fieldsOf<T.Plan>()([
    "plan",
    "allowance",
    "period",
    "rollover",
    "anchor",
    "currentPeriodStart",
    "currentPeriodEnd",
    "endsAt",
  ]),
  Reservation: fieldsOf<T.Reservation>()([
    "reservationId",
    "userId",
    "operation",
    "units",
    "unitCost",
    "amount",
    "status",
    "taskId",
    "provider",
    "description",
    "createdAt",
    "expiresAt",
    "capturedUnits",
    "capturedAmount",
    "releasedAmount",
    "settledAt",
    "settledBy",
    "lots",
  ]),
  ReservationWithEvents: fieldsOf<T.ReservationWithEvents>()([
    "reservationId",
    "userId",
    "operation",
    "units",
    "unitCost",
    "amount",
    "status",
    "taskId",
    "provider",
    "description",
    "createdAt",
    "expiresAt",
    "capturedUnits",
    "capturedAmount",
    "releasedAmount",
    "settledAt",
    "settledBy",
    "lots",
    "events",
  ]),
  ReservationEvent: fieldsOf<T.ReservationEvent>()(["type", "at", "by", "amount"]),
  Balance: fieldsOf<T.Balance>()([
    "userId",
    "available",
    "reserved",
    "spent",
    "expired",
    "debited",
    "granted",
    "lots",
    "nextExpiry",
    "plan",
    "updatedAt",
  ]),
  Grant: fieldsOf<T.Grant>()(["grantId", "balance"]),
  Debit: fieldsOf<T.Debit>()(["debitId", "amount", "requested", "lots", "balance"]),
  Price: fieldsOf<T.Price>()(["operation", "unitCost"]),
  Pack: fieldsOf<T.Pack>()(["pack", "credits", "expiresInDays", "amountTotal", "currency"]),
  Prices: fieldsOf<T.Prices>()(["operations", "packs"]),
  LedgerEntry: fieldsOf<T.LedgerEntry>()([
    "id",
    "type",
    "amount",
    "reservationId",
    "operation",
    "description",
    "reason",
    "actor",
    "at",
  ]),
  HistoryPage: fieldsOf<T.HistoryPage>()(["items", "nextCursor"]),
  SettingsRequest: fieldsOf<T.SettingsRequest>()(["lowBalanceThreshold"]),
  Settings: fieldsOf<T.Settings>()(["userId", "lowBalanceThreshold"]),
  WebhookEndpointRequest: fieldsOf<T.WebhookEndpointRequest>()(["url", "events", "description"]),
  WebhookEndpoint: fieldsOf<T.WebhookEndpoint>()([
    "id",
    "url",
    "events",
    "description",
    "status",
    "createdAt",
    "failingSince",
    "lastSuccessAt",
    "disabledAt",
    "disabledReason",
  ]),
  WebhookEndpointCreated: fieldsOf<T.WebhookEndpointCreated>()([
    "id",
    "url",
    "events",
    "description",
    "status",
    "createdAt",
    "failingSince",
    "lastSuccessAt",
    "disabledAt",
    "disabledReason",
    "secret",
  ]),
  WebhookEndpointList: fieldsOf<T.WebhookEndpointList>()(["items"]),
  WebhookDelivery: fieldsOf<T.WebhookDelivery>()([
    "eventId",
    "eventType",
    "userId",
    "status",
    "attempts",
    "createdAt",
    "nextAttemptAt",
  ]),
  WebhookAttempt: fieldsOf<T.WebhookAttempt>()(["attempt", "at", "responseCode", "error", "durationMs"]),
  WebhookDeliveryPage: fieldsOf<T.WebhookDeliveryPage>()(["items", "nextCursor"]),
  EventType: scalar<T.EventType>(),
  EventEnvelope: fieldsOf<T.EventEnvelope>()(["id", "type", "occurredAt", "userId", "data"]),
  GrantCreatedData: fieldsOf<T.GrantCreatedData>()([
    "grantId",
    "amount",
    "reason",
    "description",
    "actor",
    "priority",
    "expiresAt",
    "grantedAt",
  ]),
  GrantExpiringData: fieldsOf<T.GrantExpiringData>()(["priority", "expiresAt", "amount"]),
  GrantExpiredData: fieldsOf<T.GrantExpiredData>()(["entryId", "amount", "lots", "reservationId", "expiredAt"]),
  DebitCreatedData: fieldsOf<T.DebitCreatedData>()([
    "debitId",
    "amount",
    "requested",
    "reason",
    "description",
    "actor",
    "lots",
    "debitedAt",
  ]),
  BalanceEventData: fieldsOf<T.BalanceEventData>()(["available", "threshold"]),
  Monitoring: fieldsOf<T.Monitoring>()([]),
  SweepReport: fieldsOf<T.SweepReport>()([
    "expired",
    "alreadySettled",
    "extended",
    "remaining",
    "lotsExpired",
    "planRefills",
    "errors",
    "scanned",
    "durationMs",
  ]),
  WebhookPayload: fieldsOf<T.WebhookPayload>()(["task_id", "id", "status", "units"]),
  WebhookAnswer: fieldsOf<T.WebhookAnswer>()(["result", "lateSuccess", "reservationId"]),
  StripeEvent: fieldsOf<T.StripeEvent>()(["id", "type", "livemode", "data"]),
  StripeAnswer: fieldsOf<T.StripeAnswer>()(["result", "reason", "grantId", "credits", "unrecoverable"]),
  Problem: someFieldsOf<T.Problem>()(problemBase),
  ValidationProblem: someFieldsOf<T.ValidationProblem>()([...problemBase, "field"]),
  UnknownOperationProblem: someFieldsOf<T.UnknownOperationProblem>()(problemBase),
  UnauthorizedProblem: someFieldsOf<T.UnauthorizedProblem>()(problemBase),
  InsufficientCreditsProblem: someFieldsOf<T.InsufficientCreditsProblem>()([
    ...problemBase,
    "available",
    "required",
    "shortfall",
  ]),
  ForbiddenProblem: someFieldsOf<T.ForbiddenProblem>()(problemBase),
  ReservationNotFoundProblem: someFieldsOf<T.ReservationNotFoundProblem>()(problemBase),
  ReservationNotPendingProblem: someFieldsOf<T.ReservationNotPendingProblem>()([...problemBase, "reservationStatus"]),
  ReservationExpiredProblem: someFieldsOf<T.ReservationExpiredProblem>()(problemBase),
  TaskAlreadyLinkedProblem: someFieldsOf<T.TaskAlreadyLinkedProblem>()(problemBase),
  TooManyOpenHoldsProblem: someFieldsOf<T.TooManyOpenHoldsProblem>()([...problemBase, "openHolds", "limit"]),
  TooManyLotsProblem: someFieldsOf<T.TooManyLotsProblem>()([...problemBase, "limit"]),
  EndpointNotFoundProblem: someFieldsOf<T.EndpointNotFoundProblem>()(problemBase),
  TooManyEndpointsProblem: someFieldsOf<T.TooManyEndpointsProblem>()([...problemBase, "limit"]),
  PayloadTooLargeProblem: someFieldsOf<T.PayloadTooLargeProblem>()(problemBase),
  IdempotencyKeyReusedProblem: someFieldsOf<T.IdempotencyKeyReusedProblem>()(problemBase),
  InternalProblem: someFieldsOf<T.InternalProblem>()(problemBase),
  UnavailableProblem: someFieldsOf<T.UnavailableProblem>()([...problemBase, "applied"]),
};

/** Every field any problem may carry (the union of the variants' extras). */
export const problemFields: readonly string[] = problem;

/**
 * Enum values the client's unions declare, keyed by where the spec declares
 * them: `Schema` for an enum schema, `Schema.property` for an enum property.
 */
export const enumValues: Readonly<Record<string, readonly string[]>> = {
  Provider: valuesOf<T.Provider>()(["bfl", "generic"]),
  ReservationStatus: valuesOf<T.ReservationStatus>()(["pending", "confirmed", "released", "expired", "refunded"]),
  Actor: valuesOf<T.Actor>()(["server", "webhook", "cleanup", "admin"]),
  "GrantRequest.reason": valuesOf<T.GrantReason>()([
    "ad_reward",
    "purchase",
    "promo",
    "plan_refill",
    "adjustment",
    "signup",
    "dispute_won",
  ]),
  "PlanRequest.period": valuesOf<T.PlanPeriod>()(["day", "week", "month"]),
  "PlanView.period": valuesOf<T.PlanPeriod>()(["day", "week", "month"]),
  "DebitRequest.reason": valuesOf<T.DebitReason>()(["chargeback", "refund", "adjustment"]),
  "ReservationEvent.type": valuesOf<T.ReservationEventType>()([
    "reserved",
    "captured",
    "confirmed",
    "released",
    "expired",
    "refunded",
    "task_linked",
    "extended",
  ]),
  "LedgerEntry.type": valuesOf<T.LedgerEntryType>()([
    "grant",
    "reserve",
    "capture",
    "confirm",
    "release",
    "expire",
    "refund",
    "debit",
    "grant_expired",
  ]),
  "WebhookAnswer.result": valuesOf<T.WebhookAnswer["result"]>()([
    "confirmed",
    "released",
    "ignored",
    "duplicate",
    "parked",
  ]),
  "StripeAnswer.result": valuesOf<T.StripeResult>()(["granted", "taken_back", "duplicate", "parked", "ignored"]),
  EventType: valuesOf<T.EventType>()([
    "hold.confirmed",
    "hold.released",
    "hold.expired",
    "hold.late_success",
    "grant.created",
    "grant.expiring",
    "grant.expired",
    "debit.created",
    "refund.created",
    "balance.low",
    "balance.depleted",
    "balance.recovered",
  ]),
  "WebhookEndpoint.status": valuesOf<T.WebhookEndpointStatus>()(["enabled", "disabled"]),
  "WebhookDelivery.status": valuesOf<T.WebhookDeliveryStatus>()(["pending", "delivered", "failed", "dropped"]),
  "GrantCreatedData.reason": valuesOf<T.GrantReason>()([
    "ad_reward",
    "purchase",
    "promo",
    "plan_refill",
    "adjustment",
    "signup",
    "dispute_won",
  ]),
  "DebitCreatedData.reason": valuesOf<T.DebitReason>()(["chargeback", "refund", "adjustment"]),
  "Problem.code": valuesOf<T.ProblemCode>()([
    "validation_error",
    "unknown_operation",
    "unauthorized",
    "insufficient_credits",
    "forbidden",
    "reservation_not_found",
    "endpoint_not_found",
    "reservation_not_pending",
    "reservation_expired",
    "task_already_linked",
    "too_many_open_holds",
    "too_many_lots",
    "too_many_endpoints",
    "payload_too_large",
    "idempotency_key_reused",
    "unavailable",
    "internal",
    "not_found",
  ]),
};
