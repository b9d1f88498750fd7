// Signs test payloads with Stripe's own library (npm `stripe`), for the
// tests: reads JSON lines {"payload", "secret", "timestamp"} on stdin and
// prints the Stripe-Signature header of each, one per line.
import { createInterface } from "node:readline";
import Stripe from "stripe";

const stripe = new Stripe("sk_test_unused");
for await (const line of createInterface({ input: process.stdin })) {
  if (!line.trim()) continue;
  const { payload, secret, timestamp } = JSON.parse(line);
  console.log(stripe.webhooks.generateTestHeaderString({ payload, secret, timestamp }));
}
