import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import { fileURLToPath } from 'node:url';

const BIN = fileURLToPath(new URL('../../bin/exactly-once.js', import.meta.url));
/**
 * A command that has not exited by then is killed and the test fails. Generous: each spawn compiles and loads the CLI
 * with tsx (2-3 s of CPU), which on a loaded CI machine can take a minute of wall time.
 */
export const CLI_TIMEOUT_MS = 120_000;

export interface CliResult {
  code: number | null;
  stdout: string;
  stderr: string;
}

/**
 * `node bin/exactly-once.js <args>` as operators run it, in a child process with a deadline. `env` is merged over
 * this process's environment with `ADMIN_TOKEN` removed (a token set in the shell must not leak into a test).
 *
 * @example const r = await runCli(['stats', '--queue', 'q', '--json'], { DATABASE_URL: db.url });
 */
export function runCli(args: string[], env: Record<string, string>): Promise<CliResult> {
  const { ADMIN_TOKEN: _ignored, ...inherited } = process.env;
  return new Promise((resolve, reject) => {
    execFile(
      process.execPath,
      [BIN, ...args],
      { env: { ...inherited, LOG_LEVEL: 'warn', ...env }, timeout: CLI_TIMEOUT_MS, killSignal: 'SIGKILL' },
      (err, stdout, stderr) => {
        if (err && (err as { killed?: boolean }).killed) {
          reject(new Error(`exactly-once ${args.join(' ')} did not exit within ${CLI_TIMEOUT_MS} ms: ${stderr}`));
          return;
        }
        const code = err ? (typeof err.code === 'number' ? err.code : null) : 0;
        resolve({ code, stdout, stderr });
      },
    );
  });
}

/** Exit code and both streams, for assertion messages. */
export const showCli = (r: CliResult) => `exit ${r.code}\nstdout: ${r.stdout}\nstderr: ${r.stderr}`;

/** The failure is one line on stderr, no stack trace, nothing on stdout. */
export function assertOneLineError(r: CliResult, exit: number, ...patterns: RegExp[]): void {
  assert.equal(r.code, exit, showCli(r));
  assert.equal(r.stdout, '', showCli(r));
  const lines = r.stderr.trimEnd().split('\n');
  assert.equal(lines.length, 1, showCli(r));
  for (const p of patterns) assert.match(lines[0] as string, p, showCli(r));
  assert.doesNotMatch(r.stderr, /\n\s+at |node:internal|\.ts:\d+/, showCli(r));
}
