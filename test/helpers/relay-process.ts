import { type ChildProcess, spawn } from 'node:child_process';
import { rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { stringify } from 'yaml';

const BIN = new URL('../../bin/exactly-once.js', import.meta.url).pathname;

/** Config files this test process wrote; removed when it exits, so a run leaves nothing in the temp folder. */
const written = new Set<string>();
process.once('exit', () => {
  for (const file of written) rmSync(file, { force: true });
});

/** Write an `exactly_once:` YAML config file for child processes and return its path (removed at exit). */
export function writeConfigFile(label: string, tree: Record<string, unknown>): string {
  const file = path.join(tmpdir(), `eo-${label}-${process.pid}-${Date.now()}-${written.size}.yaml`);
  written.add(file);
  // Many relays share this machine in tests: each admin server takes a free port unless the test says otherwise.
  writeFileSync(file, stringify({ exactly_once: { ...tree, admin: { port: 0, ...(tree.admin as object) } } }));
  return file;
}

export interface RelayProcess {
  child: ChildProcess;
  exited: Promise<{ code: number | null; signal: NodeJS.Signals | null }>;
  stderr(): string;
}

/** `exactly-once relay --config FILE` as a child process (the real CLI, as operators run it). */
export function spawnRelay(
  configFile: string,
  extraArgs: string[] = [],
  env: Record<string, string> = {},
): RelayProcess {
  const child = spawn(process.execPath, [BIN, 'relay', '--config', configFile, ...extraArgs], {
    stdio: ['ignore', 'pipe', 'pipe'],
    env: { ...process.env, LOG_LEVEL: 'warn', ...env },
  });
  let err = '';
  child.stderr?.on('data', (d: Buffer) => {
    err += d.toString();
  });
  child.stdout?.on('data', (d: Buffer) => {
    err += d.toString();
  });
  const exited = new Promise<{ code: number | null; signal: NodeJS.Signals | null }>((resolve) => {
    child.once('exit', (code, signal) => resolve({ code, signal }));
  });
  return { child, exited, stderr: () => err };
}

/**
 * The child's exit, with a deadline: past `ms` it is SIGKILLed and the wait fails with its output, so a relay that
 * hangs fails its test instead of hanging the suite.
 */
export async function exitWithin(
  relay: RelayProcess,
  ms: number,
): Promise<{ code: number | null; signal: NodeJS.Signals | null }> {
  let timer: NodeJS.Timeout | undefined;
  const timeout = new Promise<'timeout'>((resolve) => {
    timer = setTimeout(() => resolve('timeout'), ms);
  });
  const result = await Promise.race([relay.exited, timeout]);
  clearTimeout(timer);
  if (result !== 'timeout') return result;
  relay.child.kill('SIGKILL');
  await relay.exited;
  throw new Error(`relay did not exit within ${ms} ms; its output:\n${relay.stderr()}`);
}
