// Buy credits: the catalog's packs (GET /v1/prices), each priced by its
// Stripe price, sold through Stripe Checkout (POST /api/checkout). Stripe
// sends the browser back here; the credits arrive when Stripe's webhook
// reaches the credits API, which grants the pack once per session.
import { headers } from "next/headers";
import { redirect } from "next/navigation";
import { creditsFor, languageOf } from "../../lib/credits";
import { fill, wordsFor } from "../../lib/i18n";
import { currentUserId } from "../../lib/session";
import { isPack, packPrice } from "../../lib/stripe";
import { BuyButton, CheckoutReturn } from "../ui/buy";

export const dynamic = "force-dynamic";

export default async function Credits({ searchParams }: { searchParams: Promise<{ checkout?: string }> }) {
  const requestHeaders = await headers();
  const userId = currentUserId(requestHeaders);
  if (!userId) redirect("/signin");
  const language = languageOf(requestHeaders);
  const words = wordsFor(language);
  const credits = creditsFor(userId, requestHeaders);
  const [{ packs }, balance] = await Promise.all([credits.getPrices(), credits.getBalance()]);
  const onSale = await Promise.all(
    packs.filter((p) => isPack(p.pack)).map(async (p) => ({ ...p, price: isPack(p.pack) ? await packPrice(p.pack) : null })),
  );
  const { checkout } = await searchParams;
  const money = (amount: number, currency: string) =>
    new Intl.NumberFormat(language, { style: "currency", currency }).format(amount / 100);
  return (
    <>
      {checkout === "cancelled" && <div className="notice">{words.checkoutCancelled}</div>}
      {checkout === "success" && <CheckoutReturn words={words} language={language} initialBalance={balance} />}
      <div className="card">
        <h2>{words.buyTitle}</h2>
        <p className="small">{words.buyNote}</p>
        <div className="packs">
          {onSale.map((p) => (
            <div className="pack" key={p.pack} data-testid={`pack-${p.pack}`}>
              <div className="credits">{fill(words.packCredits, { credits: p.credits })}</div>
              <div className="small">{p.expiresInDays ? fill(words.packExpires, { days: p.expiresInDays }) : words.packNoExpiry}</div>
              <div className="price">{p.price ? money(p.price.amount, p.price.currency) : "—"}</div>
              <BuyButton pack={p.pack} label={`${words.buy} ${p.pack}`} />
            </div>
          ))}
        </div>
        {checkout !== "success" && (
          <p className="hint">
            {words.available}: <strong data-testid="available">{balance.available}</strong>
          </p>
        )}
      </div>
    </>
  );
}
