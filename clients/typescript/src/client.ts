import { CreditsError, errorFromResponse } from "./errors.js";
import type {
  Balance,
  ConfirmRequest,
  Grant,
  GrantRequest,
  HistoryPage,
  Language,
  Monitoring,
  MonitoringPeriod,
  MonitoringType,
  Prices,
  Provider,
  Reservation,
  ReservationWithEvents,
  ReserveRequest,
  SweepReport,
} from "./types.js";

export type HttpMethod = "GET" | "POST";

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
  { method: "POST", path: "/v1/reservations/{id}/release", operationId: "releaseReservation", clientMethod: "release" },
  { method: "POST", path: "/v1/reservations/{id}/task", operationId: "linkReservationTask", clientMethod: "linkTask" },
  { method: "GET", path: "/v1/transactions", operationId: "listTransactions", clientMethod: "listTransactions" },
  { method: "POST", path: "/v1/admin/users/{userId}/grants", operationId: "adminGrantCredits", clientMethod: "adminGrant" },
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
    why: "called by the image provider with its own signature, never by an app with a user token",
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
  /** A bearer token, or a function giving one per request (refresh it there). */
  token?: string | (() => string | Promise<string>);
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
}

export interface ReserveOptions extends CallOptions {
  /** Makes the reserve safe to retry; generated (crypto.randomUUID) when absent, reused on retries. */
  idempotencyKey?: string;
}

export interface GrantOptions extends CallOptions {
  /** The grant's identity: the same key credits once. Generated when absent, reused on retries. */
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
}

export interface WithCreditsOptions extends CallOptions {
  idempotencyKey?: string;
  description?: string;
  provider?: Provider;
  /** The provider task id, when known before the job runs. */
  taskId?: string;
  ttlSeconds?: number;
  /** Reason recorded when the hold is released. */
  releaseReason?: string;
}

export interface WithCreditsResult<T> {
  value: T;
  /** The hold as settled. */
  reservation: Reservation;
  outcome: "confirmed" | "released";
}

interface RequestSpec {
  method: HttpMethod;
  path: string;
  query?: Record<string, string | number | undefined>;
  body?: unknown;
  idempotencyKey?: string;
  signal?: AbortSignal | undefined;
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

export class CreditsClient {
  readonly baseUrl: string;
  readonly acceptLanguage: Language | undefined;
  private readonly token: CreditsClientOptions["token"];
  private readonly fetchImpl: typeof fetch;
  private readonly retry: Required<RetryOptions>;
  private readonly headers: Record<string, string>;

  constructor(options: CreditsClientOptions) {
    this.baseUrl = options.baseUrl.replace(/\/+$/, "");
    this.acceptLanguage = options.acceptLanguage;
    this.token = options.token;
    const platformFetch = globalThis.fetch;
    this.fetchImpl = options.fetch ?? ((input, init) => platformFetch(input, init));
    this.retry = {
      maxAttempts: Math.max(1, Math.floor(options.retry?.maxAttempts ?? 3)),
      baseDelayMs: options.retry?.baseDelayMs ?? 200,
      maxDelayMs: options.retry?.maxDelayMs ?? 10_000,
    };
    this.headers = { ...options.headers };
  }

  /** A copy of this client with other options (e.g. another token or language). */
  with(options: Partial<CreditsClientOptions>): CreditsClient {
    return new CreditsClient({
      baseUrl: this.baseUrl,
      ...(this.token !== undefined && { token: this.token }),
      ...(this.acceptLanguage !== undefined && { acceptLanguage: this.acceptLanguage }),
      retry: this.retry,
      fetch: this.fetchImpl,
      headers: this.headers,
      ...options,
    });
  }

  // ---- user routes -------------------------------------------------------

  /** `GET /v1/balance` */
  getBalance(options: CallOptions = {}): Promise<Balance> {
    return this.call({ method: "GET", path: "/v1/balance", signal: options.signal });
  }

