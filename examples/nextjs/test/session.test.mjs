// The sign-in stand-in (lib/session.ts, app/api/session): what a copy of it
// must keep when the stand-in is replaced by a real sign-in.
import assert from "node:assert/strict";
import { beforeEach, test } from "node:test";

import { POST } from "../build/app/api/session/route.js";
import { currentUserId } from "../build/lib/session.js";

const APP = "http://127.0.0.1:3001";
const signIn = (origin, userId = "ana") =>
  POST(
    new Request(`${APP}/api/session`, {
      method: "POST",
      headers: { "content-type": "application/x-www-form-urlencoded", ...(origin && { origin }) },
      body: new URLSearchParams({ userId }),
    }),
  );

beforeEach(() => {
  Object.assign(process.env, { DEMO_SIGN_IN: "1", SESSION_SECRET: "test-session-secret", APP_URL: APP });
});

test("a sign-in from the app's own page sets a session that names the user", async () => {
  const res = await signIn(APP);
  assert.equal(res.status, 303);
  const cookie = res.headers.get("set-cookie").split(";")[0];
  assert.equal(currentUserId(new Headers({ cookie })), "ana");
});

test("a sign-in posted from another site (or with no Origin) is refused and sets no session", async () => {
  for (const origin of ["https://evil.example", "http://127.0.0.1:3001.evil.example", null]) {
    const res = await signIn(origin);
    assert.equal(res.status, 403, String(origin));
    assert.equal(res.headers.get("set-cookie"), null);
  }
});

test("a user id the stand-in would not accept is refused", async () => {
  for (const userId of ["", "a b", "x".repeat(65), "ana,bob"]) {
    assert.equal((await signIn(APP, userId)).status, 400, JSON.stringify(userId));
  }
});

test("the stand-in works only when asked for, on a loopback address", async () => {
  const cookie = (await signIn(APP)).headers.get("set-cookie").split(";")[0];
  delete process.env.DEMO_SIGN_IN;
  assert.throws(() => currentUserId(new Headers({ cookie })), /stand-in/);
  process.env.DEMO_SIGN_IN = "1";
  process.env.APP_URL = "https://app.example";
  assert.throws(() => currentUserId(new Headers({ cookie })), /stand-in/);
});
