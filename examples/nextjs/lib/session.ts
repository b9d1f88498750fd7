// ---------------------------------------------------------------------------
// SIGN-IN STAND-IN, for local use only. Replace this file with your app's
// own authentication:
//
// - Auth.js:  `const session = await auth(); return session?.user?.id ?? null`
// - Clerk:    `const { userId } = await auth(); return userId`
// - Cognito:  the `sub` of the session's ID token, verified with
//             aws-jwt-verify (`CognitoJwtVerifier.create({...}).verify(token)`)
//
// Whatever you use, `currentUserId` returns the user your session verified,
// the same id the credits API knows the user by (the `sub` of the user's own
// token). It never comes from what the browser sends as data (a header such
// as `Credits-User`, a query parameter, the body): the server credential may
// act for anyone, so whoever could choose that id would spend another user's
// credits.
//
// Here a signed cookie stands in for the session (HMAC-SHA256 with
// `SESSION_SECRET`, a random one per process when unset), and `userToken`
// stands in for the token Cognito would give the browser: an HS256 token
// signed with the dev server's secret (`CREDITS_DEV_JWT_SECRET`, the public
// default of `make run` when unset). It works only when `DEMO_SIGN_IN=1`
// (what `make demo` sets) and the app's URL is a loopback address.
// ---------------------------------------------------------------------------
import { createHmac, randomBytes, timingSafeEqual } from "node:crypto";

export const SESSION_COOKIE = "demo_session";

/** A user id the stand-in accepts: what a real identity provider's `sub` looks like. */
const USER_ID = /^[A-Za-z0-9._@-]{1,64}$/;

/** The dev server's default token secret (`make run`): public, so local only. */
const DEV_JWT_SECRET = "credits-dev-secret-not-for-production";

const holder = globalThis as { __creditsDemoSessionSecret?: string };

/** Anyone may sign in as anyone here: only on the developer's own machine, and only when asked for. */
function assertLocalDemo(): void {
  const app = process.env.APP_URL ? new URL(process.env.APP_URL).hostname : "127.0.0.1";
  if (process.env.DEMO_SIGN_IN !== "1" || !["127.0.0.1", "localhost", "[::1]"].includes(app)) {
    throw new Error("lib/session.ts is a local stand-in (DEMO_SIGN_IN=1, a loopback APP_URL): replace it with your app's authentication");
  }
}

function sessionSecret(): string {
  assertLocalDemo();
  // One random secret per process when none is set: a restart signs everyone out.
  holder.__creditsDemoSessionSecret ??= process.env.SESSION_SECRET || randomBytes(32).toString("hex");
  return holder.__creditsDemoSessionSecret;
}

function mac(value: string): string {
  return createHmac("sha256", sessionSecret()).update(value).digest("base64url");
}

export function isUserId(value: unknown): value is string {
  return typeof value === "string" && USER_ID.test(value);
}

/** The `Set-Cookie` value that signs `userId` in (HttpOnly: page scripts never see it). */
export function sessionCookie(userId: string): string {
  const value = `${Buffer.from(userId).toString("base64url")}.${mac(userId)}`;
  return `${SESSION_COOKIE}=${value}; Path=/; HttpOnly; SameSite=Lax; Max-Age=86400`;
}

/**
 * Whether a form POST comes from this app's own pages. A cross-site form
 * could otherwise sign the victim in as the attacker (whose purchases the
 * victim would then pay for), or out: a real sign-in needs the same check.
 */
export function sameOrigin(request: Request): boolean {
  const origin = request.headers.get("origin");
  const own = (process.env.APP_URL ?? new URL(request.url).origin).replace(/\/+$/, "");
  return origin !== null && origin === own;
}

/** The `Set-Cookie` value that signs out. */
export function clearedSessionCookie(): string {
  return `${SESSION_COOKIE}=; Path=/; HttpOnly; SameSite=Lax; Max-Age=0`;
}

/**
 * The signed-in user of this request, from its session cookie (`headers`:
 * a route handler's `request.headers`, or a server component's `headers()`),
 * or null.
 */
export function currentUserId(headers: Headers): string | null {
  const cookie = headers.get("cookie") ?? "";
  const raw = cookie
    .split(";")
    .map((part) => part.trim())
    .find((part) => part.startsWith(`${SESSION_COOKIE}=`))
    ?.slice(SESSION_COOKIE.length + 1);
  if (!raw) return null;
  const [encoded, signature] = raw.split(".");
  if (!encoded || !signature) return null;
  const userId = Buffer.from(encoded, "base64url").toString();
  const expected = Buffer.from(mac(userId));
  const given = Buffer.from(signature);
  if (given.length !== expected.length || !timingSafeEqual(given, expected)) return null;
  return isUserId(userId) ? userId : null;
}

/**
 * The user's own token for the credits API, as an identity provider would
 * give it to the browser: it can only read (balance, history, prices).
 */
export function userToken(userId: string, ttlSeconds = 3600): string {
  assertLocalDemo();
  const secret = process.env.CREDITS_DEV_JWT_SECRET || DEV_JWT_SECRET;
  const now = Math.floor(Date.now() / 1000);
  const part = (value: object) => Buffer.from(JSON.stringify(value)).toString("base64url");
  const unsigned = `${part({ alg: "HS256", typ: "JWT" })}.${part({ sub: userId, iat: now, exp: now + ttlSeconds, iss: "credits-dev" })}`;
  return `${unsigned}.${createHmac("sha256", secret).update(unsigned).digest("base64url")}`;
}
