import { clientCredentials, type ClientCredentialsConfig, type TokenProvider } from "./auth.js";
import type {
  AutoRecharge,
  AutoRechargeRequest,
  Balance,
  ConfirmRequest,
  Debit,
  DebitRequest,
  Grant,
  GrantRequest,
  HistoryPage,
  Language,
  Monitoring,
  MonitoringPeriod,
  MonitoringType,
  PlanRequest,
  Prices,
  Provider,
  Reservation,
  ReservationWithEvents,
  ReserveRequest,
  Settings,
  SettingsRequest,
  SweepReport,
  Timestamp,
  WebhookDeliveryPage,
  WebhookEndpoint,
  WebhookEndpointCreated,
  WebhookEndpointList,
  WebhookEndpointRequest,
} from "./types.js";
import { send, USER_HEADER, type RequestSpec, type ResponseMeta, type RetryOptions } from "./transport.js";
import {
  runWithCredits,
  type JobResult,
  type Outputs,
  type PerOutputJobResult,
  type WithCreditsOptions,
  type WithCreditsResult,
} from "./with-credits.js";

export interface CreditsClientOptions {
  /** The API's base URL, e.g. `http://127.0.0.1:3000`. */
  baseUrl: string;
  /**
   * The bearer credential: a token, or a function giving one per request
   * (it is asked again with `{ rejected }` after a 401, and the request is
   * retried once with the new token). On the app's back end this is the
   * server credential (`scope` `credits/server`, a listed `client_id`); in
   * the browser it is the user's own token, which can only read.
   */
  token?: string | TokenProvider;
  /**
   * The server credential from the OAuth client-credentials grant (instead
   * of `token`): fetched, cached until shortly before it expires, shared by
   * concurrent calls and by every client derived with `forUser`/`with`.
   */
  clientCredentials?: ClientCredentialsConfig;
  /**
   * The user a server credential acts for, sent as `Credits-User` on every
   * user route and hold route (see `forUser`). Leave unset with a user token.
   */
  user?: string;
  /** Language of problem `detail`s. */
  acceptLanguage?: Language;
  retry?: RetryOptions;
  /** The fetch to use (default: the platform's `globalThis.fetch`). */
  fetch?: typeof fetch;
  /** Extra headers sent with every request. */
  headers?: Record<string, string>;
}

export interface CallOptions {
  signal?: AbortSignal;
  /**
   * The user this call acts for (`Credits-User`), over the client's bound
   * user. Needed with a server credential on every user route and hold
   * route (`getBalance`, `listTransactions`, `reserve`, `withCredits`,
   * `getReservation`, `confirm`, `capture`, `extend`, `release`,
   * `linkTask`): a hold of anyone else answers 404. An admin credential
   * may leave it out on a hold's routes.
   */
  user?: string;
}

export interface ReserveOptions extends CallOptions {
  /** Makes the reserve safe to retry; generated (crypto.randomUUID) when absent, reused on retries. */
  idempotencyKey?: string;
}

export interface CaptureOptions extends CallOptions {
  /**
   * Required: this capture's identity on the hold, 1–128 printable ASCII
   * (derive it from your job and the output, e.g. `job-<id>-out-<n>`). The
   * same key with the same units again — the client's own retry on a 503 or
   * a network error, or yours — answers the hold as it is now and charges
   * nothing more; with other units it is 422 `idempotency_key_reused`.
   */
  idempotencyKey: string;
}

export interface GrantOptions extends CallOptions {
  /** The grant's identity: the same key credits once. Generated when absent, reused on retries. */
  idempotencyKey?: string;
}

/** `adminGrant`'s request: `expiresAt` may also be a `Date` (sent as RFC 3339 UTC). */
export type GrantInput = Omit<GrantRequest, "expiresAt"> & { expiresAt?: Timestamp | Date | null };

/** `adminSetPlan`'s request: `anchor` may also be a `Date` (sent as RFC 3339 UTC). */
export type PlanInput = Omit<PlanRequest, "anchor"> & { anchor?: Timestamp | Date | null };

export interface DebitOptions extends CallOptions {
  /**
   * The debit's identity: the same key takes credits back once (a repeat
   * answers the same debit). Generated when absent, reused on retries, and
   * carried by a `CreditsError` so you can retry later; pass your own
   * (e.g. the refund's or the dispute's id) to make your own retries safe.
   */
  idempotencyKey?: string;
}

