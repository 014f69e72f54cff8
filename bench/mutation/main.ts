import { spawn } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { cpSync, existsSync, mkdtempSync, readFileSync, rmSync, symlinkSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { parseArgs } from 'node:util';
import { Redis } from 'ioredis';
import pg from 'pg';
import { parseDuration } from '../../src/config/duration.js';
import { ADMIN_DATABASE_URL, REDIS_URL } from '../../test/helpers/services.js';
import { type Module, MUTANTS, type Mutant } from './mutants.js';

/**
 * `npm run mutation -- [--only id,id] [--module relay] [--timeout 240s] [--list] [--keep]`: the suite's strength.
 *
 * Copies the repository (without node_modules, .git, dist; node_modules is symlinked) into a temp directory, then for
 * each mutant of bench/mutation/mutants.ts: applies it there, runs its test files one after another (each with a
 * wall-clock timeout) until one fails, and puts the file back. The shared working tree is never touched, so it can
 * run while people work. killed = a test file failed or timed out; survived = all passed; stale = the mutant's
 * search text is no longer in the file (the code changed: update the mutant).
 *
 * Every test file that killed a mutant is then run once without any mutant: if it fails there too (twice), its kills
 * prove nothing and are reported as "unproven". One at a time throughout: the tests themselves are parallel enough
 * for 2 cores.
 *
 * Why not StrykerJS: it mutates every operator of a file, thousands of mutants for these modules, and each needs the
 * real-Postgres/Redis test files (tens of seconds each); that is days on 2 cores. Hand-made mutants, each a plausible
 * bug aimed at a guarantee, fit in minutes and say which guarantee a survivor leaves unguarded.
 */
const { values } = parseArgs({
  args: process.argv.slice(2),
  options: {
    only: { type: 'string' },
    module: { type: 'string' },
    timeout: { type: 'string', default: '240s' },
    list: { type: 'boolean', default: false },
    keep: { type: 'boolean', default: false },
  },
});
const ROOT = path.resolve(new URL('../..', import.meta.url).pathname);
const timeoutMs = parseDuration(values.timeout);
if (timeoutMs === undefined) throw new Error(`--timeout: expected e.g. 240s, got ${values.timeout}`);
const only = values.only?.split(',').map((s) => s.trim());
const selected = MUTANTS.filter(
  (m) => (!only || only.includes(m.id)) && (!values.module || m.module === values.module),
);
if (selected.length === 0) throw new Error('no mutant matches --only / --module');

type Verdict = 'killed' | 'survived' | 'stale' | 'unproven';
interface Result {
  mutant: Mutant;
  verdict: Verdict;
  /** The test file that failed (killed), or why the mutant is stale. */
  detail: string;
  seconds: number;
}

function occurrences(text: string, search: string): number {
  let n = 0;
  for (let at = text.indexOf(search); at >= 0; at = text.indexOf(search, at + search.length)) n++;
  return n;
}

/** Why the mutant cannot be applied to `dir`, or undefined when it can. */
function staleReason(dir: string, m: Mutant): string | undefined {
  const file = path.join(dir, m.file);
  if (!existsSync(file)) return `${m.file} does not exist`;
  const n = occurrences(readFileSync(file, 'utf8'), m.search);
  if (n === 0) return `search text not found in ${m.file}`;
  if (n > 1) return `search text found ${n} times in ${m.file}`;
  const tests = m.tests.filter((t) => existsSync(path.join(dir, t)));
  if (tests.length === 0) return `none of its test files exist (${m.tests.join(', ')})`;
  return undefined;
}

/** Run one test file in `dir`; resolves to true when it passed. A hung file is killed at the timeout (= failed). */
function runTestFile(dir: string, file: string, run: string): Promise<{ passed: boolean; timedOut: boolean }> {
  return new Promise((resolve) => {
    const child = spawn(
      process.execPath,
      ['--import', 'tsx', '--test', `--test-timeout=${timeoutMs}`, '--test-reporter=dot', file],
      {
        cwd: dir,
        stdio: 'ignore',
        env: { ...process.env, EO_TEST_RUN: run, LOG_LEVEL: 'silent' },
        detached: true, // its own process group, so a timeout can end the relays and workers it spawned too
      },
    );
    let timedOut = false;
    const timer = setTimeout(() => {
      timedOut = true;
      try {
        process.kill(-(child.pid as number), 'SIGKILL');
      } catch {
        child.kill('SIGKILL');
      }
    }, timeoutMs as number);
    child.once('exit', (code) => {
      clearTimeout(timer);
      resolve({ passed: code === 0 && !timedOut, timedOut });
    });
  });
}

/** A mutant that kills a test mid-way (or a timeout) can leave its database and keys: remove this run's. */
async function dropLeftovers(runId: string): Promise<number> {
  const admin = new pg.Client({ connectionString: ADMIN_DATABASE_URL });
  await admin.connect();
  let n = 0;
  try {
    const { rows } = await admin.query<{ datname: string }>('SELECT datname FROM pg_database WHERE datname LIKE $1', [
      `eo\\_t\\_${runId}\\_%`,
    ]);
    for (const { datname } of rows) await admin.query(`DROP DATABASE IF EXISTS "${datname}" WITH (FORCE)`);
    n += rows.length;
  } finally {
    await admin.end();
  }
  const redis = new Redis(REDIS_URL);
  for (const prefix of [`eot:${runId}:`, `{eot:${runId}:`]) {
    let cursor = '0';
    do {
      const [next, keys] = await redis.scan(cursor, 'MATCH', `${prefix}*`, 'COUNT', 1000);
      cursor = next;
      if (keys.length > 0) n += await redis.unlink(...keys);
    } while (cursor !== '0');
  }
  redis.disconnect();
  return n;
}

function copyRepository(): string {
  const dir = mkdtempSync(path.join(tmpdir(), 'eo-mut-'));
  const skip = new Set(['node_modules', '.git', 'dist', 'coverage'].map((d) => path.join(ROOT, d)));
  cpSync(ROOT, dir, {
    recursive: true,
    filter: (src) => !skip.has(src) && !src.startsWith(path.join(ROOT, 'bench', 'results')),
  });
  symlinkSync(path.join(ROOT, 'node_modules'), path.join(dir, 'node_modules'), 'dir');
  return dir;
}

if (values.list) {
  for (const m of selected) {
    const stale = staleReason(ROOT, m);
    console.log(`${m.id.padEnd(44)} ${m.module.padEnd(20)} ${stale ? `STALE: ${stale}` : m.tests.join(' ')}`);
  }
  process.exit(0);
}

const run = `mut${randomBytes(3).toString('hex')}`;
const started = performance.now();
const dir = copyRepository();
const log = (m: string) => console.log(`[mutation ${((performance.now() - started) / 1000).toFixed(0)}s] ${m}`);
log(`${selected.length} mutants, copy of the repository in ${dir}, test timeout ${values.timeout}`);
const results: Result[] = [];
try {
  for (const [i, m] of selected.entries()) {
    const t0 = performance.now();
    const stale = staleReason(dir, m);
    if (stale) {
      results.push({ mutant: m, verdict: 'stale', detail: stale, seconds: 0 });
      log(`${i + 1}/${selected.length} ${m.id}: STALE (${stale})`);
      continue;
    }
    const file = path.join(dir, m.file);
    const original = readFileSync(file, 'utf8');
    writeFileSync(
      file,
      original.replace(m.search, () => m.replace),
    );
    let verdict: Verdict = 'survived';
    let detail = '';
    try {
      for (const test of m.tests.filter((t) => existsSync(path.join(dir, t)))) {
        const { passed, timedOut } = await runTestFile(dir, test, run);
        if (!passed) {
          verdict = 'killed';
          detail = `${test}${timedOut ? ' (timed out)' : ''}`;
          break;
        }
      }
    } finally {
      writeFileSync(file, original);
    }
    const seconds = (performance.now() - t0) / 1000;
    results.push({ mutant: m, verdict, detail, seconds });
    log(
      `${i + 1}/${selected.length} ${m.id}: ${verdict.toUpperCase()}${detail ? ` by ${detail}` : ''} (${seconds.toFixed(0)}s)`,
    );
  }

  // Kills count only if the killing file passes without any mutant.
  const killers = [...new Set(results.filter((r) => r.verdict === 'killed').map((r) => r.detail.split(' ')[0]))];
  for (const test of killers as string[]) {
    const passes = (await runTestFile(dir, test, run)).passed || (await runTestFile(dir, test, run)).passed;
    log(`baseline ${test}: ${passes ? 'passes' : 'FAILS without a mutant'}`);
    if (passes) continue;
    for (const r of results) {
      if (r.verdict === 'killed' && r.detail.startsWith(test)) {
        r.verdict = 'unproven';
        r.detail = `${test} fails without the mutant too`;
      }
    }
  }
} finally {
  if (!values.keep) rmSync(dir, { recursive: true, force: true });
  const left = await dropLeftovers(run);
  if (left > 0) log(`dropped ${left} databases and keys that killed or timed-out test runs left behind`);
}

// --- report -----------------------------------------------------------------------------------------------------
const modules = [...new Set(selected.map((m) => m.module))] as Module[];
console.log(`\nmutation score per module (${((performance.now() - started) / 60_000).toFixed(1)} min, run ${run}):`);
console.log('| module | killed / applied | survivors | stale |');
console.log('|---|---|---|---|');
for (const mod of modules) {
  const rs = results.filter((r) => r.mutant.module === mod);
  const applied = rs.filter((r) => r.verdict !== 'stale');
  const killed = applied.filter((r) => r.verdict === 'killed');
  const survivors = applied.filter((r) => r.verdict !== 'killed').map((r) => r.mutant.id);
  const stale = rs.filter((r) => r.verdict === 'stale').length;
  console.log(`| ${mod} | ${killed.length} / ${applied.length} | ${survivors.join(', ') || '-'} | ${stale || '-'} |`);
}
const applied = results.filter((r) => r.verdict !== 'stale');
const killed = applied.filter((r) => r.verdict === 'killed').length;
console.log(
  `\ntotal: ${killed} / ${applied.length} killed (${Math.round((100 * killed) / Math.max(1, applied.length))}%)`,
);
for (const r of results.filter((r) => r.verdict !== 'killed')) {
  console.log(
    `  ${r.verdict.toUpperCase()} ${r.mutant.id} (${r.mutant.file}): ${r.mutant.breaks}${r.detail ? ` [${r.detail}]` : ''}`,
  );
}
