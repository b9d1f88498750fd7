import { CreditsClient, CreditsError, type CreditsClientOptions, type Language } from "@credits/client";

/** The credits API (the dev server prints it as `API`). */
export const creditsApi = (process.env.CREDITS_API_URL ?? "http://127.0.0.1:3000").replace(/\/+$/, "");

/**
 * Maps the browser's Accept-Language (a request's or a server component's
 * `headers()`) to one the credits API speaks: its errors' `detail` and this
 * app's pages follow it.
 */
export function languageOf(headers: Headers): Language {
  const header = (headers.get("accept-language") ?? "").toLowerCase();
  const first = header.split(",")[0]?.trim() ?? "";
  if (first.startsWith("pt")) return "pt-BR";
  if (first.startsWith("es")) return "es-ES";
  return "en-US";
}

/**
 * The app server's credential: the OAuth client-credentials grant of an app
 * client listed in the API's `ServerClientIds` (scope `credits/server`), or
 * for local development the dev server's `SERVER_TOKEN`.
 */
function serverCredential(): Pick<CreditsClientOptions, "token" | "clientCredentials"> {
  const clientId = process.env.CREDITS_CLIENT_ID;
  const clientSecret = process.env.CREDITS_CLIENT_SECRET;
  const tokenUrl = process.env.CREDITS_TOKEN_URL;
  if (clientId || clientSecret || tokenUrl) {
    if (!clientId || !clientSecret || !tokenUrl) {
      throw new Error("set all of CREDITS_CLIENT_ID, CREDITS_CLIENT_SECRET and CREDITS_TOKEN_URL");
    }
    return { clientCredentials: { clientId, clientSecret, tokenUrl } };
  }
  const token = process.env.CREDITS_SERVER_TOKEN;
  if (token) return { token };
  throw new Error(
    "no credits server credential: set CREDITS_CLIENT_ID, CREDITS_CLIENT_SECRET and CREDITS_TOKEN_URL " +
      "(or CREDITS_SERVER_TOKEN for local development)",
  );
}

let server: CreditsClient | undefined;

/** The app server's credits client: one per process, so one cached token for all requests. */
export function serverClient(): CreditsClient {
  server ??= new CreditsClient({ baseUrl: creditsApi, ...serverCredential() });
  return server;
}

/**
 * The server credential acting for `userId` (from `currentUserId`, the
 * app's session), in the browser's language: it places and settles that
 * user's holds, and a hold of anyone else answers 404.
 */
export function creditsFor(userId: string, headers: Headers): CreditsClient {
  return serverClient().with({ user: userId, acceptLanguage: languageOf(headers) });
}

/** The app's answer when no user is signed in. */
export const signInFirst = () => Response.json({ code: "unauthorized", detail: "Sign in first." }, { status: 401 });

/** A credits error as the app's JSON answer (same status, stable code, localized detail). */
export function errorResponse(error: unknown): Response {
  if (error instanceof CreditsError && error.code !== "token_error") {
    const body: Record<string, unknown> = { code: error.code, detail: error.detail, requestId: error.requestId };
    if (error.code === "insufficient_credits") {
      Object.assign(body, { available: error.available, required: error.required, shortfall: error.shortfall });
    }
    if (error.code === "too_many_open_holds") Object.assign(body, { openHolds: error.openHolds, limit: error.limit });
    const status = error.status === 0 ? 502 : error.status;
    const headers: Record<string, string> = {};
    if (error.retryAfter !== undefined) headers["retry-after"] = String(Math.ceil(error.retryAfter));
    return Response.json(body, { status, headers });
  }
  // The server's own credential failing (token endpoint, configuration) is the app's problem, not the user's.
  console.error(error);
  return Response.json({ code: "internal", detail: "Something went wrong." }, { status: 500 });
}