export interface PageQuery extends CallOptions {
  limit?: number;
  cursor?: string;
}

export interface MonitoringQuery extends CallOptions {
  type?: MonitoringType;
  period?: MonitoringPeriod;
  limit?: number;
}

const seg = (value: string) => encodeURIComponent(value);

export class CreditsClient {
  readonly baseUrl: string;
  readonly acceptLanguage: Language | undefined;
  /** The user this client acts for (`Credits-User`), if bound. */
  readonly user: string | undefined;
  private readonly token: string | TokenProvider | undefined;
  private readonly fetchImpl: typeof fetch;
  private readonly retry: Required<RetryOptions>;
  private readonly headers: Record<string, string>;

  constructor(options: CreditsClientOptions) {
    if (options.token !== undefined && options.clientCredentials !== undefined) {
      throw new TypeError("give either token or clientCredentials, not both");
    }
    if (options.user !== undefined) checkUser(options.user);
    this.baseUrl = options.baseUrl.replace(/\/+$/, "");
    this.acceptLanguage = options.acceptLanguage;
    this.user = options.user;
    const platformFetch = globalThis.fetch;
    this.fetchImpl = options.fetch ?? ((input, init) => platformFetch(input, init));
    this.token = options.clientCredentials
      ? clientCredentials({ fetch: this.fetchImpl, ...options.clientCredentials })
      : options.token;
    this.retry = {
      maxAttempts: Math.max(1, Math.floor(options.retry?.maxAttempts ?? 3)),
      baseDelayMs: options.retry?.baseDelayMs ?? 200,
      maxDelayMs: options.retry?.maxDelayMs ?? 10_000,
    };
    this.headers = { ...options.headers };
  }

  /**
   * A copy of this client with other options (e.g. another language). It
   * keeps this client's credential, and so its token cache, unless given
   * another `token` or `clientCredentials`.
   */
  with(options: Partial<CreditsClientOptions>): CreditsClient {
    const inherit = options.token === undefined && options.clientCredentials === undefined;
    return new CreditsClient({
      baseUrl: this.baseUrl,
      ...(inherit && this.token !== undefined && { token: this.token }),
      ...(this.acceptLanguage !== undefined && { acceptLanguage: this.acceptLanguage }),
      ...(this.user !== undefined && { user: this.user }),
      retry: this.retry,
      fetch: this.fetchImpl,
      headers: this.headers,
      ...options,
    });
  }

  /**
   * This client acting for `userId` (the app's server credential, shared
   * token cache): every user route and hold route sends `Credits-User`.
   * Take `userId` from the app's own verified session, never from the request.
   */
  forUser(userId: string): CreditsClient {
    checkUser(userId);
    return this.with({ user: userId });
  }

  // ---- user routes (a user token reads its own; a server names the user) --

  /** `GET /v1/balance` of the user (a server credential names it: `forUser` or `{ user }`). */
  getBalance(options: CallOptions = {}): Promise<Balance> {
    return this.call({
      method: "GET",
      path: "/v1/balance",
      signal: options.signal,
      user: this.userOf(options),
      userScoped: true,
    });
  }

  /** `GET /v1/prices` */
  getPrices(options: CallOptions = {}): Promise<Prices> {
    return this.call({ method: "GET", path: "/v1/prices", signal: options.signal });
  }

  /**
   * `POST /v1/reservations` (server credential, for a user): hold
   * `units × unitCost` credits. Idempotent (a key is generated when absent,
   * reused on retries, and carried by a `CreditsError` so you can retry later).
   */
  async reserve(request: ReserveRequest, options: ReserveOptions = {}): Promise<Reservation> {
    return (await this.reserveWithMeta(request, options)).body;
  }

  /** `reserve`, also telling whether the answer was a replay. */
  reserveWithMeta(request: ReserveRequest, options: ReserveOptions = {}): Promise<{ body: Reservation } & ResponseMeta> {
    return this.send({
      method: "POST",
      path: "/v1/reservations",
      body: request,
      idempotencyKey: options.idempotencyKey ?? crypto.randomUUID(),
      signal: options.signal,
      user: this.userOf(options),
      userScoped: true,
    });
  }

