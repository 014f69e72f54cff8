import { type ChildProcess, spawn } from 'node:child_process';
import { createInterface } from 'node:readline';
import { fileURLToPath } from 'node:url';
import type { WorkerArgs } from './idempotency-worker.js';

const WORKER = fileURLToPath(new URL('./idempotency-worker.ts', import.meta.url));

export interface WorkerEvent {
  event: string;
  pid: number;
  [k: string]: unknown;
}

export interface Worker {
  child: ChildProcess;
  /** Resolves with the first event of that name (rejects if the worker exits first). */
  next(event: string, timeoutMs?: number): Promise<WorkerEvent>;
  send(line: string): void;
  kill(): Promise<void>;
  exited: Promise<number | null>;
}

/** Start `node --import tsx test/helpers/idempotency-worker.ts <args>`. */
export function startWorker(args: WorkerArgs): Worker {
  const child = spawn(process.execPath, ['--import', 'tsx', WORKER, JSON.stringify(args)], {
    stdio: ['pipe', 'pipe', 'inherit'],
  });
  const seen: WorkerEvent[] = [];
  const waiters: Array<() => void> = [];
  createInterface({ input: child.stdout as NodeJS.ReadableStream }).on('line', (line) => {
    if (!line.startsWith('{')) return;
    seen.push(JSON.parse(line) as WorkerEvent);
    for (const w of waiters.splice(0)) w();
  });
  const exited = new Promise<number | null>((resolve) => child.once('exit', (code) => resolve(code)));
  let gone = false;
  exited.then(() => {
    gone = true;
    for (const w of waiters.splice(0)) w();
  });
  return {
    child,
    exited,
    // Generous: starting node + tsx takes ~10 s on a loaded 2-core CI machine, four at once longer.
    next(event, timeoutMs = 60_000) {
      return new Promise((resolve, reject) => {
        const timer = setTimeout(
          () => reject(new Error(`worker ${child.pid}: no "${event}" in ${timeoutMs} ms`)),
          timeoutMs,
        );
        const check = () => {
          const hit = seen.find((e) => e.event === event);
          if (hit) {
            clearTimeout(timer);
            resolve(hit);
          } else if (gone) {
            clearTimeout(timer);
            reject(new Error(`worker ${child.pid} exited before "${event}"`));
          } else waiters.push(check);
        };
        check();
      });
    },
    send(line) {
      child.stdin?.write(`${line}\n`);
    },
    async kill() {
      if (child.exitCode !== null || child.signalCode !== null) return;
      child.kill('SIGKILL');
      await exited;
    },
  };
}
