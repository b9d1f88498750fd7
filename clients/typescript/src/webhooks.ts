// Checking the outgoing events the service POSTs to a registered webhook
// endpoint (Standard Webhooks, https://www.standardwebhooks.com):
//
//   webhook-id:        the event id (`evt_…`), the same on every attempt
//   webhook-timestamp: when this attempt was signed, in Unix seconds
//   webhook-signature: `v1,<base64 HMAC-SHA256(key, "<id>.<timestamp>.<raw body>")>`,
//                      possibly several, separated by spaces
//
// where the key is the base64-decoded part of the endpoint's secret after
// `whsec_`. WebCrypto only (`crypto.subtle`), so it runs on Node ≥ 18,
// browsers, and edge runtimes (Vercel, Cloudflare Workers, Deno).

import type { CreditsEvent } from "./types.js";

/** Why a delivery was refused. */
export type WebhookVerificationReason =
  /** `webhook-id`, `webhook-timestamp` or `webhook-signature` is absent or empty. */
  | "missing_header"
  /** `webhook-timestamp` is not a whole number of seconds. */
  | "invalid_timestamp"
  /** Signed longer ago than the tolerance (a replay, or a clock far behind). */
  | "timestamp_too_old"
  /** Signed further in the future than the tolerance (a clock far ahead). */
  | "timestamp_too_new"
  /** No `v1,` signature matches: another secret, or a changed id, timestamp or body. */
  | "invalid_signature"
  /** The secret given to `verifyWebhook` is not `whsec_` + base64 (a configuration error). */
  | "invalid_secret"
  /** Signed correctly, but the body is not a JSON object. */
  | "invalid_payload";

/**
 * A webhook delivery that must not be trusted: answer it with a 4xx (e.g.
 * 400 or 401) and do not act on it. Its message never contains the secret
 * or the signatures.
 */
export class WebhookVerificationError extends Error {
  readonly reason: WebhookVerificationReason;

  constructor(reason: WebhookVerificationReason, message: string) {
    super(message);
    this.name = "WebhookVerificationError";
    this.reason = reason;
  }
}

export function isWebhookVerificationError(error: unknown): error is WebhookVerificationError {
  return error instanceof WebhookVerificationError;
}

/** The request headers: a fetch `Headers`, or a plain object such as Node's `req.headers`. */
export type WebhookHeaders = Headers | Record<string, string | string[] | undefined>;

export interface VerifyWebhookOptions {
  /**
   * How far `webhook-timestamp` may be from `now`, either way, in seconds
   * (default 300, as the Standard Webhooks libraries).
   */
  toleranceSeconds?: number;
  /** The current time: Unix seconds, or a `Date` (default: the clock). For tests. */
  now?: number | Date;
}

/** The tolerance Standard Webhooks libraries use: 5 minutes. */
export const DEFAULT_WEBHOOK_TOLERANCE_SECONDS = 300;

const SECRET_PREFIX = "whsec_";
const encoder = new TextEncoder();

/**
 * Checks a delivery of the service's outgoing events and answers the event
 * it carries, typed by `type` (switch on `event.type` for its `data`).
 *
 * Pass the **raw** body, exactly as received (a string, or the bytes),
 * before any JSON parsing: a re-serialized body does not match its
 * signature. `secret` is the `whsec_…` that `adminCreateWebhookEndpoint`
 * answered (keep it in a secret store; it is never logged here).
 *
 * Throws `WebhookVerificationError` (its `reason` says why) when a header is
 * missing, the timestamp is more than `toleranceSeconds` (default 300) from
 * now either way, no `v1,` signature of `webhook-signature` matches (each
 * is compared in constant time), or the body is not a JSON object.
 *
 * Deliveries are at least once: deduplicate by `event.id` (the
 * `webhook-id`). New event types and fields may appear: ignore those you
 * do not know.
 */