  /** `GET /v1/reservations/{id}`, with its events. */
  getReservation(reservationId: string, options: CallOptions = {}): Promise<ReservationWithEvents> {
    return this.call({
      method: "GET",
      path: `/v1/reservations/${seg(reservationId)}`,
      signal: options.signal,
      user: this.userOf(options),
      userScoped: true,
    });
  }

  /**
   * `POST /v1/reservations/{id}/confirm` (server credential), the final
   * confirm: capture `units` more (default: all still held), return the rest
   * and close the hold. Safe to repeat with the same units. After non-final
   * captures, `{}` closes a hold whose units were all captured; for a capture
   * that keeps the hold open use `capture`.
   */
  confirm(reservationId: string, request: ConfirmRequest = {}, options: CallOptions = {}): Promise<Reservation> {
    return this.call({
      method: "POST",
      path: `/v1/reservations/${seg(reservationId)}/confirm`,
      body: request,
      signal: options.signal,
      user: this.userOf(options),
      userScoped: true,
    });
  }

  /**
   * `POST /v1/reservations/{id}/confirm` with `{"units": units, "final": false}`
   * (server credential): capture `units` now (1 to the units still held) and
   * keep the rest held; the hold stays `pending`. The `idempotencyKey` is
   * required and reused on the client's own retries: the same key and units
   * again charge nothing more (even after the hold closed), other units → 422
   * `idempotency_key_reused`. A hold past `expiresAt` → 409
   * `reservation_expired` (the rest goes back); a settled hold → 409
   * `reservation_not_pending`.
   */
  async capture(reservationId: string, units: number, options: CaptureOptions): Promise<Reservation> {
    return (await this.captureWithMeta(reservationId, units, options)).body;
  }

  /** `capture`, also telling whether the answer was a replay (`Idempotent-Replayed`). */
  async captureWithMeta(
    reservationId: string,
    units: number,
    options: CaptureOptions,
  ): Promise<{ body: Reservation } & ResponseMeta> {
    const key = (options as Partial<CaptureOptions> | undefined)?.idempotencyKey;
    if (typeof key !== "string" || key.length === 0) {
      throw new TypeError("capture needs { idempotencyKey }: the same key makes a retried capture charge once");
    }
    return this.send({
      method: "POST",
      path: `/v1/reservations/${seg(reservationId)}/confirm`,
      body: { units, final: false },
      idempotencyKey: key,
      signal: options.signal,
      user: this.userOf(options),
      userScoped: true,
    });
  }

  /**
   * `POST /v1/reservations/{id}/extend` (server credential): a pending hold's
   * `expiresAt` becomes now + `ttlSeconds` (1–86400, at most 7 days after
   * `createdAt`, else 400 naming `ttlSeconds`). Past `expiresAt` → 409
   * `reservation_expired`; a settled hold → 409 `reservation_not_pending`.
   * Safe to repeat. For jobs that outlive the hold's first TTL.
   */
  extend(reservationId: string, ttlSeconds: number, options: CallOptions = {}): Promise<Reservation> {
    return this.call({
      method: "POST",
      path: `/v1/reservations/${seg(reservationId)}/extend`,
      body: { ttlSeconds },
      signal: options.signal,
      user: this.userOf(options),
      userScoped: true,
    });
  }

  /** `POST /v1/reservations/{id}/release` (server credential): return what is still held. Safe to repeat. */
  release(reservationId: string, reason?: string, options: CallOptions = {}): Promise<Reservation> {
    return this.call({
      method: "POST",
      path: `/v1/reservations/${seg(reservationId)}/release`,
      body: reason === undefined ? {} : { reason },
      signal: options.signal,
      user: this.userOf(options),
      userScoped: true,
    });
  }

  /**
   * `POST /v1/reservations/{id}/task` (server credential): link the
   * provider's task (once; the same link again is a no-op).
   */
  linkTask(reservationId: string, taskId: string, provider?: Provider, options: CallOptions = {}): Promise<Reservation> {
    return this.call({
      method: "POST",
      path: `/v1/reservations/${seg(reservationId)}/task`,
      body: provider === undefined ? { taskId } : { taskId, provider },
      signal: options.signal,
      user: this.userOf(options),
      userScoped: true,
    });
  }

  /** `GET /v1/transactions`, newest first (a server credential names the user). */
  listTransactions(query: PageQuery = {}): Promise<HistoryPage> {
    return this.call({
      method: "GET",
      path: "/v1/transactions",
      query: { limit: query.limit, cursor: query.cursor },
      signal: query.signal,
      user: this.userOf(query),
      userScoped: true,
    });
  }

