// `npm start` (the demo) in a terminal ends by printing the dashboard's URL and keeps the relay and the page up until
// Ctrl-C; without a terminal, or with --exit, it exits after its summary as before. The terminal is a real
// pseudo-terminal (util-linux `script`), and Ctrl-C is the byte a keyboard sends, turned into SIGINT by the tty.
import assert from 'node:assert/strict';
import { type ChildProcessWithoutNullStreams, spawn } from 'node:child_process';
import net from 'node:net';
import { after, before, describe, test } from 'node:test';
import { Redis } from 'ioredis';
import { runCli } from './helpers/relay-http.js';
import { createTestDatabase, type RedisServer, startRedisServer, type TestDatabase } from './helpers/services.js';

const BIN = new URL('../bin/exactly-once.js', import.meta.url).pathname;
const DEMO_DEADLINE_MS = 90_000;

let db: TestDatabase;
// The demo writes fixed key names (exactly-once-demo:*, idempotency:*): a Redis of this file's own keeps them away
// from everyone else's and goes with the test.
let redisServer: RedisServer;
let env: Record<string, string>;

before(async () => {
  [db, redisServer] = await Promise.all([createTestDatabase('dashboard_demo'), startRedisServer()]);
  env = { DATABASE_URL: db.url, REDIS_URL: redisServer.url, LOG_LEVEL: 'warn' };
});

after(async () => {
  await redisServer?.kill();
  await db?.close();
});

const quote = (s: string) => `'${s.replaceAll("'", "'\\''")}'`;

/** `exactly-once demo <args>` with its stdout on a pseudo-terminal. */
function demoInTerminal(args: string[]): {
  child: ChildProcessWithoutNullStreams;
  output: () => string;
  exited: Promise<number | null>;
} {
  // `script` runs the command through $SHELL -c. Dash (Debian's /bin/sh, used when SHELL is unset, as in CI) stays
  // as the parent in the terminal's process group, gets the Ctrl-C too and dies of it (130): `exec` makes the demo
  // the terminal's only process, as a user's shell does when it runs a command.
  const command = `exec ${[process.execPath, BIN, 'demo', ...args].map(quote).join(' ')}`;
  const { ADMIN_TOKEN: _ignored, ...inherited } = process.env;
  const child = spawn('script', ['-qfec', command, '/dev/null'], {
    env: { ...inherited, SHELL: '/bin/sh', ...env },
  });
  let out = '';
  child.stdout.on('data', (d: Buffer) => {
    out += d.toString();
  });
  child.stderr.on('data', (d: Buffer) => {
    out += d.toString();
  });
  const timer = setTimeout(() => child.kill('SIGKILL'), DEMO_DEADLINE_MS);
  const exited = new Promise<number | null>((resolve) =>
    child.once('exit', (code) => {
      clearTimeout(timer);
      resolve(code);
    }),
  );
  return { child, output: () => out, exited };
}

async function waitForOutput(run: ReturnType<typeof demoInTerminal>, pattern: RegExp): Promise<RegExpMatchArray> {
  const deadline = Date.now() + DEMO_DEADLINE_MS;
  for (;;) {
    const m = pattern.exec(run.output());
    if (m) return m;
    if (run.child.exitCode !== null || Date.now() > deadline) {
      throw new Error(`demo output never matched ${pattern}:\n${run.output()}`);
    }
    await new Promise((r) => setTimeout(r, 100));
  }
}

describe('the demo and the dashboard', { concurrency: false }, () => {
  test('in a terminal: prints the dashboard URL, serves the page and the demo events, stops on Ctrl-C', async () => {
    const run = demoInTerminal(['--orders', '4', '--port', '0']);
    try {
      const [, url] = await waitForOutput(run, /Dashboard: (http:\/\/[^\s/]+)\//);
      assert.match(run.output(), /OK: every committed event had its effect exactly once/);
      const page = await fetch(`${url}/`);
      assert.equal(page.status, 200);
      assert.match(await page.text(), /<title>exactly-once<\/title>/);
      const res = await fetch(`${url}/api/v1/exactly-once/outbox?status=published&limit=100`);
      assert.equal(res.status, 200);
      const { events } = (await res.json()) as { events: { event_type: string }[] };
      assert.equal(events.filter((e) => e.event_type === 'order.created').length, 4, 'the demo’s events');
      // Still up after the summary: the relay and the page wait for the operator.
      assert.equal(run.child.exitCode, null);
      run.child.stdin.write('\x03');
      assert.equal(await run.exited, 0, run.output());
      await assert.rejects(fetch(`${url}/`), 'the server is gone');
    } finally {
      run.child.kill('SIGKILL');
    }
  });

  test('in a terminal with the port taken: says so with the way out, exits after the summary, leaves no marker', async () => {
    const busy = net.createServer();
    await new Promise<void>((resolve) => busy.listen(0, '127.0.0.1', resolve));
    const { port } = busy.address() as net.AddressInfo;
    try {
      const run = demoInTerminal(['--orders', '6', '--port', String(port)]);
      assert.equal(await run.exited, 0, run.output());
      assert.match(run.output(), /OK: every committed event had its effect exactly once/);
      assert.match(run.output(), new RegExp(`dashboard not started: .*:${port} is in use.*--port 0`));
      // Every event was published and its batch committed: no dedup marker may outlive the demo (its TTL is 24 h).
      const probe = new Redis(redisServer.url);
      try {
        assert.deepEqual(await probe.keys('*eo:dedup:*'), []);
      } finally {
        probe.disconnect();
      }
    } finally {
      busy.close();
    }
  });

  test('in a terminal with --exit, and without a terminal: exits after the summary, no dashboard', async () => {
    const run = demoInTerminal(['--orders', '2', '--exit']);
    assert.equal(await run.exited, 0, run.output());
    assert.match(run.output(), /OK: every committed event/);
    assert.doesNotMatch(run.output(), /Dashboard:/);

    const piped = await runCli(['demo', '--orders', '2'], env, DEMO_DEADLINE_MS);
    assert.equal(piped.code, 0, piped.stdout + piped.stderr);
    assert.match(piped.stdout, /OK: every committed event/);
    assert.doesNotMatch(piped.stdout, /Dashboard:/);
  });
});