export async function verifyWebhook(
  secret: string,
  headers: WebhookHeaders,
  body: string | Uint8Array,
  options: VerifyWebhookOptions = {},
): Promise<CreditsEvent> {
  const key = secretKey(secret);
  const id = header(headers, "webhook-id");
  const timestamp = header(headers, "webhook-timestamp");
  const signatures = header(headers, "webhook-signature");
  const missing = [
    id === undefined && "webhook-id",
    timestamp === undefined && "webhook-timestamp",
    signatures === undefined && "webhook-signature",
  ].filter((name): name is string => typeof name === "string");
  if (id === undefined || timestamp === undefined || signatures === undefined) {
    throw new WebhookVerificationError("missing_header", `missing header(s): ${missing.join(", ")}`);
  }

  if (!/^[0-9]{1,15}$/.test(timestamp)) {
    throw new WebhookVerificationError("invalid_timestamp", "webhook-timestamp is not a Unix time in seconds");
  }
  const sent = Number(timestamp);
  const now = nowSeconds(options.now);
  const tolerance = options.toleranceSeconds ?? DEFAULT_WEBHOOK_TOLERANCE_SECONDS;
  if (!(Number.isFinite(tolerance) && tolerance >= 0)) {
    throw new TypeError(`toleranceSeconds: a number ≥ 0, got ${String(tolerance)}`);
  }
  if (now - sent > tolerance) {
    throw new WebhookVerificationError("timestamp_too_old", `webhook-timestamp is more than ${tolerance} s old`);
  }
  if (sent - now > tolerance) {
    throw new WebhookVerificationError("timestamp_too_new", `webhook-timestamp is more than ${tolerance} s ahead`);
  }

  const raw = typeof body === "string" ? encoder.encode(body) : body;
  const expected = await hmac(key, id, timestamp, raw);
  let matched = false;
  // Space-separated; a header sent twice may arrive joined with ", ".
  for (const candidate of signatures.split(/\s+/)) {
    if (!candidate.startsWith("v1,")) continue; // another scheme (e.g. `v1a,`): not ours
    const given = fromBase64(candidate.slice(3).replace(/,$/, ""));
    // Every candidate is compared in full, even after a match.
    if (given !== undefined && constantTimeEqual(given, expected)) matched = true;
  }
  if (!matched) {
    throw new WebhookVerificationError("invalid_signature", "no webhook-signature matches the body and the secret");
  }

  let event: unknown;
  try {
    event = JSON.parse(typeof body === "string" ? body : new TextDecoder("utf-8", { fatal: true }).decode(body));
  } catch {
    throw new WebhookVerificationError("invalid_payload", "the body is not JSON");
  }
  // What the holder of the secret signed: the service signs only events.
  if (event === null || typeof event !== "object" || Array.isArray(event)) {
    throw new WebhookVerificationError("invalid_payload", "the body is not a JSON object");
  }
  return event as CreditsEvent;
}

/**
 * The `webhook-signature` value the service sends for `body`:
 * `v1,<base64 HMAC-SHA256>`. For testing a receiver (sign a body of your
 * own and check that `verifyWebhook` takes it).
 */
export async function signWebhook(
  secret: string,
  id: string,
  timestamp: number | string,
  body: string | Uint8Array,
): Promise<string> {
  const raw = typeof body === "string" ? encoder.encode(body) : body;
  return `v1,${toBase64(await hmac(secretKey(secret), id, String(timestamp), raw))}`;
}

/** The HMAC key: the base64 part of `whsec_…` (a secret without the prefix is taken as base64 too). */
function secretKey(secret: string): Uint8Array {
  if (typeof secret !== "string") {
    throw new WebhookVerificationError("invalid_secret", "the webhook secret is not a string");
  }
  const encoded = secret.startsWith(SECRET_PREFIX) ? secret.slice(SECRET_PREFIX.length) : secret;
  const key = fromBase64(encoded.trim());
  if (key === undefined || key.length === 0) {
    // Never echo the secret.
    throw new WebhookVerificationError("invalid_secret", "the webhook secret is not whsec_ followed by base64");
  }
  return key;
}

