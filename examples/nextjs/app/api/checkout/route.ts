// POST /api/checkout {"pack": "starter"}: the "Buy 100 credits" button.
// Creates a Stripe Checkout Session for the user of the app's own session
// and answers its `url`; the browser goes there to pay. Nothing here grants
// credits: once the payment settles, Stripe calls the credits API's
// /v1/webhooks/stripe, which grants the pack in `metadata.pack` to
// `client_reference_id`, once per session.
//
// In the browser:
//   const res = await fetch("/api/checkout", { method: "POST", body: JSON.stringify({ pack: "starter" }) });
//   if (res.ok) location.assign((await res.json()).url);
import { signInFirst } from "../../../lib/credits";
import { currentUserId } from "../../../lib/session";
import { isPack, packs, priceOf, priceVariable, stripeClient } from "../../../lib/stripe";

export async function POST(request: Request): Promise<Response> {
  // Whom the credits go to comes from the app's verified session, never from the request's data.
  const userId = currentUserId(request.headers);
  if (!userId) return signInFirst();

  let pack: unknown;
  try {
    pack = ((await request.json()) as { pack?: unknown } | null)?.pack;
  } catch {
    return Response.json({ code: "validation_error", detail: "Send a JSON body." }, { status: 400 });
  }
  if (!isPack(pack)) {
    return Response.json({ code: "validation_error", detail: `pack: one of ${packs.join(", ")}.` }, { status: 400 });
  }
  const price = priceOf(pack);
  if (!price) {
    console.error(`no Stripe price for the pack ${pack}: set ${priceVariable(pack)}`);
    return Response.json({ code: "internal", detail: "Something went wrong." }, { status: 500 });
  }

  // Where Stripe sends the browser back: APP_URL when set (behind a proxy), else this request's origin.
  const app = (process.env.APP_URL ?? new URL(request.url).origin).replace(/\/+$/, "");
  try {
    const session = await stripeClient().checkout.sessions.create({
      mode: "payment",
      line_items: [{ price, quantity: 1 }],
      client_reference_id: userId, // who gets the credits
      metadata: { pack }, // what they get: the credits API's pack, not the price's amount
      // Keep the card for auto-recharge: a customer, and the card set up to be
      // charged when the user is away (the service reads both from the payment).
      customer_creation: "always",
      payment_intent_data: { setup_future_usage: "off_session" },
      success_url: `${app}/credits?checkout=success`,
      cancel_url: `${app}/credits?checkout=cancelled`,
    });
    if (!session.url) throw new Error(`Checkout Session ${session.id} has no url`);
    return Response.json({ url: session.url }, { headers: { "cache-control": "no-store" } });
  } catch (error) {
    console.error(error);
    return Response.json({ code: "payment_unavailable", detail: "Payment is unavailable, try again." }, { status: 502 });
  }
}
