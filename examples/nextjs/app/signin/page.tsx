// The sign-in stand-in (lib/session.ts). A real app puts its identity
// provider's sign-in here: Auth.js, Cognito's hosted UI, Clerk.
import { headers } from "next/headers";
import { languageOf } from "../../lib/credits";
import { wordsFor } from "../../lib/i18n";

const DEMO_USERS = ["demo-user", "ana", "bruno", "carmen"];

export default async function SignIn() {
  const words = wordsFor(languageOf(await headers()));
  return (
    <div className="card" style={{ maxWidth: 520, margin: "2rem auto" }}>
      <h2>{words.signInTitle}</h2>
      <p className="small">{words.signInNote}</p>
      <label>{words.signInPick}</label>
      <form action="/api/session" method="post" className="users">
        {DEMO_USERS.map((user) => (
          <button key={user} name="userId" value={user}>
            {user}
          </button>
        ))}
      </form>
      <form action="/api/session" method="post">
        <label htmlFor="userId">{words.signInType}</label>
        <div className="row">
          <input id="userId" name="userId" required pattern="[A-Za-z0-9._@\-]{1,64}" placeholder="alice@example.com" />
          <button className="narrow" type="submit">
            {words.signInButton}
          </button>
        </div>
      </form>
    </div>
  );
}