async function hmac(key: Uint8Array, id: string, timestamp: string, body: Uint8Array): Promise<Uint8Array> {
  const subtle = await subtleCrypto();
  const prefix = encoder.encode(`${id}.${timestamp}.`);
  const message = new Uint8Array(prefix.length + body.length);
  message.set(prefix, 0);
  message.set(body, prefix.length);
  const cryptoKey = await subtle.importKey("raw", new Uint8Array(key), { name: "HMAC", hash: "SHA-256" }, false, ["sign"]);
  return new Uint8Array(await subtle.sign("HMAC", cryptoKey, message));
}

let subtlePromise: Promise<SubtleCrypto> | undefined;

/**
 * `crypto.subtle`: the global one (Node ≥ 19, browsers, edge runtimes), or
 * on Node 18 (no global `crypto` without a flag) `node:crypto`'s
 * `webcrypto`, imported only then, out of bundlers' sight.
 */
function subtleCrypto(): Promise<SubtleCrypto> {
  const global = (globalThis as { crypto?: Crypto }).crypto;
  if (global?.subtle) return Promise.resolve(global.subtle);
  subtlePromise ??= (async () => {
    const specifier = "node:crypto";
    try {
      const mod = (await import(/* webpackIgnore: true */ specifier)) as { webcrypto?: Crypto };
      if (mod.webcrypto?.subtle) return mod.webcrypto.subtle;
    } catch {
      // not Node
    }
    subtlePromise = undefined;
    throw new Error("verifyWebhook needs WebCrypto (crypto.subtle), which this runtime lacks");
  })();
  return subtlePromise;
}

/** Equal length and equal bytes, looking at every byte whatever differs. */
function constantTimeEqual(a: Uint8Array, b: Uint8Array): boolean {
  if (a.length !== b.length) return false; // the length of an HMAC-SHA256 is no secret
  let diff = 0;
  for (let i = 0; i < a.length; i++) diff |= (a[i] as number) ^ (b[i] as number);
  return diff === 0;
}

/** Standard base64 (padding optional) → bytes; `undefined` when it is not base64. */
function fromBase64(text: string): Uint8Array | undefined {
  if (text.length === 0 || !/^[A-Za-z0-9+/]+={0,2}$/.test(text) || text.replace(/=+$/, "").length % 4 === 1) {
    return undefined;
  }
  try {
    const binary = atob(text);
    const bytes = new Uint8Array(binary.length);
    for (let i = 0; i < binary.length; i++) bytes[i] = binary.charCodeAt(i);
    return bytes;
  } catch {
    return undefined;
  }
}

function toBase64(bytes: Uint8Array): string {
  let binary = "";
  for (const byte of bytes) binary += String.fromCharCode(byte);
  return btoa(binary);
}

/** A header's value, case-insensitively, trimmed; `undefined` when absent or empty. */
function header(headers: WebhookHeaders, name: string): string | undefined {
  let value: string | string[] | null | undefined;
  if (typeof (headers as Headers).get === "function") {
    value = (headers as Headers).get(name);
  } else {
    const record = headers as Record<string, string | string[] | undefined>;
    value = record[name];
    if (value === undefined) {
      for (const [key, v] of Object.entries(record)) {
        if (key.toLowerCase() === name) {
          value = v;
          break;
        }
      }
    }
  }
  // A header sent more than once (Node gives an array): its values, space-separated.
  if (Array.isArray(value)) value = value.join(" ");
  const trimmed = typeof value === "string" ? value.trim() : "";
  return trimmed.length > 0 ? trimmed : undefined;
}

function nowSeconds(now: number | Date | undefined): number {
  if (now === undefined) return Math.floor(Date.now() / 1000);
  const seconds = now instanceof Date ? Math.floor(now.getTime() / 1000) : now;
  if (!Number.isFinite(seconds)) throw new TypeError(`now: Unix seconds or a Date, got ${String(now)}`);
  return seconds;
}
