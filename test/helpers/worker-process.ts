import { type ChildProcess, spawn } from 'node:child_process';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';

const BIN = new URL('../../bin/exactly-once.js', import.meta.url).pathname;

/** Children still running when the test process exits are killed: a failed test leaves no worker behind. */
const children = new Set<ChildProcess>();
process.once('exit', () => {
  for (const child of children) if (child.exitCode === null && child.signalCode === null) child.kill('SIGKILL');
});

export interface WorkerProcess {
  child: ChildProcess;
  exited: Promise<{ code: number | null; signal: NodeJS.Signals | null }>;
  output(): string;
}

/** `exactly-once worker --config FILE --module M ...` as a child process (the real CLI, as operators run it). */
export function spawnWorker(configFile: string, args: string[], env: Record<string, string> = {}): WorkerProcess {
  const child = spawn(process.execPath, [BIN, 'worker', '--config', configFile, '--port', '0', ...args], {
    stdio: ['ignore', 'pipe', 'pipe'],
    env: { ...process.env, LOG_LEVEL: 'warn', ...env },
  });
  let out = '';
  child.stdout?.on('data', (d: Buffer) => {
    out += d.toString();
  });
  child.stderr?.on('data', (d: Buffer) => {
    out += d.toString();
  });
  const exited = new Promise<{ code: number | null; signal: NodeJS.Signals | null }>((resolve) => {
    child.once('exit', (code, signal) => resolve({ code, signal }));
  });
  children.add(child);
  child.once('exit', () => children.delete(child));
  return { child, exited, output: () => out };
}

/**
 * A handler module for `--module`: each job's effect is one row in `table` (job id, the worker's pid), written with
 * `processInTransaction`, after `delayMs` of work, so a SIGKILL lands mid-job. The table has no unique key: only the
 * idempotency key stands between a redelivery and a second row.
 */
export function writeEffectModule(table: string, delayMs: number): { file: string; remove(): void } {
  const dir = mkdtempSync(path.join(tmpdir(), 'eo-worker-module-'));
  const file = path.join(dir, 'handler.mjs');
  writeFileSync(
    file,
    `export default {
  async processInTransaction(job, trx) {
    await trx.insertInto(${JSON.stringify(table)}).values({ job_id: job.id, pid: process.pid }).execute();
    await new Promise((r) => setTimeout(r, Math.random() * ${delayMs}));
    return { pid: process.pid };
  },
};
`,
  );
  return { file, remove: () => rmSync(dir, { recursive: true, force: true }) };
}
