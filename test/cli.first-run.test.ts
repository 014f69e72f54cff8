// The CLI as a new user first meets it: --version, a misspelt flag, an incomplete command, a busy admin port, a relay
// started with --wait 0, what the relay says when it starts and stops, and the unreachable-database line that
// docs/operations.md shows. Every case spawns the real CLI.
import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import net from 'node:net';
import { after, before, describe, test } from 'node:test';
import { type CliRun, logLines, runCli, startHttpRelay } from './helpers/relay-http.js';
import { writeConfigFile } from './helpers/relay-process.js';
import { createTestDatabase, freePort, REDIS_URL, redisPrefix, type TestDatabase } from './helpers/services.js';

const PKG = JSON.parse(readFileSync(new URL('../package.json', import.meta.url), 'utf8')) as { version: string };
const OPERATIONS = readFileSync(new URL('../docs/operations.md', import.meta.url), 'utf8');

let db: TestDatabase;
const prefix = redisPrefix('first-run');

before(async () => {
  db = await createTestDatabase('first_run');
});
after(async () => {
  await db.close();
});

const show = (r: CliRun) => `exit ${r.code}\nstdout: ${r.stdout}\nstderr: ${r.stderr}`;

/** A usage error: exit 2, nothing on stdout, the message and then the command's usage on stderr. */
function assertUsageError(r: CliRun, message: RegExp, usage: RegExp): void {
  assert.equal(r.code, 2, show(r));
  assert.equal(r.stdout, '', show(r));
  assert.match(r.stderr.split('\n')[0] as string, message, show(r));
  assert.match(r.stderr, usage, show(r));
}

describe('usage', () => {
  test('--version prints the package version', async () => {
    for (const flag of ['--version', '-v']) {
      const r = await runCli([flag]);
      assert.equal(r.code, 0, show(r));
      assert.equal(r.stdout.trim(), PKG.version, show(r));
    }
  });

  test('a misspelt flag names the flag, suggests the right one and prints the usage on stderr', async () => {
    const r = await runCli(['relay', '--concurency', '2']);
    assertUsageError(r, /unknown option '--concurency'; did you mean --concurrency\?/, /^Usage: exactly-once relay/m);
    const list = await runCli(['outbox', 'list', '--stauts', 'failed']);
    assertUsageError(list, /unknown option '--stauts'; did you mean --status\?/, /^Usage: exactly-once outbox/m);
  });

  test('outbox retry without ids says what is missing', async () => {
    const r = await runCli(['outbox', 'retry']);
    assertUsageError(r, /give the ids of the events to replay, or --all-failed/, /^Usage: exactly-once outbox/m);
    assert.doesNotMatch(r.stderr, /not both/, show(r));
    const both = await runCli(['outbox', 'retry', '--all-failed', '0190a6e0-6c1a-7c3e-9f1e-2b8f4c1d9a10']);
    assertUsageError(both, /event ids or --all-failed, not both/, /^Usage: exactly-once outbox/m);
  });

  test('a command without its action, or no command at all, prints the usage on stderr with exit 2', async () => {
    assertUsageError(await runCli(['outbox']), /^Usage: exactly-once outbox/, /outbox retry/);
    assertUsageError(await runCli([]), /^Usage: exactly-once <command>/, /Commands:/);
    // Asked for, the usage is the output: stdout, exit 0.
    const help = await runCli(['outbox', '--help']);
    assert.equal(help.code, 0, show(help));
    assert.match(help.stdout, /^Usage: exactly-once outbox/, show(help));
  });
});

describe('the relay', () => {
  const tree = () => ({
    database: { url: db.url },
    redis: { url: REDIS_URL },
    idempotency: { key_prefix: prefix },
    outbox: { queue_pattern: `${prefix}jobqueue:{priority}_priority` },
  });

  test('--wait 0 tries once and starts when Postgres and Redis answer; start-up names the database and config', async () => {
    const file = writeConfigFile('first-run-wait0', tree());
    // A password in the URL (trust authentication ignores it): the log must show where, never the password.
    const url = new URL(db.url);
    url.password = 'hunter2-secret';
    const relay = await startHttpRelay(file, ['--wait', '0'], { LOG_LEVEL: 'info', DATABASE_URL: url.toString() });
    const { code } = await relay.stop();
    assert.equal(code, 0, relay.stderr());
    const out = relay.stderr();
    assert.doesNotMatch(out, /hunter2-secret/, 'the password never reaches the log');
    const [started] = logLines(out, /^relay starting/);
    assert.ok(started, `a start-up line:\n${out}`);
    assert.equal(started.config, file, 'the config file');
    assert.equal(started.database, `${url.hostname}:${url.port}${url.pathname}`, 'the database, without credentials');
    assert.equal(logLines(out, 'relay stopped').length, 1, `"relay stopped" once:\n${out}`);
  });

  test('--wait 0 against a Redis that refuses: one attempt, one line naming Redis', async () => {
    const port = await freePort();
    const file = writeConfigFile('first-run-wait0-down', { ...tree(), redis: { url: `redis://127.0.0.1:${port}` } });
    const r = await runCli(['relay', '--config', file, '--wait', '0'], { LOG_LEVEL: 'error' });
    assert.equal(r.code, 1, show(r));
    assert.match(r.stderr, /cannot reach Redis at 127\.0\.0\.1:\d+: not reachable \(--wait 0 tries once; /, show(r));
    assert.match(r.stderr, /ECONNREFUSED/, show(r));
  });

  test('an admin port in use: one line with a code and the way out', async () => {
    const busy = net.createServer();
    await new Promise<void>((resolve) => busy.listen(0, '127.0.0.1', resolve));
    const { port } = busy.address() as net.AddressInfo;
    try {
      const file = writeConfigFile('first-run-busy', tree());
      const r = await runCli(['relay', '--config', file, '--port', String(port), '--host', '127.0.0.1'], {
        LOG_LEVEL: 'error',
      });
      assert.equal(r.code, 1, show(r));
      const lines = r.stderr.trimEnd().split('\n');
      assert.equal(lines.length, 1, show(r));
      assert.match(lines[0] as string, new RegExp(`127\\.0\\.0\\.1:${port} is in use`), show(r));
      assert.match(lines[0] as string, /--port 0/, show(r));
      assert.match(lines[0] as string, /\[EO_ADMIN_PORT_IN_USE\]$/, show(r));
    } finally {
      busy.close();
    }
  });
});

test('migrate against an unreachable Postgres prints the line docs/operations.md shows', async () => {
  const port = await freePort();
  const r = await runCli(['migrate'], { DATABASE_URL: `postgres://postgres@127.0.0.1:${port}/app` });
  assert.equal(r.code, 1, show(r));
  const real = r.stderr.trim();
  const documented = OPERATIONS.split('\n').find((l) => l.startsWith('exactly-once migrate: cannot reach Postgres'));
  assert.ok(documented, 'docs/operations.md shows the migrate line');
  // Same words up to the address, and the same code at the end.
  assert.match(real, /^exactly-once migrate: cannot reach Postgres at 127\.0\.0\.1:\d+\/app: /, show(r));
  assert.equal(/\[\w+\]$/.exec(real)?.[0], /\[\w+\]$/.exec(documented)?.[0], `real: ${real}\ndocs: ${documented}`);
});
