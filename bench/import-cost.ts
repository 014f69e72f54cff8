import { execFileSync } from 'node:child_process';
import { readdirSync, statSync } from 'node:fs';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import type { BenchOptions, Row } from './lib/report.js';
import { percentile } from './lib/stats.js';

const ROOT = fileURLToPath(new URL('..', import.meta.url));
const DIST = path.join(ROOT, 'dist', 'src');
const RUNS = 7;

const SUBPATHS = ['relay', 'idempotency', 'manager', 'maintenance', 'admin', 'metrics'];
/** An application that writes events loads these anyway: every variant is measured on top of them. */
const APP = ['pg', 'kysely'];

/** What one fresh process imports: package specifiers or files of the build. */
const VARIANTS: Record<string, string[]> = {
  'pg + kysely': APP,
  'exactly-once (main entry)': [...APP, entry('index')],
  ...Object.fromEntries(SUBPATHS.map((name) => [`exactly-once/${name}`, [...APP, entry(`entries/${name}`)]])),
  // Before the split, `exactly-once` was every one of these at once.
  'everything (the old main entry)': [...APP, entry('index'), ...SUBPATHS.map((n) => entry(`entries/${n}`))],
};

export interface ImportCost {
  ms: number;
  rssMB: number;
}

/**
 * Issue 14: what `import ... from 'exactly-once'` costs a producer: pg + kysely (which it loads anyway) plus the
 * entry, against pg + kysely alone, and against everything (what the single entry used to load). Each figure is the median of fresh `node`
 * processes importing the built package (dist/, rebuilt first when a source file is newer), so neither tsx's loader
 * nor a warm module cache is in it: the time is the dynamic import() itself, the memory the process's RSS after it.
 */
export async function importCostBench(opts: BenchOptions): Promise<{ rows: Row[]; costs: Record<string, ImportCost> }> {
  ensureBuild(opts);
  const costs: Record<string, ImportCost> = {};
  // Interleaved runs, so a burst of load on the machine does not land on one variant only.
  const samples: Record<string, ImportCost[]> = {};
  for (let i = 0; i < RUNS; i++) {
    for (const [name, specifiers] of Object.entries(VARIANTS)) {
      samples[name] = [...(samples[name] ?? []), measure(specifiers)];
    }
  }
  for (const [name, list] of Object.entries(samples)) {
    costs[name] = { ms: median(list.map((s) => s.ms)), rssMB: median(list.map((s) => s.rssMB)) };
  }
  const base = costs['pg + kysely'] as ImportCost;
  const fmt = (c: ImportCost) => `${c.ms.toFixed(0)} ms, ${c.rssMB.toFixed(0)} MB RSS`;
  const ratio = (c: ImportCost) => `${(c.ms / base.ms).toFixed(2)}x time, ${(c.rssMB / base.rssMB).toFixed(2)}x RSS`;
  const main = costs['exactly-once (main entry)'] as ImportCost;
  const rows: Row[] = [
    {
      benchmark: 'import pg + kysely + exactly-once (main entry)',
      figure: fmt(main),
      baseline: `pg + kysely alone: ${fmt(base)}`,
      ratio: ratio(main),
      target: '<= 1.5x pg + kysely (time and RSS)',
      met: main.ms <= 1.5 * base.ms && main.rssMB <= 1.5 * base.rssMB,
    },
  ];
  for (const [name, cost] of Object.entries(costs)) {
    if (name === 'pg + kysely' || name === 'exactly-once (main entry)') continue;
    rows.push({
      benchmark: `import pg + kysely + ${name}`,
      figure: fmt(cost),
      baseline: `pg + kysely alone: ${fmt(base)}`,
      ratio: ratio(cost),
      target: '-',
      met: undefined,
    });
  }
  return { rows, costs };
}

const median = (values: number[]) =>
  percentile(
    [...values].sort((a, b) => a - b),
    50,
  );

function entry(name: string): string {
  return path.join(DIST, `${name}.js`);
}

function measure(specifiers: readonly string[]): ImportCost {
  const script = `
    const started = performance.now();
    for (const s of ${JSON.stringify(specifiers)}) await import(s);
    const ms = performance.now() - started;
    console.log(JSON.stringify({ ms, rssMB: process.memoryUsage().rss / 1048576 }));`;
  const out = execFileSync(process.execPath, ['--input-type=module', '-e', script], { cwd: ROOT, encoding: 'utf8' });
  return JSON.parse(out) as ImportCost;
}

/** Build dist/ unless it is newer than every source file (a stale build would measure other code). */
function ensureBuild(opts: BenchOptions): void {
  const newest = (dir: string): number =>
    readdirSync(dir, { withFileTypes: true }).reduce((max, e) => {
      const p = path.join(dir, e.name);
      return Math.max(max, e.isDirectory() ? newest(p) : e.name.endsWith('.ts') ? statSync(p).mtimeMs : 0);
    }, 0);
  let built = 0;
  try {
    built = statSync(entry('index')).mtimeMs;
  } catch {
    // not built yet
  }
  if (built > newest(path.join(ROOT, 'src'))) return;
  opts.progress('building dist/ (npm run build)');
  execFileSync('npm', ['run', 'build'], { cwd: ROOT, stdio: ['ignore', 'ignore', 'inherit'] });
}