  /** `GET /v1/auto-recharge` of the user (a user token reads its own; a server names the user). */
  getAutoRecharge(options: CallOptions = {}): Promise<AutoRecharge> {
    return this.call({
      method: "GET",
      path: "/v1/auto-recharge",
      signal: options.signal,
      user: this.userOf(options),
      userScoped: true,
    });
  }

  /**
   * `PUT /v1/auto-recharge` (server credential, for a user): the user's
   * saved card is to be charged for `pack` when their balance falls below
   * `threshold`, at most `monthlyLimit` times a month (being built: no card
   * is charged yet). A PUT turns it on again and clears `disabledReason`;
   * repeating the same PUT leaves the same settings (retried like
   * `adminSetPlan`).
   */
  setAutoRecharge(request: AutoRechargeRequest, options: CallOptions = {}): Promise<AutoRecharge> {
    return this.call({
      method: "PUT",
      path: "/v1/auto-recharge",
      body: request,
      signal: options.signal,
      user: this.userOf(options),
      userScoped: true,
    });
  }

  /** `DELETE /v1/auto-recharge` (server credential, for a user): turns it off; safe to repeat. */
  endAutoRecharge(options: CallOptions = {}): Promise<AutoRecharge> {
    return this.call({
      method: "DELETE",
      path: "/v1/auto-recharge",
      signal: options.signal,
      user: this.userOf(options),
      userScoped: true,
    });
  }

  // ---- admin routes ------------------------------------------------------

  /**
   * `POST /v1/admin/users/{userId}/grants`. Idempotent (a key is generated when absent).
   * The credits land in the lot `(priority, expiresAt)`: `priority` 0–100
   * (default by reason), `expiresAt` in the future (an RFC 3339 string or a
   * `Date`; absent: never expires). A grant that would give the user a lot
   * too many → 409 `too_many_lots` (`limit`).
   */
  async adminGrant(userId: string, request: GrantInput, options: GrantOptions = {}): Promise<Grant> {
    const { expiresAt, ...rest } = request;
    const body: GrantRequest = expiresAt === undefined ? rest : { ...rest, expiresAt: timestamp("expiresAt", expiresAt) };
    return (
      await this.send<Grant>({
        method: "POST",
        path: `/v1/admin/users/${seg(userId)}/grants`,
        body,
        idempotencyKey: options.idempotencyKey ?? crypto.randomUUID(),
        signal: options.signal,
      })
    ).body;
  }

  /**
   * `POST /v1/admin/users/{userId}/debits`: take `amount` credits back from
   * what is available, in burn order (a refunded purchase, a chargeback).
   * Not enough available → `CreditsError` 402 `insufficient_credits`
   * (`available`, `required`, `shortfall`) and nothing taken; with
   * `partial: true` it takes what there is (maybe 0): the debit's `amount`
   * says how much of `requested`. Idempotent (a key is generated when
   * absent): the same key again answers the same debit and takes nothing more.
   */
  async adminDebit(userId: string, request: DebitRequest, options: DebitOptions = {}): Promise<Debit> {
    return (await this.adminDebitWithMeta(userId, request, options)).body;
  }

  /** `adminDebit`, also telling whether the answer was a replay (`Idempotent-Replayed`). */
  adminDebitWithMeta(
    userId: string,
    request: DebitRequest,
    options: DebitOptions = {},
  ): Promise<{ body: Debit } & ResponseMeta> {
    return this.send({
      method: "POST",
      path: `/v1/admin/users/${seg(userId)}/debits`,
      body: request,
      idempotencyKey: options.idempotencyKey ?? crypto.randomUUID(),
      signal: options.signal,
    });
  }

