"use client";
// The user's credits: what the app's server reads for the session's user,
// and the same figure read straight from the credits API with the user's
// own token (a read: the only thing that token can do).
import { useEffect, useState } from "react";
import type { Balance } from "@credits/client";
import type { Words } from "../../lib/i18n";

export function BalancePanel({ balance, words, language }: { balance: Balance; words: Words; language: string }) {
  const date = (at: string) => new Date(at).toLocaleDateString(language, { day: "numeric", month: "short", year: "numeric" });
  return (
    <div className="card" data-testid="balance">
      <h2>{words.balanceTitle}</h2>
      <div className="figure main">
        <span>{words.available}</span>
        <strong data-testid="available">{balance.available}</strong>
      </div>
      <div className="figure">
        <span>{words.reserved}</span>
        <strong data-testid="reserved">{balance.reserved}</strong>
      </div>
      <div className="figure">
        <span>{words.spent}</span>
        <strong data-testid="spent">{balance.spent}</strong>
      </div>
      {balance.lots.length > 0 && (
        <>
          <label>{words.lots}</label>
          {balance.lots.map((lot, i) => (
            <div className="small" key={i} data-testid="lot">
              {lot.remaining + lot.reserved} {words.credits} · {lot.expiresAt ? `${words.expires} ${date(lot.expiresAt)}` : words.never}
            </div>
          ))}
        </>
      )}
      {balance.nextExpiry && (
        <p className="hint">
          {words.nextExpiry}: {balance.nextExpiry.amount} · {date(balance.nextExpiry.at)}
        </p>
      )}
      <DirectBalance words={words} available={balance.available} />
    </div>
  );
}

/** `GET /v1/balance` from the browser, with the user's own token (CORS). */
function DirectBalance({ words, available }: { words: Words; available: number }) {
  const [direct, setDirect] = useState<number | "failed" | null>(null);
  useEffect(() => {
    let cancelled = false;
    (async () => {
      try {
        const session = (await (await fetch("/api/session")).json()) as { token?: string; api?: string };
        const answer = await fetch(`${session.api}/v1/balance`, { headers: { authorization: `Bearer ${session.token}` } });
        const body = (await answer.json()) as { available?: number };
        if (!cancelled) setDirect(answer.ok && typeof body.available === "number" ? body.available : "failed");
      } catch {
        if (!cancelled) setDirect("failed");
      }
    })();
    return () => {
      cancelled = true;
    };
  }, [available]);
  if (direct === null) return null;
  return (
    <p className="hint" data-testid="direct-balance">
      {direct === "failed" ? words.directFailed : `${words.direct}: ${direct} ${words.directOk}`}
    </p>
  );
}
