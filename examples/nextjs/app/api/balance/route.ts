// GET /api/balance: the signed-in user's credits, read by this server with
// its own credential acting for the session's user (the browser names
// nobody). The page may also read `GET /v1/balance` straight from the
// credits API with the user's own token (CORS: `AllowedOrigins`).
import { creditsFor, errorResponse, signInFirst } from "../../../lib/credits";
import { currentUserId } from "../../../lib/session";

export async function GET(request: Request): Promise<Response> {
  const userId = currentUserId(request.headers);
  if (!userId) return signInFirst();
  try {
    const balance = await creditsFor(userId, request.headers).getBalance();
    return Response.json(balance, { headers: { "cache-control": "private, no-store" } });
  } catch (error) {
    return errorResponse(error);
  }
}