  /**
   * `PUT /v1/admin/users/{userId}/plan`: `allowance` credits each `period`
   * (`day`, `week`, `month`: UTC calendar units from `anchor`), granted as a
   * `plan_refill` lot of priority 20 that expires at the period's end, with
   * up to `rollover` (default 0) unused credits carried into the next
   * period. `anchor` is an RFC 3339 string or a `Date`; absent, a user's
   * first plan starts now and the same plan set again keeps its anchor. A
   * new plan grants the current period's allowance at once, and so does a
   * plan changed with a new `anchor`; the same plan again changes nothing,
   * so the call is safe to repeat (the client retries it on a 503 or a
   * network error; no `Idempotency-Key`). Answers the balance
   * (`plan`: `currentPeriodStart`, `currentPeriodEnd`, `endsAt`). Bad input
   * → `CreditsError` 400 `validation_error` naming the `field`.
   */
  async adminSetPlan(userId: string, request: PlanInput, options: CallOptions = {}): Promise<Balance> {
    const { anchor, ...rest } = request;
    const body: PlanRequest = anchor === undefined ? rest : { ...rest, anchor: timestamp("anchor", anchor) };
    return this.call({
      method: "PUT",
      path: `/v1/admin/users/${seg(userId)}/plan`,
      body,
      signal: options.signal,
    });
  }

  /**
   * `DELETE /v1/admin/users/{userId}/plan`: the plan ends at the end of its
   * current period (`plan.endsAt`; at once if its first period has not
   * started); that period's credits stay until their lot expires. Ending it
   * again, or a user without a plan, changes nothing: safe to repeat (retried
   * like `adminSetPlan`). Answers the balance.
   */
  adminEndPlan(userId: string, options: CallOptions = {}): Promise<Balance> {
    return this.call({ method: "DELETE", path: `/v1/admin/users/${seg(userId)}/plan`, signal: options.signal });
  }

  /**
   * `PUT /v1/admin/users/{userId}/settings`: the user's low-balance
   * threshold. `balance.low` is sent when their available credits fall below
   * `lowBalanceThreshold` (one event per crossing), `balance.recovered` when
   * they are back at or above it; 0 turns `balance.low` off for the user,
   * `null` goes back to the deployment's default
   * (`CREDITS_LOW_BALANCE_THRESHOLD`). The field is required (`{}` → 400
   * `validation_error`). Setting the same value again changes nothing, so
   * the call is safe to repeat (retried like `adminSetPlan`). Answers the
   * settings.
   */
  adminSetSettings(userId: string, request: SettingsRequest, options: CallOptions = {}): Promise<Settings> {
    return this.call({
      method: "PUT",
      path: `/v1/admin/users/${seg(userId)}/settings`,
      body: request,
      signal: options.signal,
    });
  }

  /** `GET /v1/admin/users/{userId}/balance` */
  adminBalance(userId: string, options: CallOptions = {}): Promise<Balance> {
    return this.call({ method: "GET", path: `/v1/admin/users/${seg(userId)}/balance`, signal: options.signal });
  }

  /** `GET /v1/admin/users/{userId}/transactions` */
  adminTransactions(userId: string, query: PageQuery = {}): Promise<HistoryPage> {
    return this.call({
      method: "GET",
      path: `/v1/admin/users/${seg(userId)}/transactions`,
      query: { limit: query.limit, cursor: query.cursor },
      signal: query.signal,
    });
  }

  /** `POST /v1/admin/reservations/{id}/refund`: once; repeats change nothing. */
  adminRefund(reservationId: string, reason?: string, options: CallOptions = {}): Promise<Reservation> {
    return this.call({
      method: "POST",
      path: `/v1/admin/reservations/${seg(reservationId)}/refund`,
      body: reason === undefined ? {} : { reason },
      signal: options.signal,
    });
  }

  /** `POST /v1/admin/cleanup`: run the expiry sweep now. */
  adminCleanup(options: CallOptions = {}): Promise<SweepReport> {
    return this.call({ method: "POST", path: "/v1/admin/cleanup", signal: options.signal });
  }

  /** `GET /v1/admin/monitoring` (shape depends on `type`). */
  adminMonitoring(query: MonitoringQuery = {}): Promise<Monitoring> {
    return this.call({
      method: "GET",
      path: "/v1/admin/monitoring",
      query: { type: query.type, period: query.period, limit: query.limit },
      signal: query.signal,
    });
  }

  // ---- webhook endpoints (outgoing events) --------------------------------