  /** `GET /v1/prices` */
  getPrices(options: CallOptions = {}): Promise<Prices> {
    return this.call({ method: "GET", path: "/v1/prices", signal: options.signal });
  }

  /** `POST /v1/reservations`: hold `units × unitCost` credits. Idempotent (a key is generated when absent). */
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
    });
  }

  /** `GET /v1/reservations/{id}`, with its events. */
  getReservation(reservationId: string, options: CallOptions = {}): Promise<ReservationWithEvents> {
    return this.call({ method: "GET", path: `/v1/reservations/${seg(reservationId)}`, signal: options.signal });
  }

  /** `POST /v1/reservations/{id}/confirm`: capture `units` (default all held). Safe to repeat. */
  confirm(reservationId: string, request: ConfirmRequest = {}, options: CallOptions = {}): Promise<Reservation> {
    return this.call({
      method: "POST",
      path: `/v1/reservations/${seg(reservationId)}/confirm`,
      body: request,
      signal: options.signal,
    });
  }

  /** `POST /v1/reservations/{id}/release`: return the whole hold. Safe to repeat. */
  release(reservationId: string, reason?: string, options: CallOptions = {}): Promise<Reservation> {
    return this.call({
      method: "POST",
      path: `/v1/reservations/${seg(reservationId)}/release`,
      body: reason === undefined ? {} : { reason },
      signal: options.signal,
    });
  }

  /** `POST /v1/reservations/{id}/task`: link the provider's task (once; the same link again is a no-op). */
  linkTask(reservationId: string, taskId: string, provider?: Provider, options: CallOptions = {}): Promise<Reservation> {
    return this.call({
      method: "POST",
      path: `/v1/reservations/${seg(reservationId)}/task`,
      body: provider === undefined ? { taskId } : { taskId, provider },
      signal: options.signal,
    });
  }

  /** `GET /v1/transactions`, newest first. */
  listTransactions(query: PageQuery = {}): Promise<HistoryPage> {
    return this.call({
      method: "GET",
      path: "/v1/transactions",
      query: { limit: query.limit, cursor: query.cursor },
      signal: query.signal,
    });
  }

  // ---- admin routes ------------------------------------------------------

  /** `POST /v1/admin/users/{userId}/grants`. Idempotent (a key is generated when absent). */
  async adminGrant(userId: string, request: GrantRequest, options: GrantOptions = {}): Promise<Grant> {
    return (
      await this.send<Grant>({
        method: "POST",
        path: `/v1/admin/users/${seg(userId)}/grants`,
        body: request,
        idempotencyKey: options.idempotencyKey ?? crypto.randomUUID(),
        signal: options.signal,
      })
    ).body;
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

  // ---- helpers -----------------------------------------------------------

  /**
   * Reserve, run `job(hold)`, then settle: link the task it reports, release
   * when it failed or produced 0 units, else confirm the units it produced
   * (all held when it does not say). A job that throws releases the hold and
   * the error is rethrown. A confirm that finds the hold already confirmed
   * (the provider's webhook won the race) counts as success.
   */
  async withCredits<T>(
    operation: string,
    units: number,
    job: (hold: Reservation) => Promise<JobResult<T>> | JobResult<T>,
    options: WithCreditsOptions = {},
  ): Promise<WithCreditsResult<T>> {
    const call = options.signal ? { signal: options.signal } : {};
    let hold = await this.reserve(
      {
        operation,
        units,
        ...(options.taskId !== undefined && { taskId: options.taskId }),
        ...(options.provider !== undefined && { provider: options.provider }),
        ...(options.description !== undefined && { description: options.description }),
        ...(options.ttlSeconds !== undefined && { ttlSeconds: options.ttlSeconds }),
      },
      { idempotencyKey: options.idempotencyKey ?? crypto.randomUUID(), ...call },
    );

    let result: JobResult<T>;
    try {
      result = await job(hold);
    } catch (error) {
      try {
        await this.settleRelease(hold.reservationId, options.releaseReason ?? "job failed", call);
      } catch {
        // The hold expires by itself; the job's error is the one that matters.
      }
      throw error;
    }

    if (result.taskId !== undefined && result.taskId !== hold.taskId) {
      hold = await this.linkTask(hold.reservationId, result.taskId, options.provider, call);
    }
    if (result.failed || result.units === 0) {
      const released = await this.settleRelease(hold.reservationId, options.releaseReason ?? "job failed", call);
      return { value: result.value, reservation: released, outcome: "released" };
    }
    try {
      const confirmed = await this.confirm(
        hold.reservationId,
        result.units === undefined ? {} : { units: result.units },
        call,
      );
      return { value: result.value, reservation: confirmed, outcome: "confirmed" };
    } catch (error) {
      if (error instanceof CreditsError && error.code === "reservation_not_pending") {
        const current = await this.getReservation(hold.reservationId, call);
        if (current.status === "confirmed") {
          const { events: _events, ...reservation } = current;
          return { value: result.value, reservation, outcome: "confirmed" };
        }
      }
      throw error;
    }
  }

  /** Release; a hold already released or expired counts as released. */
  private async settleRelease(reservationId: string, reason: string, options: CallOptions): Promise<Reservation> {
    try {
      return await this.release(reservationId, reason, options);
    } catch (error) {
      if (error instanceof CreditsError && error.code === "reservation_not_pending") {
        const { events: _events, ...current } = await this.getReservation(reservationId, options);
        if (current.status === "released" || current.status === "expired") return current;
      }
      throw error;
    }
  }

  private async call<R>(spec: RequestSpec): Promise<R> {
    return (await this.send<R>(spec)).body;
  }

  /**
   * One logical call: the same request (same idempotency key) is re-sent on
   * a network error or a 503, with jittered exponential backoff honouring
   * `Retry-After`, up to `maxAttempts`; any other answer is final.
   */
  private async send<R>(spec: RequestSpec): Promise<{ body: R } & ResponseMeta> {
    const url = new URL(this.baseUrl + spec.path);
    for (const [name, value] of Object.entries(spec.query ?? {})) {
      if (value !== undefined) url.searchParams.set(name, String(value));
    }
    const headers: Record<string, string> = { accept: "application/json", ...this.headers };
    if (this.acceptLanguage) headers["accept-language"] = this.acceptLanguage;
    if (spec.idempotencyKey !== undefined) headers["idempotency-key"] = spec.idempotencyKey;
    const body = spec.body === undefined ? undefined : JSON.stringify(spec.body);
    if (body !== undefined) headers["content-type"] = "application/json";

    for (let attempt = 1; ; attempt++) {
      const token = typeof this.token === "function" ? await this.token() : this.token;
      if (token) headers["authorization"] = `Bearer ${token}`;
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
        if (attempt >= this.retry.maxAttempts) {
          throw new CreditsError({
            status: 0,
            code: "network_error",
            detail: `${spec.method} ${spec.path} failed after ${attempt} attempt(s): ${String((cause as Error)?.message ?? cause)}`,
            cause,
          });
        }
        await sleep(this.backoff(attempt, undefined), spec.signal);
        continue;
      }

      const retryAfter = parseRetryAfter(response.headers.get("retry-after"));
      if (response.status === 503 && attempt < this.retry.maxAttempts) {
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
      if (!response.ok) {
        throw errorFromResponse(response.status, parsed ?? { detail: text.slice(0, 500) || undefined }, {
          requestId: response.headers.get("x-request-id") ?? undefined,
          retryAfter,
        });
      }
      if (parsed === undefined) {
        throw new CreditsError({
          status: response.status,
          code: "unexpected_response",
          detail: `expected a JSON body from ${spec.method} ${spec.path}`,
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
