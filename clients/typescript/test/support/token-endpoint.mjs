// A tiny OAuth 2.0 token endpoint (client-credentials grant) for the tests:
// checks HTTP Basic client authentication and the form body, counts the
// requests, and answers `{access_token, expires_in, token_type}`.
import { createServer } from "node:http";

/**
 * `issue(n)` gives the answer to the n-th good request (1-based):
 * `{ token, expiresIn }`, or `{ status, body }` for a refusal.
 */
export async function startTokenEndpoint({ clientId, clientSecret, issue, delayMs = 0 }) {
  const requests = [];
  let issued = 0;
  const server = createServer((req, res) => {
    let raw = "";
    req.setEncoding("utf8");
    req.on("data", (chunk) => (raw += chunk));
    req.on("end", async () => {
      const form = new URLSearchParams(raw);
      const basic = /^Basic (.+)$/.exec(req.headers.authorization ?? "")?.[1];
      const [id, secret] = basic
        ? Buffer.from(basic, "base64")
            .toString("utf8")
            .split(":")
            .map((part) => decodeURIComponent(part.replace(/\+/g, " ")))
        : [];
      requests.push({
        method: req.method,
        contentType: req.headers["content-type"],
        grantType: form.get("grant_type"),
        scope: form.get("scope"),
        clientId: id,
      });
      const send = (status, body) => {
        res.writeHead(status, { "content-type": "application/json", "cache-control": "no-store" });
        res.end(JSON.stringify(body));
      };
      if (req.method !== "POST" || form.get("grant_type") !== "client_credentials") {
        return send(400, { error: "unsupported_grant_type" });
      }
      if (id !== clientId || secret !== clientSecret) {
        return send(401, { error: "invalid_client", error_description: "Client authentication failed" });
      }
      issued += 1;
      const answer = await issue(issued);
      if (delayMs > 0) await new Promise((r) => setTimeout(r, delayMs));
      if (answer.status) return send(answer.status, answer.body ?? {});
      send(200, {
        access_token: answer.token,
        ...(answer.expiresIn !== undefined && { expires_in: answer.expiresIn }),
        token_type: "Bearer",
      });
    });
  });
  await new Promise((resolve) => server.listen(0, "127.0.0.1", resolve));
  const { port } = server.address();
  return {
    tokenUrl: `http://127.0.0.1:${port}/oauth2/token`,
    /** Every request received, good or not. */
    requests,
    /** Tokens issued so far. */
    issued: () => issued,
    stop: () => new Promise((resolve) => server.close(() => resolve())),
  };
}
