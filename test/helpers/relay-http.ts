import { spawn } from 'node:child_process';
import { type RelayProcess, spawnRelay } from './relay-process.js';
import { freePort, waitFor } from './services.js';

const BIN = new URL('../../bin/exactly-once.js', import.meta.url).pathname;

/** A relay daemon spawned with an explicit `--port` and `--host`, and the URL its admin server answers on. */
export interface HttpRelay extends RelayProcess {
  url: string;
  port: number;
  get(path: string): Promise<{ status: number; text: string; json(): unknown }>;
  /** SIGTERM and wait for the exit (SIGKILL after the deadline). */
  stop(): Promise<{ code: number | null; signal: NodeJS.Signals | null }>;
}

/**
 * `exactly-once relay --config FILE --port <free> --host 127.0.0.1 ...`, resolved once `/healthz` answers.
 * Rejects (with the child's output) if it exits first or does not answer within `timeoutMs`.
 */
export async function startHttpRelay(
  configFile: string,
  extraArgs: string[] = [],
  env: Record<string, string> = {},
  timeoutMs = 30_000,
): Promise<HttpRelay> {
  const port = await freePort();
  const proc = spawnRelay(configFile, ['--port', String(port), '--host', '127.0.0.1', ...extraArgs], env);
  const url = `http://127.0.0.1:${port}`;
  let exited = false;
  void proc.exited.then(() => {
    exited = true;
  });
  const get = async (path: string) => {
    const res = await fetch(`${url}${path}`, { signal: AbortSignal.timeout(10_000) });
    const text = await res.text();
    return { status: res.status, text, json: () => JSON.parse(text) as unknown };
  };
  try {
    await waitFor(
      async () => {
        if (exited) throw new Error(`relay exited before serving HTTP:\n${proc.stderr()}`);
        try {
          return (await get('/healthz')).status === 200;
        } catch {
          return false;
        }
      },
      timeoutMs,
      `the relay's admin port ${port}`,
    );
  } catch (err) {
    proc.child.kill('SIGKILL');
    throw err;
  }
  const stop = async () => {
    if (proc.child.exitCode === null && proc.child.signalCode === null) {
      proc.child.kill('SIGTERM');
      const timer = setTimeout(() => proc.child.kill('SIGKILL'), 15_000);
      try {
        return await proc.exited;
      } finally {
        clearTimeout(timer);
      }
    }
    return proc.exited;
  };
  return { ...proc, url, port, get, stop };
}

/** One sample's value: exact metric name and exact label set. `undefined` when the series is absent. */
export function sample(text: string, name: string, labels: Record<string, string> = {}): number | undefined {
  const want = JSON.stringify(Object.entries(labels).sort());
  for (const line of text.split('\n')) {
    if (line.startsWith('#') || line === '') continue;
    const m = /^([a-zA-Z_:][\w:]*)(?:\{(.*)\})?\s+(\S+)$/.exec(line);
    if (!m || m[1] !== name) continue;
    const got = [...(m[2] ?? '').matchAll(/(\w+)="((?:[^"\\]|\\.)*)"/g)].map((l) => [l[1], l[2]]);
    if (JSON.stringify(got.sort()) === want) return Number(m[3]);
  }
  return undefined;
}

export interface CliRun {
  code: number | null;
  signal: NodeJS.Signals | null;
  stdout: string;
  stderr: string;
  /** Wall time from spawn to exit. */
  ms: number;
}

/**
 * Run `exactly-once <args>` to completion with stdout and stderr kept apart (pino logs go to stdout, the CLI's
 * one-line verdict to stderr). SIGKILLed at `timeoutMs`, so a hang shows as `signal: 'SIGKILL'`, never a stuck test.
 */
export function runCli(args: string[], env: Record<string, string> = {}, timeoutMs = 60_000): Promise<CliRun> {
  const started = performance.now();
  const child = spawn(process.execPath, [BIN, ...args], {
    stdio: ['ignore', 'pipe', 'pipe'],
    env: { ...process.env, LOG_LEVEL: 'warn', ...env },
  });
  let stdout = '';
  let stderr = '';
  child.stdout.on('data', (d: Buffer) => {
    stdout += d.toString();
  });
  child.stderr.on('data', (d: Buffer) => {
    stderr += d.toString();
  });
  const timer = setTimeout(() => child.kill('SIGKILL'), timeoutMs);
  return new Promise((resolve) => {
    child.once('close', (code, signal) => {
      clearTimeout(timer);
      resolve({ code, signal, stdout, stderr, ms: performance.now() - started });
    });
  });
}

/** The JSON log lines (pino) in a child's output that carry `msg`. */
export function logLines(output: string, msg: string | RegExp): Record<string, unknown>[] {
  const out: Record<string, unknown>[] = [];
  for (const line of output.split('\n')) {
    if (!line.startsWith('{')) continue;
    try {
      const entry = JSON.parse(line) as Record<string, unknown>;
      const m = String(entry.msg ?? '');
      if (typeof msg === 'string' ? m === msg : msg.test(m)) out.push(entry);
    } catch {
      // not a log line
    }
  }
  return out;
}
