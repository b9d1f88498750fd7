import Stripe from "stripe";

/**
 * The packs the app sells, each with the variable that holds its Stripe
 * price id. The names are the credits API's catalog (`shared/prices.json`:
 * `starter` 100 credits, `studio` 500, `trial` 20 expiring 30 days after
 * the purchase): the webhook grants the pack named in `metadata.pack`, so
 * what a user gets never depends on the price's amount or the browser.
 */
const packPrices = {
  starter: "STRIPE_PRICE_STARTER",
  studio: "STRIPE_PRICE_STUDIO",
  trial: "STRIPE_PRICE_TRIAL",
} as const;

export type Pack = keyof typeof packPrices;

export const packs = Object.keys(packPrices) as Pack[];

/** Whether `value` is one of the packs on sale (an allow-list, not the browser's word). */
export function isPack(value: unknown): value is Pack {
  return typeof value === "string" && Object.hasOwn(packPrices, value);
}

/** The Stripe price id of a pack (`price_…`), or undefined when not configured. */
export function priceOf(pack: Pack): string | undefined {
  return process.env[packPrices[pack]] || undefined;
}

/** The variable a pack's price id is read from, for configuration errors. */
export function priceVariable(pack: Pack): string {
  return packPrices[pack];
}

let stripe: Stripe | undefined;

/**
 * One Stripe client per process, with the secret key (`STRIPE_SECRET_KEY`,
 * `sk_…` or `rk_…`). `STRIPE_API_URL` points it elsewhere than
 * api.stripe.com: `make demo` sets it to its local stand-in.
 */
export function stripeClient(): Stripe {
  if (!stripe) {
    const key = process.env.STRIPE_SECRET_KEY;
    if (!key) throw new Error("set STRIPE_SECRET_KEY");
    const api = process.env.STRIPE_API_URL ? new URL(process.env.STRIPE_API_URL) : undefined;
    stripe = api
      ? new Stripe(key, { host: api.hostname, port: api.port, protocol: api.protocol === "http:" ? "http" : "https" })
      : new Stripe(key);
  }
  return stripe;
}

/** What a pack costs, from its Stripe price (`{amount: 900, currency: "usd"}`), or null when unknown. */
export async function packPrice(pack: Pack): Promise<{ amount: number; currency: string } | null> {
  const price = priceOf(pack);
  if (!price) return null;
  try {
    const found = await stripeClient().prices.retrieve(price);
    return found.unit_amount === null ? null : { amount: found.unit_amount, currency: found.currency };
  } catch (error) {
    console.error(error);
    return null;
  }
}

/**
 * Replaces the Stripe client (undefined: back to `STRIPE_SECRET_KEY`'s). For
 * tests: `new Stripe(key, { host: "127.0.0.1", port, protocol: "http" })`
 * talks to a local stub of Stripe's API.
 */
export function setStripeClient(client: Stripe | undefined): void {
  stripe = client;
}
