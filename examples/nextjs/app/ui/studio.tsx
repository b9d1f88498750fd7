"use client";
// Generate: a prompt and 1-4 images. The browser asks this app's server for
// a job record first (POST /api/jobs) and sends its id with Generate; it
// never sends an idempotency key, a user or an amount. It then polls the job
// (GET /api/jobs/{id}), which shows the images as they arrive and the
// balance moving, and settles the hold when the provider is done.
import { useCallback, useEffect, useRef, useState } from "react";
import type { Balance, Price } from "@credits/client";
import type { JobView } from "../../lib/generate";
import { fill, type Words } from "../../lib/i18n";
import { BalancePanel } from "./balance";

interface Problem {
  code?: string;
  detail?: string;
  available?: number;
  required?: number;
  shortfall?: number;
}

const POLL_MS = 800;

export function Studio(props: {
  words: Words;
  language: string;
  unitCost: number;
  maxImages: number;
  prices: Price[];
  initialBalance: Balance;
}) {
  const { words, language, unitCost, maxImages, prices } = props;
  const [balance, setBalance] = useState(props.initialBalance);
  const [jobId, setJobId] = useState<string | null>(null);
  const [prompt, setPrompt] = useState("");
  const [images, setImages] = useState(Math.min(2, props.maxImages));
  const [busy, setBusy] = useState(false);
  const [problem, setProblem] = useState<Problem | null>(null);
  const [jobs, setJobs] = useState<JobView[]>([]);
  const polling = useRef(new Set<string>());

  const newJob = useCallback(async () => {
    const answer = await fetch("/api/jobs", { method: "POST" });
    if (answer.ok) setJobId(((await answer.json()) as { jobId: string }).jobId);
  }, []);
  useEffect(() => {
    void newJob();
  }, [newJob]);

  const show = useCallback((job: JobView) => {
    setJobs((all) => [job, ...all.filter((j) => j.id !== job.id)]);
  }, []);

  // Polls a job until both the hold and the provider are done.
  const follow = useCallback(
    (id: string) => {
      if (polling.current.has(id)) return;
      polling.current.add(id);
      const tick = async () => {
        try {
          const answer = await fetch(`/api/jobs/${id}`);
          if (answer.ok) {
            const { job, balance } = (await answer.json()) as { job: JobView; balance: Balance };
            show(job);
            setBalance(balance);
            const done = job.status !== "running" && (job.status !== "expired" || job.provider !== "running");
            if (done) {
              polling.current.delete(id);
              return;
            }
          }
        } catch {
          // A dropped poll: the next one asks again.
        }
        setTimeout(tick, POLL_MS);
      };
      setTimeout(tick, POLL_MS);
    },
    [show],
  );

  async function generate(event: React.FormEvent) {
    event.preventDefault();
    if (!jobId) return;
    setBusy(true);
    setProblem(null);
    try {
      const answer = await fetch("/api/generate", {
        method: "POST",
        headers: { "content-type": "application/json" },
        body: JSON.stringify({ jobId, prompt, images }),
      });
      const body = (await answer.json()) as JobView | Problem;
      if (answer.ok) {
        show(body as JobView);
        follow((body as JobView).id);
        void newJob();
      } else {
        setProblem(body as Problem);
      }
    } catch {
      setProblem({ detail: words.error });
    } finally {
      setBusy(false);
    }
  }

  return (
    <div className="grid">
      <div>
        <div className="card">
          <h2>{words.generateTitle}</h2>
          <form onSubmit={generate}>
            <div className="row">
              <div>
                <label htmlFor="prompt">{words.prompt}</label>
                <input id="prompt" value={prompt} onChange={(e) => setPrompt(e.target.value)} required maxLength={500} placeholder={words.promptPlaceholder} />
              </div>
              <div className="narrow">
                <label htmlFor="images">{words.images}</label>
                <select id="images" value={images} onChange={(e) => setImages(Number(e.target.value))}>
                  {Array.from({ length: maxImages }, (_, i) => i + 1).map((n) => (
                    <option key={n} value={n}>
                      {n}
                    </option>
                  ))}
                </select>
              </div>
              <div className="narrow">
                <button type="submit" disabled={busy || !jobId} data-testid="generate">
                  {busy ? words.generating : words.generate}
                </button>
              </div>
            </div>
            <p className="hint">
              {words.cost} {images * unitCost} {words.credits} ({unitCost} × {images}). {words.promptWords}
            </p>
          </form>
          {problem && (
            <div className="error" role="alert" data-testid="error">
              {problem.detail ?? words.error}
              {problem.code === "insufficient_credits" && (
                <span className="small">
                  {" "}
                  ({words.available}: {problem.available}, {words.cost}: {problem.required})
                </span>
              )}
            </div>
          )}
          {jobs.map((job) => (
            <JobCard key={job.id} job={job} words={words} />
          ))}
        </div>
      </div>
      <div>
        <BalancePanel balance={balance} words={words} language={language} />
        <div className="card">
          <h2>{words.pricesTitle}</h2>
          {prices
            .filter((p) => p.unitCost > 0)
            .slice(0, 8)
            .map((p) => (
              <div className="figure small" key={p.operation}>
                <span>{p.operation}</span>
                <span>
                  {p.unitCost} {words.perUnit}
                </span>
              </div>
            ))}
        </div>
      </div>
    </div>
  );
}

function JobCard({ job, words }: { job: JobView; words: Words }) {
  const by: Record<string, string> = { server: words.byServer, webhook: words.byWebhook, cleanup: words.byCleanup, admin: words.byAdmin };
  const status =
    job.status === "running"
      ? words.jobRunning
      : job.status === "succeeded"
        ? fill(words.jobSucceeded, { charged: job.hold?.capturedAmount ?? 0 })
        : job.status === "failed"
          ? fill(words.jobFailed, { amount: job.hold?.amount ?? 0 })
          : job.lateSuccess
            ? words.jobLate
            : words.jobExpired;
  const settledBy = job.hold?.settledBy ? by[job.hold.settledBy] ?? job.hold.settledBy : null;
  const slots = job.status === "running" ? Math.max(job.images - job.samples.length, 0) : 0;
  return (
    <div className="job" data-testid="job" data-job-status={job.status} data-reservation={job.hold?.reservationId}>
      <div>
        <strong>{job.prompt}</strong> <span className="small">× {job.images}</span>
      </div>
      <div className={`status ${job.status}`} data-testid="job-status">
        {status}
        {settledBy && job.status !== "running" && (
          <span className="small">
            {" "}
            ({words.settledBy} {settledBy})
          </span>
        )}
      </div>
      <div className="images">
        {job.samples.map((src) => (
            // eslint-disable-next-line @next/next/no-img-element
            <img key={src} src={src} alt={job.prompt} data-testid="image" />
          ))}
        {Array.from({ length: slots }, (_, i) => (
          <div className="slot" key={i}>
            …
          </div>
        ))}
      </div>
    </div>
  );
}
