// History: the user's ledger lines, newest first, with why and by whom, in
// the browser's language.
import { headers } from "next/headers";
import { redirect } from "next/navigation";
import { creditsFor, languageOf } from "../../lib/credits";
import { lineReason, lineType, wordsFor } from "../../lib/i18n";
import { currentUserId } from "../../lib/session";

export const dynamic = "force-dynamic";

/** A line's effect on what the user can spend: a hold takes, a release gives back, a charge of held credits neither. */
const SIGN: Record<string, string> = { grant: "+", release: "+", expire: "+", refund: "+", reserve: "−", debit: "−", grant_expired: "−" };

export default async function History({ searchParams }: { searchParams: Promise<{ cursor?: string }> }) {
  const requestHeaders = await headers();
  const userId = currentUserId(requestHeaders);
  if (!userId) redirect("/signin");
  const language = languageOf(requestHeaders);
  const words = wordsFor(language);
  const { cursor } = await searchParams;
  const page = await creditsFor(userId, requestHeaders).listTransactions({ limit: 25, ...(cursor && { cursor }) });
  const when = (at: string) => new Date(at).toLocaleString(language, { dateStyle: "short", timeStyle: "medium" });
  return (
    <div className="card">
      <h2>{words.historyTitle}</h2>
      {page.items.length === 0 ? (
        <p className="small">{words.historyEmpty}</p>
      ) : (
        <table data-testid="history">
          <thead>
            <tr>
              <th>{words.when}</th>
              <th>{words.what}</th>
              <th className="amount">{words.amount}</th>
              <th>{words.why}</th>
              <th>{words.by}</th>
            </tr>
          </thead>
          <tbody>
            {page.items.map((line) => (
              <tr key={line.id} data-type={line.type}>
                <td className="small">{when(line.at)}</td>
                <td>
                  {lineType(language, line.type)}
                  {line.description && <div className="small">{line.description}</div>}
                </td>
                <td className="amount">{`${SIGN[line.type] ?? ""}${line.amount}`}</td>
                <td>{lineReason(language, line.reason)}</td>
                <td className="small">{line.actor ?? ""}</td>
              </tr>
            ))}
          </tbody>
        </table>
      )}
      {page.nextCursor && (
        <p>
          <a className="button" href={`/history?cursor=${encodeURIComponent(page.nextCursor)}`}>
            {words.more}
          </a>
        </p>
      )}
    </div>
  );
}
