"use client";
import { useEffect, useState } from "react";
import type { Balance } from "@credits/client";
import type { Words } from "../../lib/i18n";
import { BalancePanel } from "./balance";

/** Asks this app's server for a Checkout Session for the session's user, then goes to Stripe. */
export function BuyButton({ pack, label }: { pack: string; label: string }) {
  const [busy, setBusy] = useState(false);
  const [failed, setFailed] = useState<string | null>(null);
  async function buy() {
    setBusy(true);
    setFailed(null);
    const answer = await fetch("/api/checkout", {
      method: "POST",
      headers: { "content-type": "application/json" },
      body: JSON.stringify({ pack }),
    });
    const body = (await answer.json()) as { url?: string; detail?: string };
    if (answer.ok && body.url) {
      location.assign(body.url);
    } else {
      setFailed(body.detail ?? "Payment is unavailable.");
      setBusy(false);
    }
  }
  return (
    <>
      <button onClick={buy} disabled={busy} data-testid={`buy-${pack}`}>
        {label}
      </button>
      {failed && <div className="error">{failed}</div>}
    </>
  );
}

/** Back from Checkout: the balance, polled until the webhook's grant shows. */
export function CheckoutReturn({ words, language, initialBalance }: { words: Words; language: string; initialBalance: Balance }) {
  const [balance, setBalance] = useState(initialBalance);
  const [arrived, setArrived] = useState(false);
  useEffect(() => {
    if (arrived) return;
    const timer = setInterval(async () => {
      const answer = await fetch("/api/balance");
      if (!answer.ok) return;
      const next = (await answer.json()) as Balance;
      setBalance(next);
      if (next.granted > initialBalance.granted) setArrived(true);
    }, 1000);
    return () => clearInterval(timer);
  }, [arrived, initialBalance.granted]);
  return (
    <>
      <div className="notice" data-testid="checkout-notice">
        {arrived ? words.checkoutArrived : words.checkoutSuccess}
      </div>
      <BalancePanel balance={balance} words={words} language={language} />
    </>
  );
}
