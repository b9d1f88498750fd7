import type { ReactNode } from "react";
import { headers } from "next/headers";
import { languageOf } from "../lib/credits";
import { wordsFor } from "../lib/i18n";
import { currentUserId } from "../lib/session";
import "./globals.css";

export const metadata = { title: "Pixel Studio · credits example" };

export default async function RootLayout({ children }: { children: ReactNode }) {
  const requestHeaders = await headers();
  const language = languageOf(requestHeaders);
  const words = wordsFor(language);
  const userId = currentUserId(requestHeaders);
  return (
    <html lang={language}>
      <body>
        <header>
          <a className="brand" href="/">
            {words.appName}
            <small>{words.tagline}</small>
          </a>
          <nav>
            {userId && (
              <>
                <a href="/">{words.navGenerate}</a>
                <a href="/credits">{words.navBuy}</a>
                <a href="/history">{words.navHistory}</a>
              </>
            )}
          </nav>
          {userId && (
            <div className="who">
              {words.signedInAs} <strong data-testid="user">{userId}</strong>
              <form action="/api/session" method="post">
                <button className="quiet" name="signout" value="1">
                  {words.signOut}
                </button>
              </form>
            </div>
          )}
        </header>
        <main>{children}</main>
      </body>
    </html>
  );
}
