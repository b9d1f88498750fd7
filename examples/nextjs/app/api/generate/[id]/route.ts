// GET /api/generate/{reservationId}: the hold's status and events, for a UI polling a long job.
// The server credential acts for the session's user: a hold of anyone else answers 404.
import { creditsFor, currentUserId, errorResponse, signInFirst } from "../../../../lib/credits";

export async function GET(request: Request, context: { params: Promise<{ id: string }> }): Promise<Response> {
  const userId = await currentUserId(request);
  if (!userId) return signInFirst();
  const { id } = await context.params;
  try {
    const credits = creditsFor(userId, request);
    const [reservation, balance] = await Promise.all([credits.getReservation(id), credits.getBalance()]);
    return Response.json({
      status: reservation.status,
      charged: reservation.capturedAmount,
      events: reservation.events,
      balance: { available: balance.available, reserved: balance.reserved },
    });
  } catch (error) {
    return errorResponse(error);
  }
}
