/**
 * A job as the worker hands it to your handler: go-redis-work-queue's fields, then the outbox event the relay put
 * beside them (see "The jobs in Redis" in the README). A job a Go producer wrote has the first eight only. A
 * `filesize` above 2^53 arrives rounded, as any JSON number in JavaScript; the worker itself never rewrites it.
 */
export interface WorkerJob {
  /** The event id (the relay's jobs); the default idempotency key. */
  id: string;
  filepath: string;
  filesize: number;
  priority: string;
  /** Failed attempts so far; the worker raises it on each retry, as go-redis-work-queue does. */
  retries: number;
  creation_time: string;
  trace_id: string;
  span_id: string;
  event_type?: string;
  aggregate_type?: string;
  aggregate_id?: string;
  tenant_id?: string;
  payload?: unknown;
  headers?: Record<string, string>;
  readonly [field: string]: unknown;
}

/** Fields the worker adds to a job it dead-letters (and removes when it is replayed). */
export const DEAD_FIELDS = ['last_error', 'failed_at', 'dead_from', 'dead_kind', 'invalid_payload'] as const;

/** A job, or why the text is not one (it then goes to the dead-letter list at once: no retry can fix it). */
export function parseJob(raw: string): { job: WorkerJob } | { problem: string } {
  let value: unknown;
  try {
    value = JSON.parse(raw);
  } catch (err) {
    return { problem: `not JSON: ${(err as Error).message}` };
  }
  if (typeof value !== 'object' || value === null || Array.isArray(value)) return { problem: 'not a JSON object' };
  const job = value as Record<string, unknown>;
  if (typeof job.id !== 'string' || job.id === '') return { problem: 'no "id" (a non-empty string)' };
  if (job.retries !== undefined && !(Number.isInteger(job.retries) && (job.retries as number) >= 0)) {
    return { problem: '"retries" is not a whole number >= 0' };
  }
  return { job: { ...job, retries: (job.retries as number | undefined) ?? 0 } as WorkerJob };
}

type Raw = Record<string, unknown>;

/** Node 22+ (TypeScript's lib does not declare it yet). */
const rawJSON = (JSON as unknown as { rawJSON(text: string): unknown }).rawJSON;

/**
 * Parse keeping every number as its exact source text (`JSON.rawJSON`), so rewriting one field never rounds another:
 * a `filesize` of 123456789012345678 goes back out as written.
 */
function parseExact(raw: string): Raw | undefined {
  try {
    const value = JSON.parse(raw, (_key, v, context?: { source?: string }) =>
      typeof v === 'number' && context?.source !== undefined ? rawJSON(context.source) : v,
    );
    return typeof value === 'object' && value !== null && !Array.isArray(value) ? value : undefined;
  } catch {
    return undefined;
  }
}

/** The job text to requeue after a failed attempt: `retries` set, every other field as it was. */
export function withRetries(raw: string, retries: number): string {
  const job = parseExact(raw);
  if (!job) return raw;
  job.retries = retries;
  return JSON.stringify(job);
}

export interface DeadInfo {
  error: string;
  /** The list or stream the job was consumed from: where a replay sends it. */
  from: string;
  kind: 'list' | 'stream';
  retries: number;
}

/** The dead-letter entry: the job with why and where it died; a text that was no job object is kept whole. */
export function deadEntry(raw: string, info: DeadInfo, now = new Date()): string {
  const job = parseExact(raw) ?? { invalid_payload: raw };
  if ('id' in job) job.retries = info.retries;
  job.last_error = info.error.slice(0, 2000);
  job.failed_at = now.toISOString();
  job.dead_from = info.from;
  job.dead_kind = info.kind;
  return JSON.stringify(job);
}

/** What a dead-letter entry says, for the dashboard and replay. `job` is undefined for an entry that is not JSON. */
export interface DeadLetter {
  raw: string;
  id: string;
  error: string;
  failedAt: string;
  from: string;
  kind: 'list' | 'stream';
  priority: string;
  retries: number;
}

export function readDeadEntry(raw: string): DeadLetter {
  let job: Raw = {};
  try {
    const value = JSON.parse(raw) as unknown;
    if (typeof value === 'object' && value !== null && !Array.isArray(value)) job = value as Raw;
  } catch {
    // Not JSON: shown with its text only.
  }
  const text = (v: unknown) => (typeof v === 'string' ? v : v === undefined ? '' : String(v));
  return {
    raw,
    id: text(job.id),
    error: text(job.last_error),
    failedAt: text(job.failed_at),
    from: text(job.dead_from),
    kind: job.dead_kind === 'stream' ? 'stream' : 'list',
    priority: text(job.priority),
    retries: Number(text(job.retries)) || 0,
  };
}

/** A job text as stream entry fields: strings as they are, everything else (numbers exactly, objects) as JSON. */
export function streamFields(text: string): string[] {
  const job = parseExact(text);
  if (!job) return ['invalid_payload', text];
  return Object.entries(job).flatMap(([k, v]) => [k, typeof v === 'string' ? v : JSON.stringify(v)]);
}

/** The job to send again: the dead-letter fields removed, `retries` back to 0; a kept non-job text as it was. */
export function replayText(raw: string): string {
  const job = parseExact(raw);
  if (!job) return raw;
  if (typeof job.invalid_payload === 'string') return job.invalid_payload;
  for (const field of DEAD_FIELDS) delete job[field];
  if ('id' in job) job.retries = 0;
  return JSON.stringify(job);
}
