// The app's own job records. In a real app this is a table of your
// database; here, memory of the Next.js process (a restart forgets the jobs;
// their holds still settle by webhook or expire by the sweep).
//
// A job is made by this server (`createJob`) before the browser asks to
// generate, and its id names the hold's idempotency key
// (`generate-<job id>`): nothing the browser sends can choose a key, so a
// double-click, a retried request or a request replayed after the job
// settled all find the same hold, and the provider is called once.
import { randomUUID } from "node:crypto";

export type JobStatus = "draft" | "running" | "succeeded" | "failed" | "expired";

export interface Job {
  id: string;
  userId: string;
  status: JobStatus;
  prompt?: string;
  images?: number;
  reservationId?: string;
  taskId?: string;
  /** The provider's images so far. */
  samples: string[];
  createdAt: string;
}

const holder = globalThis as { __creditsDemoJobs?: Map<string, Job> };
const jobs = (holder.__creditsDemoJobs ??= new Map<string, Job>());

/** A user's drafts are capped, and every record is forgotten after a day: a page reloaded in a loop cannot fill memory. */
const MAX_DRAFTS_PER_USER = 20;
const KEPT_MS = 24 * 3600 * 1000;

export function createJob(userId: string): Job {
  const cutoff = new Date(Date.now() - KEPT_MS).toISOString();
  for (const [id, job] of jobs) if (job.createdAt < cutoff) jobs.delete(id);
  const drafts = [...jobs.values()].filter((job) => job.userId === userId && job.status === "draft");
  for (const stale of drafts.slice(0, Math.max(0, drafts.length - MAX_DRAFTS_PER_USER + 1))) jobs.delete(stale.id);
  const job: Job = { id: randomUUID(), userId, status: "draft", samples: [], createdAt: new Date().toISOString() };
  jobs.set(job.id, job);
  return job;
}

/** The job, if it is this user's (anyone else's answers as missing). */
export function jobOf(userId: string, id: string): Job | undefined {
  const job = jobs.get(id);
  return job?.userId === userId ? job : undefined;
}

/** The hold's idempotency key: made from the server's job id, never from the request. */
export function holdKey(job: Job): string {
  return `generate-${job.id}`;
}
