// The Generate page: the balance, the prices, and image jobs.
import { headers } from "next/headers";
import { redirect } from "next/navigation";
import { creditsFor, languageOf } from "../lib/credits";
import { OPERATION } from "../lib/generate";
import { maxImagesPerTask } from "../lib/provider";
import { wordsFor } from "../lib/i18n";
import { currentUserId } from "../lib/session";
import { Studio } from "./ui/studio";

export const dynamic = "force-dynamic";

export default async function Home() {
  const requestHeaders = await headers();
  const userId = currentUserId(requestHeaders);
  if (!userId) redirect("/signin");
  const language = languageOf(requestHeaders);
  const credits = creditsFor(userId, requestHeaders);
  const [prices, balance] = await Promise.all([credits.getPrices(), credits.getBalance()]);
  const unitCost = prices.operations.find((p) => p.operation === OPERATION)?.unitCost ?? 0;
  return <Studio words={wordsFor(language)} language={language} unitCost={unitCost} maxImages={maxImagesPerTask()} prices={prices.operations} initialBalance={balance} />;
}
