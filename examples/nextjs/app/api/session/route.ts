// The sign-in stand-in's routes (see lib/session.ts; a real app's identity
// provider replaces them):
// POST (form: userId)  → signs in, back to the page
// POST (form: signout) → signs out, back to the sign-in page
// GET                  → who is signed in, their own token for the credits
//                        API (reads only) and where that API is
import { creditsApi } from "../../../lib/credits";
import { clearedSessionCookie, currentUserId, isUserId, sameOrigin, sessionCookie, userToken } from "../../../lib/session";

export async function POST(request: Request): Promise<Response> {
  if (!sameOrigin(request)) return Response.json({ code: "forbidden", detail: "Sign in from this app's own page." }, { status: 403 });
  const form = await request.formData().catch(() => null);
  if (form?.has("signout")) {
    return new Response(null, { status: 303, headers: { location: "/signin", "set-cookie": clearedSessionCookie() } });
  }
  const userId = form?.get("userId");
  if (!isUserId(userId)) {
    return Response.json({ code: "validation_error", detail: "userId: 1-64 of A-Z a-z 0-9 . _ @ -" }, { status: 400 });
  }
  return new Response(null, { status: 303, headers: { location: "/", "set-cookie": sessionCookie(userId) } });
}

export async function GET(request: Request): Promise<Response> {
  const userId = currentUserId(request.headers);
  if (!userId) return Response.json({ userId: null }, { headers: { "cache-control": "no-store" } });
  return Response.json(
    { userId, token: userToken(userId), api: creditsApi },
    { headers: { "cache-control": "private, no-store" } },
  );
}
