import { CreditsClient, CreditsError, type Language } from "@credits/client";

/** The credits API (the dev server prints it as `API`). */
export const creditsApi = (process.env.CREDITS_API_URL ?? "http://127.0.0.1:3000").replace(/\/+$/, "");

/** Maps the browser's Accept-Language to one the credits API speaks. */
export function languageOf(request: Request): Language {
  const header = (request.headers.get("accept-language") ?? "").toLowerCase();
  const first = header.split(",")[0]?.trim() ?? "";
  if (first.startsWith("pt")) return "pt-BR";
  if (first.startsWith("es")) return "es-ES";
  return "en-US";
}

/**
 * A client acting as the signed-in user: the user's own JWT (the same one the
 * credits API's authorizer checks) is forwarded, so a user only ever touches
 * their own balance and holds.
 */
export function clientFor(request: Request): CreditsClient | null {
  const authorization = request.headers.get("authorization");
  const token = authorization?.match(/^Bearer\s+(\S+)$/i)?.[1];
  if (!token) return null;
  return new CreditsClient({ baseUrl: creditsApi, token, acceptLanguage: languageOf(request) });
}

/** A credits error as the app's JSON answer (same status, stable code, localized detail). */
export function errorResponse(error: unknown): Response {
  if (error instanceof CreditsError) {
    const body: Record<string, unknown> = { code: error.code, detail: error.detail, requestId: error.requestId };
    if (error.code === "insufficient_credits") {
      Object.assign(body, { available: error.available, required: error.required, shortfall: error.shortfall });
    }
    const status = error.status === 0 ? 502 : error.status;
    const headers: Record<string, string> = {};
    if (error.retryAfter !== undefined) headers["retry-after"] = String(Math.ceil(error.retryAfter));
    return Response.json(body, { status, headers });
  }
  console.error(error);
  return Response.json({ code: "internal", detail: "Something went wrong." }, { status: 500 });
}
