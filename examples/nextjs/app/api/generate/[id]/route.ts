// GET /api/generate/{reservationId}: the hold's status and events, for a UI polling a long job.
import { clientFor, errorResponse } from "../../../../lib/credits";

export async function GET(request: Request, context: { params: Promise<{ id: string }> }): Promise<Response> {
  const client = clientFor(request);
  if (!client) return Response.json({ code: "unauthorized", detail: "Sign in first." }, { status: 401 });
  const { id } = await context.params;
  try {
    const [reservation, balance] = await Promise.all([client.getReservation(id), client.getBalance()]);
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