  /**
   * `POST /v1/admin/webhook-endpoints`: every event of the types in `events`
   * (absent, `null` or empty: every type) is POSTed to `url`, signed with the
   * endpoint's own secret (Standard Webhooks). The answer is the only one
   * that shows `secret` (`whsec_…`): keep it to check deliveries with
   * `verifyWebhook`. `url` must be `https://` (the local dev server also
   * takes `http://` to this machine), else 400 `validation_error` naming
   * `url`; at most 20 endpoints (409 `too_many_endpoints`, `limit`).
   *
   * Not idempotent (the route takes no `Idempotency-Key`): a network error
   * or a 503 is **not** retried, since the endpoint may or may not have been
   * created; list the endpoints (`adminListWebhookEndpoints`) before
   * creating it again.
   */
  adminCreateWebhookEndpoint(request: WebhookEndpointRequest, options: CallOptions = {}): Promise<WebhookEndpointCreated> {
    return this.call({
      method: "POST",
      path: "/v1/admin/webhook-endpoints",
      body: request,
      signal: options.signal,
      notRepeatable:
        "the endpoint may or may not have been created: list the endpoints (adminListWebhookEndpoints) before creating it again",
    });
  }

  /** `GET /v1/admin/webhook-endpoints`: every endpoint (at most 20), without their secrets. */
  adminListWebhookEndpoints(options: CallOptions = {}): Promise<WebhookEndpointList> {
    return this.call({ method: "GET", path: "/v1/admin/webhook-endpoints", signal: options.signal });
  }

  /**
   * `GET /v1/admin/webhook-endpoints/{id}`, without its secret: `status`
   * (`enabled`, or `disabled` after 5 days of failed attempts, with
   * `disabledAt` and `disabledReason`), `failingSince`, `lastSuccessAt`.
   * Unknown id → 404 `endpoint_not_found`.
   */
  adminGetWebhookEndpoint(endpointId: string, options: CallOptions = {}): Promise<WebhookEndpoint> {
    return this.call({
      method: "GET",
      path: `/v1/admin/webhook-endpoints/${seg(endpointId)}`,
      signal: options.signal,
    });
  }

  /**
   * `DELETE /v1/admin/webhook-endpoints/{id}` (204): no event is delivered
   * to it from then on. An unknown (or already deleted) id → 404
   * `endpoint_not_found`. Retried on a 503 or a network error; a 404 after
   * such an attempt means that attempt deleted it, and resolves.
   */
  async adminDeleteWebhookEndpoint(endpointId: string, options: CallOptions = {}): Promise<void> {
    await this.adminDeleteWebhookEndpointWithMeta(endpointId, options);
  }

  /** `adminDeleteWebhookEndpoint`, also telling (`replayed`) whether a retry found it already deleted. */
  adminDeleteWebhookEndpointWithMeta(
    endpointId: string,
    options: CallOptions = {},
  ): Promise<{ body: undefined } & ResponseMeta> {
    return this.send<undefined>({
      method: "DELETE",
      path: `/v1/admin/webhook-endpoints/${seg(endpointId)}`,
      signal: options.signal,
      noContent: true,
      doneIfNotFound: "endpoint_not_found",
    });
  }

  /**
   * `GET /v1/admin/webhook-endpoints/{id}/deliveries`, newest first: one
   * delivery per event sent to the endpoint, with every attempt (`at`,
   * `responseCode` or `error`, `durationMs`) and, while `pending`,
   * `nextAttemptAt`. `limit` 1–100 (default 50); pass `nextCursor` as
   * `cursor` for the next page. Unknown id → 404 `endpoint_not_found`.
   */
  adminListWebhookDeliveries(endpointId: string, query: PageQuery = {}): Promise<WebhookDeliveryPage> {
    return this.call({
      method: "GET",
      path: `/v1/admin/webhook-endpoints/${seg(endpointId)}/deliveries`,
      query: { limit: query.limit, cursor: query.cursor },
      signal: query.signal,
    });
  }

  // ---- helpers -----------------------------------------------------------

