import type { TokenProvider } from "./auth.js";
import { CreditsError, errorFromResponse } from "./errors.js";
import type { Language } from "./types.js";

export type HttpMethod = "GET" | "POST" | "PUT" | "DELETE";

export interface RetryOptions {
  /** Total attempts, the first included (default 3; 1 disables retries). */
  maxAttempts?: number;
  /** First backoff step in ms (default 200); doubles each attempt, full jitter. */
  baseDelayMs?: number;
  /** Cap of one backoff step in ms, `Retry-After` included (default 10000). */
  maxDelayMs?: number;
}

export interface RequestSpec {
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

/** What `send` needs of a client: where it sends, with what credential, headers and retries. */
export interface Transport {
  baseUrl: string;
  acceptLanguage: Language | undefined;
  token: string | TokenProvider | undefined;
  fetchImpl: typeof fetch;
  retry: Required<RetryOptions>;
  headers: Record<string, string>;
}

/** The header a server credential names the user it acts for in. */
export const USER_HEADER = "Credits-User";

/**
 * One logical call: the same request (same idempotency key) is re-sent on
 * a network error, a 503 (the change may or may not have been applied) or
 * a 429 (API Gateway throttled it before any function ran), with jittered
 * exponential backoff honouring `Retry-After`, up to `maxAttempts`. A 401
 * asks a token provider for a fresh token and is retried once with it.
 * Any other answer is final.
 */
export async function send<R>(transport: Transport, spec: RequestSpec): Promise<{ body: R } & ResponseMeta> {
  const url = new URL(transport.baseUrl + spec.path);
  for (const [name, value] of Object.entries(spec.query ?? {})) {
    if (value !== undefined) url.searchParams.set(name, String(value));
  }
  const headers: Record<string, string> = { accept: "application/json", ...transport.headers };
  if (transport.acceptLanguage) headers["accept-language"] = transport.acceptLanguage;
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
      token = freshToken ?? (typeof transport.token === "function" ? await transport.token({}) : transport.token);
    } catch (error) {
      if (retryableTokenError(error) && attempt < transport.retry.maxAttempts) {
        await sleep(backoff(transport.retry, attempt, undefined), spec.signal);
        continue;
      }
      throw error;
    }
    freshToken = undefined;
    if (token) headers["authorization"] = `Bearer ${token}`;
    else delete headers["authorization"];

    let response: Response;
    try {
      response = await transport.fetchImpl(url, {
        method: spec.method,
        headers,
        ...(body !== undefined && { body }),
        ...(spec.signal && { signal: spec.signal }),
      });
    } catch (cause) {
      if (spec.signal?.aborted) throw cause;
      if (attempt >= transport.retry.maxAttempts || spec.notRepeatable !== undefined) {
        throw new CreditsError({
          status: 0,
          code: "network_error",
          detail: `${what} failed after ${attempt} attempt(s): ${String((cause as Error)?.message ?? cause)}${unknownOutcome}`,
          ...(spec.idempotencyKey !== undefined && { idempotencyKey: spec.idempotencyKey }),
          cause,
        });
      }
      maybeApplied = true;
      await sleep(backoff(transport.retry, attempt, undefined), spec.signal);
      continue;
    }

    // A token that expired or was revoked: one more try with a fresh one.
    if (response.status === 401 && !refreshed && token && typeof transport.token === "function") {
      refreshed = true;
      const fresh = await transport.token({ rejected: token });
      if (fresh && fresh !== token) {
        await response.body?.cancel().catch(() => {});
        freshToken = fresh;
        attempt--; // not one of the retry budget's attempts
        continue;
      }
    }

    const retryAfter = parseRetryAfter(response.headers.get("retry-after"));
    const retryable = response.status === 429 || (response.status === 503 && spec.notRepeatable === undefined);
    if (retryable && attempt < transport.retry.maxAttempts) {
      if (response.status === 503) maybeApplied = true;
      await response.body?.cancel().catch(() => {});
      await sleep(backoff(transport.retry, attempt, retryAfter), spec.signal);
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
function backoff(retry: Required<RetryOptions>, attempt: number, retryAfterSeconds: number | undefined): number {
  const exp = Math.min(retry.maxDelayMs, retry.baseDelayMs * 2 ** (attempt - 1));
  const jittered = Math.random() * exp;
  if (retryAfterSeconds === undefined) return jittered;
  return Math.min(retry.maxDelayMs, retryAfterSeconds * 1000 + jittered / 4);
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

/** Token endpoint failures worth another attempt: unreachable, throttled, or a 5xx. */
const retryableTokenError = (error: unknown) =>
  error instanceof CreditsError &&
  error.code === "token_error" &&
  (error.status === 0 || error.status === 429 || error.status >= 500);
