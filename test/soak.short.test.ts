import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { test } from 'node:test';

const SOAK = new URL('../bench/soak/main.ts', import.meta.url).pathname;
/** Warm-up (the relays start through tsx), 35 s of faults, the drain: about 1 min, 3 on a heavily loaded machine. */
const DEADLINE_MS = 540_000;

test('short soak: every fault kind, 20+ faults (kills, Redis and Postgres restarts, freezes, terminated connections, WRONGTYPE); nothing lost, doubled or reordered', {
  timeout: DEADLINE_MS + 60_000,
}, async (t) => {
  const child = spawn(
    process.execPath,
    ['--import', 'tsx', SOAK, '--duration', '35s', '--rate', '150', '--fault-gap', '100ms-500ms', '--min-faults', '20'],
    { stdio: ['ignore', 'pipe', 'pipe'], env: { ...process.env, LOG_LEVEL: 'silent' } },
  );
  let out = '';
  child.stdout.on('data', (d: Buffer) => {
    out += d.toString();
  });
  child.stderr.on('data', (d: Buffer) => {
    out += d.toString();
  });
  const exited = new Promise<number | null>((resolve) => child.once('exit', (c) => resolve(c)));
  // A soak that hangs is stopped with SIGTERM (it then stops its relays, consumers and servers), SIGKILL if need be.
  const term = setTimeout(() => child.kill('SIGTERM'), DEADLINE_MS);
  const kill = setTimeout(() => child.kill('SIGKILL'), DEADLINE_MS + 30_000);
  const code = await exited.finally(() => {
    clearTimeout(term);
    clearTimeout(kill);
  });
  for (const line of out.split('\n').filter((l) => /^ {2}|faults injected|events|lost/.test(l))) {
    t.diagnostic(line.trim());
  }
  assert.equal(code, 0, `soak failed:\n${out}`);

  // The verdict, from the data (bench/soak/verify.ts): every committed event has exactly one effect, in order.
  assert.match(out, /^lost 0, duplicated 0, reordered 0$/m);
  assert.match(out, /^rolled-back events seen: 0; outbox rows failed: 0$/m);
  const checked = Number(/events checked: (\d+) committed/.exec(out)?.[1]);
  assert.ok(checked >= 200, `only ${checked} events checked`);

  // Every kind of fault landed (a kind may be skipped only with its reason printed), 20 or more in all.
  const kinds = [...out.matchAll(/^ {2}(\S.*?)\s{2,}(\d+|skipped: .*)$/gm)].map(
    (m) => [m[1] ?? '', m[2] ?? ''] as const,
  );
  assert.equal(kinds.length, 7, `expected 7 fault kinds in the report:\n${out}`);
  for (const [kind, n] of kinds) {
    assert.ok(n.startsWith('skipped: ') || Number(n) >= 1, `fault "${kind}" never landed:\n${out}`);
  }
  const total = kinds.reduce((sum, [, n]) => sum + (Number(n) || 0), 0);
  assert.ok(total >= 20, `only ${total} faults injected`);
  assert.match(out, /^ {2}publish error \(WRONGTYPE list\)\s+\d+$/m, 'per-event publish errors are never skipped');
});