  /**
   * On the app's back end, for a user (`forUser(userId)` or `{ user }`):
   * reserve, run `job(hold)`, then settle: link the task it reports, release
   * when it failed or produced 0 units, else confirm the units it produced
   * (all held when it does not say). A job that throws releases the hold and
   * the error is rethrown. A confirm that finds the hold already confirmed
   * (the provider's webhook won the race) counts as success.
   *
   * **One run per key.** When the reserve is a replay (`Idempotent-Replayed`:
   * the same `idempotencyKey` again, or twice at once) the job does not run,
   * whatever the hold's status: the result is `outcome: "replayed"` with the
   * hold as it stands and no `value`. With your `idempotencyKey`, that
   * includes the client's own retry of a reserve whose first answer was lost
   * (a network error or a 503 after the hold was placed): the client cannot
   * tell it from another run of the key, so nothing runs, nothing is
   * charged and the hold expires at its TTL; resume it from a trusted worker
   * (`onReplay: "resume"`) or start over with a new key. Without one, the
   * key is made up by this call and known to nobody else: a replay is this
   * call's own lost attempt, and the job runs. `onReplay: "resume"` runs the
   * job on a replayed hold that is still pending (trusted workers only,
   * never a key from a browser).
   *
   * **Asynchronous providers**: a job that returns `pending: true` (with its
   * `taskId`) has submitted the work; the task is linked and the hold left
   * pending for the provider's webhook or your poller (`outcome: "pending"`).
   *
   * **Per-output mode** (`{ perOutput: true }`): the job is
   * `job(hold, outputs)` and charges each output the moment it exists with
   * `await outputs.report()` (a non-final capture of 1 unit, or
   * `report(units)`), keyed `<idempotencyKey>-out-<index>` (index 0, 1, …
   * in report order, or `report(units, { index })`), so a resumed job or a
   * repeated report never charges an output twice. A report on an expired
   * hold rejects with `CreditsError` `reservation_expired`. When the job
   * ends:
   * - it threw (the error is rethrown) or returned `failed: true`: the rest
   *   of the hold is released; reported outputs stay charged;
   * - it returned `pending: true`: the task is linked, nothing is settled;
   * - it succeeded: a final confirm captures `extraUnits` more (0 when it
   *   returns none) and returns the unused rest, so the hold ends
   *   `confirmed` with `capturedAmount` = what was reported; a job that
   *   reported nothing and returns no `extraUnits` releases the hold.
   *   `outcome` is `confirmed` when anything was charged, else `released`.
   */
  withCredits<T>(
    operation: string,
    units: number,
    job: (hold: Reservation, outputs: Outputs) => Promise<PerOutputJobResult<T>> | PerOutputJobResult<T>,
    options: WithCreditsOptions & { perOutput: true },
  ): Promise<WithCreditsResult<T>>;
  withCredits<T>(
    operation: string,
    units: number,
    job: (hold: Reservation) => Promise<JobResult<T>> | JobResult<T>,
    options?: WithCreditsOptions & { perOutput?: false },
  ): Promise<WithCreditsResult<T>>;
  async withCredits<T>(
    operation: string,
    units: number,
    job:
      | ((hold: Reservation, outputs: Outputs) => Promise<PerOutputJobResult<T>> | PerOutputJobResult<T>)
      | ((hold: Reservation) => Promise<JobResult<T>> | JobResult<T>),
    options: WithCreditsOptions = {},
  ): Promise<WithCreditsResult<T>> {
    return runWithCredits<T>(this, this.userOf(options), operation, units, job, options);
  }

  private userOf(options: CallOptions): string | undefined {
    const user = options.user ?? this.user;
    if (user !== undefined) checkUser(user);
    return user;
  }

  private async call<R>(spec: RequestSpec): Promise<R> {
    return (await this.send<R>(spec)).body;
  }

  /** `send` (transport.ts) with this client's settings. */
  private send<R>(spec: RequestSpec): Promise<{ body: R } & ResponseMeta> {
    const { baseUrl, acceptLanguage, token, fetchImpl, retry, headers } = this;
    return send<R>({ baseUrl, acceptLanguage, token, fetchImpl, retry, headers }, spec);
  }
}

/** A time as the API takes it: a `Date` becomes RFC 3339 UTC; a string goes as it is (the API checks it). */
function timestamp(field: string, value: Timestamp | Date | null): Timestamp | null {
  if (!(value instanceof Date)) return value;
  if (Number.isNaN(value.getTime())) throw new TypeError(`${field}: an invalid Date`);
  return value.toISOString();
}

/**
 * A user id travels in a header: 1–256 printable ASCII characters, no
 * surrounding spaces, and no comma (a repeated header arrives joined with
 * commas, so the service refuses one).
 */
function checkUser(userId: unknown): void {
  if (typeof userId !== "string" || !/^[\x21-\x2b\x2d-\x7e](?:[\x20-\x2b\x2d-\x7e]{0,254}[\x21-\x2b\x2d-\x7e])?$/.test(userId)) {
    throw new TypeError(
      `${USER_HEADER}: a user id is 1 to 256 printable ASCII characters without a comma, got ${JSON.stringify(userId)}`,
    );
  }
}
