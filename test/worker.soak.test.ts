import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { test } from 'node:test';

// The worker soak (bench/soak/worker-soak.ts, `npm run soak -- --worker`) at a size for the suite: 3,000 jobs flowing
// for about 25 s through 4 `exactly-once worker` processes, one SIGKILLed every 1.5-3 s and replaced (each job takes up to
// 60 ms, so kills land mid-job), 1% of attempts failing on purpose. The soak checks the data itself (one effect per job, none stuck, none dead) and exits 1 otherwise.
const SOAK = new URL('../bench/soak/index.ts', import.meta.url).pathname;
const DEADLINE_MS = 300_000;

test('worker soak: 4 worker processes SIGKILLed at random; every job applied exactly once, none stuck', {
  timeout: DEADLINE_MS + 60_000,
}, async (t) => {
  const args = [
    '--worker',
    '--jobs',
    '3000',
    '--rate',
    '120',
    '--kill-gap',
    '1500ms-3s',
    '--min-kills',
    '5',
    '--work-ms',
    '60',
  ];
  const child = spawn(process.execPath, ['--import', 'tsx', SOAK, ...args], {
    stdio: ['ignore', 'pipe', 'pipe'],
    env: { ...process.env, LOG_LEVEL: 'silent' },
  });
  let out = '';
  child.stdout.on('data', (d: Buffer) => {
    out += d.toString();
  });
  child.stderr.on('data', (d: Buffer) => {
    out += d.toString();
  });
  const exited = new Promise<number | null>((resolve) => child.once('exit', (c) => resolve(c)));
  const term = setTimeout(() => child.kill('SIGTERM'), DEADLINE_MS);
  const code = await exited.finally(() => clearTimeout(term));
  for (const line of out.split('\n').filter((l) => /^(jobs|induced|flow|survivors|lost)/.test(l))) t.diagnostic(line);
  assert.equal(code, 0, `soak failed:\n${out}`);
  assert.match(out, /^lost 0, duplicated 0, stuck in processing lists 0 \(lists 0\)$/m);
  assert.match(out, /^survivors' exit codes on SIGTERM: 0,0,0,0; heartbeats left 0$/m);
  const [, kills, midJob] = (/SIGKILLs (\d+) \((\d+) holding jobs\)/.exec(out) ?? []).map(Number);
  assert.ok((kills as number) >= 5, `at least 5 SIGKILLs: ${kills}`);
  assert.ok((midJob as number) >= 2, `kills of workers holding jobs: ${midJob}`);
});
