// GET /api/balance: the browser reads its own balance with its own token.
// The user's JWT (`Authorization: Bearer …`, from the same issuer the
// credits API trusts) is passed through as it is: the credits API takes the
// user from the token's `sub`, and a user token can only read. No server
// credential is involved, so nothing here can charge or credit anyone.
//
// In the browser (a client component, same origin):
//   const res = await fetch("/api/balance", { headers: { authorization: `Bearer ${idToken}` } });
//   const { available, reserved } = await res.json();
import { errorResponse, signInFirst, userClient } from "../../../lib/credits";

export async function GET(request: Request): Promise<Response> {
  const credits = userClient(request);
  if (!credits) return signInFirst();
  try {
    const { available, reserved, spent, granted, updatedAt } = await credits.getBalance();
    return Response.json(
      { available, reserved, spent, granted, updatedAt },
      { headers: { "cache-control": "private, no-store" } },
    );
  } catch (error) {
    return errorResponse(error);
  }
}
