import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { test } from 'node:test';

const SOAK = new URL('../bench/soak/main.ts', import.meta.url).pathname;

test('short soak: relays and consumers killed, Redis restarted, connections terminated, publish errors; nothing lost, doubled or reordered', async (t) => {
  const child = spawn(process.execPath, ['--import', 'tsx', SOAK, '--duration', '25s', '--rate', '150'], {
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
  const code = await new Promise<number | null>((resolve) => child.once('exit', (c) => resolve(c)));
  assert.equal(code, 0, `soak failed:\n${out}`);
  assert.match(out, /lost 0, duplicated 0, reordered 0/);
  const checked = Number(/events checked: (\d+) committed/.exec(out)?.[1]);
  assert.ok(checked > 500, `only ${checked} events checked`);
  const faults = [...out.matchAll(/^ {2}(.+?)\s+(\d+)$/gm)].map((m) => [m[1], Number(m[2])] as const);
  assert.ok(faults.filter(([, n]) => n > 0).length >= 3, `too few kinds of faults landed:\n${out}`);
  for (const line of out.split('\n').filter((l) => /^ {2}|events checked|lost/.test(l))) t.diagnostic(line.trim());
});
