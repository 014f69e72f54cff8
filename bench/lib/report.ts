import { mkdirSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import { parseArgs } from 'node:util';

/** Sizes of a bench run: flags win over environment variables, which win over the defaults below. */
export interface BenchOptions {
  /** Pending events per drain run. @defaultValue 20000 (BENCH_EVENTS, --events) */
  events: number;
  /** Aggregates of the spread drain. @defaultValue 1000 */
  aggregates: number;
  /** Worker counts of the drain. @defaultValue [1, 2, 4] */
  workers: number[];
  /** Relay batch size of the growth bench (the drain bench sets its own). @defaultValue 500 */
  batchSize: number;
  /** Producer rate of the freshness bench. @defaultValue 1000 events/s */
  rate: number;
  /** Seconds per freshness mode (NOTIFY, then polling). @defaultValue 15 */
  freshnessSeconds: number;
  /** Poll interval of the polling-only freshness run (and the NOTIFY run's fallback), ms. @defaultValue 100 */
  pollMs: number;
  /** Transactions per producer-cost variant. @defaultValue 3000 */
  transactions: number;
  /** Duplicate checks per variant. @defaultValue 3000 */
  checks: number;
  /** Retained published rows of the growth bench. @defaultValue 5000000 */
  history: number;
  /** Keys written for the Redis memory figures. @defaultValue 20000 */
  memoryKeys: number;
  /** Events the relay publishes before the marker memory is read. @defaultValue 1000000 */
  memoryEvents: number;
  /** Interleaved drains per relay row of the drain bench (medians reported). @defaultValue 3 (BENCH_ROUNDS, --rounds) */
  rounds: number;
  /** Producer rate of the held-snapshot bench, events/s. @defaultValue 5000 (BENCH_HELD_RATE, --held-rate) */
  heldRate: number;
  /** Seconds the held-snapshot bench holds the snapshot. @defaultValue 600 (BENCH_HELD_SECONDS, --held-seconds) */
  heldSeconds: number;
  /** Which benchmarks to run. @defaultValue all */
  only: string[];
  progress(message: string): void;
}

export interface Row {
  benchmark: string;
  figure: string;
  baseline: string;
  ratio: string;
  target: string;
  /** undefined: informational */
  met: boolean | undefined;
}

export const ALL_BENCHES = [
  'drain',
  'held',
  'freshness',
  'producer',
  'duplicate',
  'growth',
  'memory',
  'scale',
  'import',
  'worker',
] as const;

export function parseBenchOptions(argv: string[]): BenchOptions {
  const { values } = parseArgs({
    args: argv,
    options: {
      events: { type: 'string' },
      aggregates: { type: 'string' },
      workers: { type: 'string' },
      batch: { type: 'string' },
      rate: { type: 'string' },
      seconds: { type: 'string' },
      'poll-ms': { type: 'string' },
      transactions: { type: 'string' },
      checks: { type: 'string' },
      history: { type: 'string' },
      'memory-keys': { type: 'string' },
      'memory-events': { type: 'string' },
      rounds: { type: 'string' },
      'held-rate': { type: 'string' },
      'held-seconds': { type: 'string' },
      only: { type: 'string' },
      help: { type: 'boolean' },
    },
  });
  if (values.help) {
    console.log(`Usage: npm run bench -- [--events N] [--aggregates N] [--workers 1,2,4] [--batch N] [--rate N]
         [--seconds N] [--poll-ms N] [--transactions N] [--checks N] [--history N] [--memory-keys N] [--memory-events N]
         [--rounds N] [--held-rate N] [--held-seconds N]
         [--only drain,held,freshness,producer,duplicate,growth,memory,scale,import,worker]
Each flag also reads BENCH_<NAME> from the environment (BENCH_EVENTS=200000, BENCH_HISTORY=5000000, ...).`);
    process.exit(0);
  }
  const num = (flag: string | undefined, env: string, fallback: number): number => {
    const raw = flag ?? process.env[env];
    if (raw === undefined || raw === '') return fallback;
    const n = Number(raw.replace(/_/g, ''));
    if (!Number.isFinite(n) || n < 0) throw new Error(`${env} / flag must be a non-negative number, got ${raw}`);
    return n;
  };
  const list = (raw: string | undefined) => (raw ?? '').split(',').filter(Boolean);
  const workers = list(values.workers ?? process.env.BENCH_WORKERS).map(Number);
  const only = list(values.only ?? process.env.BENCH_ONLY);
  for (const o of only) {
    if (!(ALL_BENCHES as readonly string[]).includes(o)) throw new Error(`--only: unknown benchmark ${o}`);
  }
  return {
    events: num(values.events, 'BENCH_EVENTS', 20_000),
    aggregates: num(values.aggregates, 'BENCH_AGGREGATES', 1000),
    workers: workers.length > 0 ? workers : [1, 2, 4],
    batchSize: num(values.batch, 'BENCH_BATCH', 500),
    rate: num(values.rate, 'BENCH_RATE', 1000),
    freshnessSeconds: num(values.seconds, 'BENCH_SECONDS', 15),
    pollMs: num(values['poll-ms'], 'BENCH_POLL_MS', 100),
    transactions: num(values.transactions, 'BENCH_TRANSACTIONS', 3000),
    checks: num(values.checks, 'BENCH_CHECKS', 3000),
    history: num(values.history, 'BENCH_HISTORY', 5_000_000),
    memoryKeys: num(values['memory-keys'], 'BENCH_MEMORY_KEYS', 20_000),
    memoryEvents: num(values['memory-events'], 'BENCH_MEMORY_EVENTS', 1_000_000),
    rounds: num(values.rounds, 'BENCH_ROUNDS', 3),
    heldRate: num(values['held-rate'], 'BENCH_HELD_RATE', 5000),
    heldSeconds: num(values['held-seconds'], 'BENCH_HELD_SECONDS', 600),
    only: only.length > 0 ? only : [...ALL_BENCHES],
    progress: (m) => process.stderr.write(`  ${m}\n`),
  };
}

/** A plain-text table (also valid Markdown) of the rows. */
export function formatTable(rows: readonly Row[]): string {
  const header = ['benchmark', 'measured', 'baseline (same run)', 'ratio', 'target', 'met'];
  const cells = rows.map((r) => [
    r.benchmark,
    r.figure,
    r.baseline,
    r.ratio,
    r.target,
    r.met === undefined ? '-' : r.met ? 'yes' : 'NO',
  ]);
  const widths = header.map((h, i) => Math.max(h.length, ...cells.map((c) => (c[i] as string).length)));
  const line = (c: string[]) => `| ${c.map((v, i) => v.padEnd(widths[i] as number)).join(' | ')} |`;
  return [line(header), `|${widths.map((w) => '-'.repeat(w + 2)).join('|')}|`, ...cells.map(line)].join('\n');
}

export function writeResults(json: unknown, date: Date): string {
  const dir = path.join(path.dirname(new URL(import.meta.url).pathname), '..', 'results');
  mkdirSync(dir, { recursive: true });
  const file = path.join(dir, `${date.toISOString().replace(/[:.]/g, '-')}.json`);
  writeFileSync(file, `${JSON.stringify(json, null, 2)}\n`);
  return file;
}
