// `make demo`: the example app (built with `next build`) and its two local
// stand-ins (an image provider shaped like BFL, and Stripe), against the
// credits API that `make run` serves. Ctrl-C stops all three.
//
// Environment (the Makefile sets the defaults):
//   CREDITS_API_URL                the credits API (http://127.0.0.1:3000)
//   CREDITS_SERVER_TOKEN           the app server's credential (make: `credits token --server`)
//   CREDITS_WEBHOOK_SECRET_BFL     the provider's webhook secret, as the credits API has it
//   CREDITS_STRIPE_WEBHOOK_SECRET  Stripe's webhook secret, as the credits API has it
//   DEMO_PORT                      the app's port (3001); the stand-ins take 3002 and 3003
//   DEMO_HOLD_TTL_SECONDS          a job's hold before the sweep returns it (120)
//   DEMO_IMAGE_MS, DEMO_SLOW_SECONDS  the provider's pace: per image (1200), a `slow` job (150)
import { spawn } from "node:child_process";
import { fileURLToPath } from "node:url";
import { startBfl } from "../standins/bfl.mjs";
import { startStripe } from "../standins/stripe.mjs";

const env = process.env;
const need = (name) => {
  if (!env[name]) {
    console.error(`make demo: ${name} is not set (run it through make demo)`);
    process.exit(2);
  }
  return env[name];
};
const api = (env.CREDITS_API_URL ?? "http://127.0.0.1:3000").replace(/\/+$/, "");
const port = Number(env.DEMO_PORT ?? "3001");
const host = "127.0.0.1";
const appUrl = `http://${host}:${port}`;
const log = (line) => console.log(line);

// The credits API answers 401 without a token: it is up.
try {
  await fetch(`${api}/v1/prices`);
} catch {
  console.error(`make demo: no credits API at ${api}. Start it first in another terminal: make run`);
  process.exit(1);
}

const bflKey = "demo-bfl-key";
const bfl = await startBfl({
  port: Number(env.DEMO_BFL_PORT ?? port + 1),
  apiKey: bflKey,
  imageMs: Number(env.DEMO_IMAGE_MS ?? "1200"),
  slowMs: Number(env.DEMO_SLOW_SECONDS ?? "150") * 1000,
  log,
});
const stripe = await startStripe({
  port: Number(env.DEMO_STRIPE_PORT ?? port + 2),
  webhookUrl: `${api}/v1/webhooks/stripe`,
  webhookSecret: need("CREDITS_STRIPE_WEBHOOK_SECRET"),
  log,
});

const next = spawn(process.execPath, [fileURLToPath(import.meta.resolve("next/dist/bin/next")), "start", "-p", String(port), "-H", host], {
  cwd: fileURLToPath(new URL("..", import.meta.url)),
  stdio: "inherit",
  env: {
    ...env,
    NEXT_TELEMETRY_DISABLED: "1",
    DEMO_SIGN_IN: "1",
    CREDITS_API_URL: api,
    CREDITS_SERVER_TOKEN: need("CREDITS_SERVER_TOKEN"),
    APP_URL: appUrl,
    BFL_API_URL: bfl.url,
    BFL_API_KEY: bflKey,
    BFL_WEBHOOK_SECRET: need("CREDITS_WEBHOOK_SECRET_BFL"),
    BFL_MAX_IMAGES: "4", // the stand-in's webhook reports the images made (`units`)
    STRIPE_API_URL: stripe.url,
    STRIPE_SECRET_KEY: "sk_test_demo",
    STRIPE_PRICE_STARTER: "price_demo_starter",
    STRIPE_PRICE_STUDIO: "price_demo_studio",
    STRIPE_PRICE_TRIAL: "price_demo_trial",
  },
});
console.log(`demo: open ${appUrl} (provider stand-in ${bfl.url}, Stripe stand-in ${stripe.url}, credits API ${api})`);

// The stand-ins close when Next.js has stopped.
const stop = () => next.kill("SIGTERM");
process.on("SIGINT", stop);
process.on("SIGTERM", stop);
next.on("exit", (code) => {
  bfl.server.closeAllConnections?.();
  stripe.server.closeAllConnections?.();
  bfl.server.close();
  stripe.server.close();
  process.exit(code ?? 0);
});
