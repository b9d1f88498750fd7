import { clientCredentials, type ClientCredentialsConfig, type TokenProvider } from "./auth.js";
import { CreditsError, errorFromResponse } from "./errors.js";
import type {
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

export type HttpMethod = "GET" | "POST" | "PUT" | "DELETE";

/** One route of openapi.yaml and the client method that calls it. */
export interface RouteEntry {
  method: HttpMethod;
  path: string;
  operationId: string;
  clientMethod: keyof CreditsClient;
}

/** Every route the client calls (test/spec.test.mjs compares it with openapi.yaml). */
export const routes: readonly RouteEntry[] = [
  { method: "GET", path: "/v1/balance", operationId: "getBalance", clientMethod: "getBalance" },
  { method: "GET", path: "/v1/prices", operationId: "getPrices", clientMethod: "getPrices" },
  { method: "POST", path: "/v1/reservations", operationId: "createReservation", clientMethod: "reserve" },
  { method: "GET", path: "/v1/reservations/{id}", operationId: "getReservation", clientMethod: "getReservation" },
  { method: "POST", path: "/v1/reservations/{id}/confirm", operationId: "confirmReservation", clientMethod: "confirm" },
  { method: "POST", path: "/v1/reservations/{id}/extend", operationId: "extendReservation", clientMethod: "extend" },
  { method: "POST", path: "/v1/reservations/{id}/release", operationId: "releaseReservation", clientMethod: "release" },
  { method: "POST", path: "/v1/reservations/{id}/task", operationId: "linkReservationTask", clientMethod: "linkTask" },
  { method: "GET", path: "/v1/transactions", operationId: "listTransactions", clientMethod: "listTransactions" },
  { method: "POST", path: "/v1/admin/users/{userId}/grants", operationId: "adminGrantCredits", clientMethod: "adminGrant" },
  { method: "POST", path: "/v1/admin/users/{userId}/debits", operationId: "adminDebitCredits", clientMethod: "adminDebit" },
  { method: "PUT", path: "/v1/admin/users/{userId}/plan", operationId: "adminSetPlan", clientMethod: "adminSetPlan" },
  { method: "DELETE", path: "/v1/admin/users/{userId}/plan", operationId: "adminEndPlan", clientMethod: "adminEndPlan" },
  {
    method: "PUT",
    path: "/v1/admin/users/{userId}/settings",
    operationId: "adminSetSettings",
    clientMethod: "adminSetSettings",
  },
  { method: "GET", path: "/v1/admin/users/{userId}/balance", operationId: "adminGetBalance", clientMethod: "adminBalance" },
  {
    method: "GET",
    path: "/v1/admin/users/{userId}/transactions",
    operationId: "adminListTransactions",
    clientMethod: "adminTransactions",
  },
  {
    method: "POST",
    path: "/v1/admin/reservations/{id}/refund",
    operationId: "adminRefundReservation",
    clientMethod: "adminRefund",
  },
  { method: "POST", path: "/v1/admin/cleanup", operationId: "adminCleanup", clientMethod: "adminCleanup" },
  { method: "GET", path: "/v1/admin/monitoring", operationId: "adminMonitoring", clientMethod: "adminMonitoring" },
  {
    method: "POST",
    path: "/v1/admin/webhook-endpoints",
    operationId: "adminCreateWebhookEndpoint",
    clientMethod: "adminCreateWebhookEndpoint",
  },
  {
    method: "GET",
    path: "/v1/admin/webhook-endpoints",
    operationId: "adminListWebhookEndpoints",
    clientMethod: "adminListWebhookEndpoints",
  },
  {
    method: "GET",
    path: "/v1/admin/webhook-endpoints/{id}",
    operationId: "adminGetWebhookEndpoint",
    clientMethod: "adminGetWebhookEndpoint",
  },
  {
    method: "DELETE",
    path: "/v1/admin/webhook-endpoints/{id}",
    operationId: "adminDeleteWebhookEndpoint",
    clientMethod: "adminDeleteWebhookEndpoint",
  },
  {
    method: "GET",
    path: "/v1/admin/webhook-endpoints/{id}/deliveries",
    operationId: "adminListWebhookDeliveries",
    clientMethod: "adminListWebhookDeliveries",
  },
];

/** Routes of openapi.yaml the client deliberately does not wrap, and why. */
export const skippedRoutes: readonly { method: HttpMethod; path: string; operationId: string; why: string }[] = [
  {
    method: "GET",
    path: "/v1/admin/dashboard",
    operationId: "adminDashboardPage",
    why: "an HTML page for browsers; its data comes from adminMonitoring({ type: 'dashboard' })",
  },
  {
    method: "POST",
    path: "/v1/webhooks/{provider}",
    operationId: "providerWebhook",
    why: "called by the image provider with its own signature, never with a bearer token",
  },
];

export interface RetryOptions {
  /** Total attempts, the first included (default 3; 1 disables retries). */
  maxAttempts?: number;
  /** First backoff step in ms (default 200); doubles each attempt, full jitter. */
  baseDelayMs?: number;
  /** Cap of one backoff step in ms, `Retry-After` included (default 10000). */
  maxDelayMs?: number;
}

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

interface RequestSpec {
  method: HttpMethod;
  path: string;
  query?: Record<string, string | number | undefined>;
  body?: unknown;
  idempotencyKey?: string;
  signal?: AbortSignal | undefined;
  /** Sent as `Credits-User`. */
  user?: string | undefined;
  /** The route acts on one user (`Credits-User` is required with a server credential). */
  userScoped?: boolean;
  /** A 2xx may come without a body (204): `body` is then `undefined`. */
  noContent?: boolean;
  /**
   * The change must not be sent twice (a POST without an Idempotency-Key):
   * a network error or a 503 is not retried (a 429, refused before any
   * function ran, still is), and the error says what to do instead.
   */
  notRepeatable?: string;
  /**
   * A 404 with this code, after an attempt whose outcome was unknown (a
   * network error or a 503), means that attempt did the change (a delete):
   * it resolves as a success with `replayed: true`.
   */
  doneIfNotFound?: string;
}

export interface ResponseMeta {
  status: number;
  /** `Idempotent-Replayed: true`: a replay of an earlier request with the same key. */
  replayed: boolean;
}

const sleep = (ms: number, signal?: AbortSignal) =>
  new Promise<void>((resolve, reject) => {
    if (signal?.aborted) return reject(signal.reason);
    const timer = setTimeout(() => {
      signal?.removeEventListener("abort", onAbort);
      resolve();
    }, ms);
    const onAbort = () => {
      clearTimeout(timer);
      reject(signal?.reason);
    };
    signal?.addEventListener("abort", onAbort, { once: true });
  });

function parseRetryAfter(value: string | null): number | undefined {
  if (value === null) return undefined;
  const seconds = Number(value.trim());
  if (Number.isFinite(seconds) && seconds >= 0) return seconds;
  const date = Date.parse(value);
  return Number.isNaN(date) ? undefined : Math.max(0, (date - Date.now()) / 1000);
}

const seg = (value: string) => encodeURIComponent(value);

/** The header a server credential names the user it acts for in. */
export const USER_HEADER = "Credits-User";

/** Token endpoint failures worth another attempt: unreachable, throttled, or a 5xx. */
const retryableTokenError = (error: unknown) =>
  error instanceof CreditsError &&
  error.code === "token_error" &&
  (error.status === 0 || error.status === 429 || error.status >= 500);

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
    const user = this.userOf(options);
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
    const reserved = await this.reserveWithMeta(
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
      return this.perOutput(
        hold,
        idempotencyKey,
        job as (hold: Reservation, outputs: Outputs) => Promise<PerOutputJobResult<T>> | PerOutputJobResult<T>,
        options,
        call,
      );
    }

    const release = () => this.settleRelease(hold.reservationId, options.releaseReason ?? "job failed", call);
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
      hold = await this.linkTask(hold.reservationId, result.taskId, options.provider, call);
    }
    if (result.pending) {
      return { outcome: "pending", value: result.value, reservation: hold };
    }
    if (result.failed || result.units === 0) {
      return { outcome: "released", value: result.value, reservation: await release() };
    }
    const confirmed = await this.settleConfirm(hold.reservationId, result.units, call);
    return { outcome: "confirmed", value: result.value, reservation: confirmed };
  }

  /** `withCredits` once the hold is placed, in per-output mode. */
  private async perOutput<T>(
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
    const client = this;
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

    const releaseRest = () => this.settleRelease(id, options.releaseReason ?? "job failed", call);
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
      seen(await this.linkTask(id, result.taskId, options.provider, call));
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
      settled = await this.settleConfirm(id, extra, call, true);
    } else {
      // Nothing came out: the whole hold goes back. A webhook may have closed it already.
      settled = await this.settleRelease(id, "no outputs", call, true);
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
  private async settleConfirm(
    reservationId: string,
    units: number | undefined,
    options: CallOptions,
    orClosed = false,
  ): Promise<Reservation> {
    try {
      return await this.confirm(reservationId, units === undefined ? {} : { units }, options);
    } catch (error) {
      if (error instanceof CreditsError && error.code === "reservation_not_pending") {
        const { events: _events, ...current } = await this.getReservation(reservationId, options);
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
  private async settleRelease(
    reservationId: string,
    reason: string,
    options: CallOptions,
    orConfirmed = false,
  ): Promise<Reservation> {
    try {
      return await this.release(reservationId, reason, options);
    } catch (error) {
      if (error instanceof CreditsError && error.code === "reservation_not_pending") {
        const { events: _events, ...current } = await this.getReservation(reservationId, options);
        if (current.status === "released" || current.status === "expired") return current;
        if (orConfirmed && current.status === "confirmed") return current;
      }
      throw error;
    }
  }

  private userOf(options: CallOptions): string | undefined {
    const user = options.user ?? this.user;
    if (user !== undefined) checkUser(user);
    return user;
  }

  private async call<R>(spec: RequestSpec): Promise<R> {
    return (await this.send<R>(spec)).body;
  }

  /**
   * One logical call: the same request (same idempotency key) is re-sent on
   * a network error, a 503 (the change may or may not have been applied) or
   * a 429 (API Gateway throttled it before any function ran), with jittered
   * exponential backoff honouring `Retry-After`, up to `maxAttempts`. A 401
   * asks a token provider for a fresh token and is retried once with it.
   * Any other answer is final.
   */
  private async send<R>(spec: RequestSpec): Promise<{ body: R } & ResponseMeta> {
    const url = new URL(this.baseUrl + spec.path);
    for (const [name, value] of Object.entries(spec.query ?? {})) {
      if (value !== undefined) url.searchParams.set(name, String(value));
    }
    const headers: Record<string, string> = { accept: "application/json", ...this.headers };
    if (this.acceptLanguage) headers["accept-language"] = this.acceptLanguage;
    if (spec.idempotencyKey !== undefined) headers["idempotency-key"] = spec.idempotencyKey;
    if (spec.user !== undefined) headers[USER_HEADER.toLowerCase()] = spec.user;
    const body = spec.body === undefined ? undefined : JSON.stringify(spec.body);
    if (body !== undefined) headers["content-type"] = "application/json";
    const what = `${spec.method} ${spec.path}`;
    // A write's outcome is unknown after a 503 or a network error. POSTs
    // carry an Idempotency-Key or are safe to repeat; PUT and DELETE (a
    // plan set or ended) are idempotent by nature: the same again changes
    // nothing, so they are retried like the others.
    const unknownOutcome =
      spec.notRepeatable !== undefined
        ? `; ${spec.notRepeatable}`
        : spec.method !== "GET"
        ? spec.idempotencyKey !== undefined
          ? "; the change may or may not have been applied: retry with the same Idempotency-Key"
          : "; the change may or may not have been applied: retry (the call is safe to repeat)"
        : "";

    let freshToken: string | undefined;
    let refreshed = false;
    /** An earlier attempt may have applied the change (a network error or a 503). */
    let maybeApplied = false;
    for (let attempt = 1; ; attempt++) {
      let token: string | undefined;
      try {
        token = freshToken ?? (typeof this.token === "function" ? await this.token({}) : this.token);
      } catch (error) {
        if (retryableTokenError(error) && attempt < this.retry.maxAttempts) {
          await sleep(this.backoff(attempt, undefined), spec.signal);
          continue;
        }
        throw error;
      }
      freshToken = undefined;
      if (token) headers["authorization"] = `Bearer ${token}`;
      else delete headers["authorization"];

      let response: Response;
      try {
        response = await this.fetchImpl(url, {
          method: spec.method,
          headers,
          ...(body !== undefined && { body }),
          ...(spec.signal && { signal: spec.signal }),
        });
      } catch (cause) {
        if (spec.signal?.aborted) throw cause;
        if (attempt >= this.retry.maxAttempts || spec.notRepeatable !== undefined) {
          throw new CreditsError({
            status: 0,
            code: "network_error",
            detail: `${what} failed after ${attempt} attempt(s): ${String((cause as Error)?.message ?? cause)}${unknownOutcome}`,
            ...(spec.idempotencyKey !== undefined && { idempotencyKey: spec.idempotencyKey }),
            cause,
          });
        }
        maybeApplied = true;
        await sleep(this.backoff(attempt, undefined), spec.signal);
        continue;
      }

      // A token that expired or was revoked: one more try with a fresh one.
      if (response.status === 401 && !refreshed && token && typeof this.token === "function") {
        refreshed = true;
        const fresh = await this.token({ rejected: token });
        if (fresh && fresh !== token) {
          await response.body?.cancel().catch(() => {});
          freshToken = fresh;
          attempt--; // not one of the retry budget's attempts
          continue;
        }
      }

      const retryAfter = parseRetryAfter(response.headers.get("retry-after"));
      const retryable = response.status === 429 || (response.status === 503 && spec.notRepeatable === undefined);
      if (retryable && attempt < this.retry.maxAttempts) {
        if (response.status === 503) maybeApplied = true;
        await response.body?.cancel().catch(() => {});
        await sleep(this.backoff(attempt, retryAfter), spec.signal);
        continue;
      }
      const text = await response.text();
      let parsed: unknown = undefined;
      if (text.length > 0) {
        try {
          parsed = JSON.parse(text);
        } catch {
          parsed = undefined;
        }
      }
      if (
        response.status === 404 &&
        maybeApplied &&
        spec.doneIfNotFound !== undefined &&
        (parsed as { code?: unknown } | undefined)?.code === spec.doneIfNotFound
      ) {
        return { body: undefined as R, status: 204, replayed: true };
      }
      if (!response.ok) {
        // A server credential that named no user: say how to name one.
        const userMissing =
          spec.userScoped && spec.user === undefined && (parsed as { field?: unknown } | undefined)?.field === USER_HEADER;
        throw errorFromResponse(response.status, parsed ?? { detail: text.slice(0, 500) || undefined }, {
          requestId: response.headers.get("x-request-id") ?? undefined,
          retryAfter,
          idempotencyKey: spec.idempotencyKey,
          ...(userMissing && { hint: `${what} acts for a user: call it on credits.forUser(userId) or pass { user: userId }` }),
          ...(response.status === 503 && spec.notRepeatable !== undefined && { hint: spec.notRepeatable }),
        });
      }
      if (parsed === undefined && !(spec.noContent && text.length === 0)) {
        throw new CreditsError({
          status: response.status,
          code: "unexpected_response",
          detail: `expected a JSON body from ${what}`,
        });
      }
      return {
        body: parsed as R,
        status: response.status,
        replayed: response.headers.get("idempotent-replayed") === "true",
      };
    }
  }

  /** Full-jitter exponential backoff; `Retry-After` (seconds) sets the floor. */
  private backoff(attempt: number, retryAfterSeconds: number | undefined): number {
    const exp = Math.min(this.retry.maxDelayMs, this.retry.baseDelayMs * 2 ** (attempt - 1));
    const jittered = Math.random() * exp;
    if (retryAfterSeconds === undefined) return jittered;
    return Math.min(this.retry.maxDelayMs, retryAfterSeconds * 1000 + jittered / 4);
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
