// Credentials: a static bearer token, a function that gives one, or the
// OAuth 2.0 client-credentials grant (RFC 6749 §4.4), which is how the app's
// back end gets its `credits/server` token from Cognito or any OAuth server.
import { CreditsError } from "./errors.js";

/**
 * Gives the bearer token for a request. `rejected` is set when the API just
 * answered 401 to that token: give a fresh one (the client then retries the
 * request once), or the same one to give up. A plain `() => Promise<string>`
 * fits.
 */
export type TokenProvider = (context: { rejected?: string }) => string | Promise<string>;

export interface ClientCredentialsConfig {
  /** The app client's id (in `CREDITS_SERVER_CLIENT_IDS` / `ServerClientIds`). */
  clientId: string;
  clientSecret: string;
  /** The token endpoint, e.g. `https://<domain>.auth.<region>.amazoncognito.com/oauth2/token`. */
  tokenUrl: string;
  /** Space-separated scopes to ask for (default `credits/server`). */
  scope?: string;
  /** Fetch a new token this long before the current one expires (default 60; at most half its lifetime). */
  refreshMarginSeconds?: number;
  /** The fetch to use (default: the client's, else the platform's). */
  fetch?: typeof fetch;
}

/** Form encoding of the client id and secret before Basic auth (RFC 6749 §2.3.1). */
const formEncode = (value: string) => encodeURIComponent(value).replace(/%20/g, "+");

/**
 * A token provider for the client-credentials grant: POSTs
 * `grant_type=client_credentials&scope=…` to `tokenUrl` with HTTP Basic
 * `client_id:client_secret`, keeps the access token until shortly before
 * `expires_in` runs out (a token without `expires_in` is kept until the API
 * refuses it), and shares one fetch between concurrent callers. A token the
 * API answered 401 to is dropped and a new one fetched.
 *
 * Failures are `CreditsError`s with code `token_error` (status: the token
 * endpoint's, 0 when it could not be reached); the secret is never in them.
 */
export function clientCredentials(config: ClientCredentialsConfig): TokenProvider {
  if (!config.clientId || !config.clientSecret || !config.tokenUrl) {
    throw new TypeError("clientCredentials needs clientId, clientSecret and tokenUrl");
  }
  const scope = config.scope ?? "credits/server";
  const marginMs = Math.max(0, (config.refreshMarginSeconds ?? 60) * 1000);
  const fetchImpl = config.fetch ?? ((input, init) => globalThis.fetch(input, init));
  const basic = btoa(`${formEncode(config.clientId)}:${formEncode(config.clientSecret)}`);
  let cached: { token: string; refreshAt: number } | undefined;
  let inflight: Promise<string> | undefined;

  const failure = (status: number, detail: string, cause?: unknown) =>
    new CreditsError({ status, code: "token_error", detail: `token endpoint ${config.tokenUrl}: ${detail}`, cause });

  async function fetchToken(): Promise<string> {
    const started = Date.now();
    const body = new URLSearchParams({ grant_type: "client_credentials" });
    if (scope) body.set("scope", scope);
    let response: Response;
    try {
      response = await fetchImpl(config.tokenUrl, {
        method: "POST",
        headers: {
          authorization: `Basic ${basic}`,
          "content-type": "application/x-www-form-urlencoded",
          accept: "application/json",
        },
        body: body.toString(),
      });
    } catch (cause) {
      throw failure(0, `unreachable: ${String((cause as Error)?.message ?? cause)}`, cause);
    }
    const text = await response.text().catch(() => "");
    let parsed: Record<string, unknown> = {};
    try {
      const value: unknown = JSON.parse(text);
      if (value && typeof value === "object") parsed = value as Record<string, unknown>;
    } catch {
      // not JSON: reported below
    }
    if (!response.ok) {
      const what = [parsed.error, parsed.error_description].filter((v) => typeof v === "string").join(": ");
      throw failure(response.status, `HTTP ${response.status}${what ? ` (${what})` : ""}`);
    }
    const token = parsed.access_token;
    if (typeof token !== "string" || token.length === 0) {
      throw failure(response.status, "the answer has no access_token");
    }
    const expiresIn = typeof parsed.expires_in === "number" ? parsed.expires_in : Number(parsed.expires_in);
    let refreshAt = Number.POSITIVE_INFINITY;
    if (Number.isFinite(expiresIn) && expiresIn > 0) {
      const lifetime = expiresIn * 1000;
      refreshAt = started + lifetime - Math.min(marginMs, lifetime / 2);
    }
    cached = { token, refreshAt };
    return token;
  }

  return async ({ rejected } = {}) => {
    if (rejected !== undefined && cached?.token === rejected) cached = undefined;
    if (cached && Date.now() < cached.refreshAt) return cached.token;
    inflight ??= fetchToken().finally(() => {
      inflight = undefined;
    });
    return inflight;
  };
}
