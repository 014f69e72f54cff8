import assert from 'node:assert/strict';
import { after, before, describe, test } from 'node:test';
import { Redis } from 'ioredis';
import { storeInOutboxStandalone } from '../src/outbox/writer.js';
import { type CliRun, logLines, runCli, startHttpRelay } from './helpers/relay-http.js';
import { spawnRelay, writeConfigFile } from './helpers/relay-process.js';
import {
  ADMIN_DATABASE_URL,
  createTestDatabase,
  deleteRedisPrefix,
  freePort,
  REDIS_URL,
  redisPrefix,
  type TestDatabase,
  waitFor,
} from './helpers/services.js';
import { lateProxy, silentServer, spawnRedisServer } from './helpers/test-servers.js';

// The relay daemon and the operator commands as an operator starts them (issue 8 item 3, issue 15): bad flags and
// URLs, unreachable and silent servers, services that come up late, and the flags reaching the HTTP port.

let db: TestDatabase;
let redis: Redis;
const prefix = redisPrefix('daemon-startup');
const queuePattern = `${prefix}jobqueue:{priority}_priority`;
// The machine is shared and loaded: starting node + tsx alone can take several seconds. The bound proves "no hang"
// (before, these commands waited for 45 s and more); the messages prove which timeout fired.
const NO_HANG_MS = 45_000;

before(async () => {
  db = await createTestDatabase('daemon_startup');
  redis = new Redis(REDIS_URL);
});
after(async () => {
  await deleteRedisPrefix(redis, prefix);
  redis.disconnect();
  await db.close();
});

/** The CLI's verdict is exactly one line on stderr, without a stack trace. */
function oneLine(run: CliRun): string {
  const lines = run.stderr.trimEnd().split('\n');
  assert.equal(lines.length, 1, `expected one stderr line, got:\n${run.stderr}`);
  assert.doesNotMatch(run.stderr, /^\s+at /m, 'no stack trace');
  return lines[0] as string;
}

function dbUrl(host: string, port: number, database = db.name, user = 'postgres'): string {
  return `postgres://${user}@${host}:${port}/${database}`;
}

describe('bad input is refused in one line', () => {
  test('flag values out of range or empty are usage errors (exit 2) naming the flag', async () => {
    const cases: [string[], RegExp][] = [
      [['--port='], /--port must be an integer from 0 to 65535 \(got ""\)/],
      [['--port', '70000'], /--port must be an integer from 0 to 65535 \(got "70000"\)/],
      [['--concurrency', '1e3'], /--concurrency must be an integer from 1 to 64 \(got "1e3"\)/],
      [['--concurrency', '0'], /--concurrency must be an integer from 1 to 64 \(got "0"\)/],
      [['--concurrency', '65'], /--concurrency must be an integer from 1 to 64 \(got "65"\)/],
      [['--host='], /--host needs an address/],
      [['--wait', 'soon'], /--wait must be a duration/],
    ];
    // Never reached: flags are checked before anything connects.
    const env = { DATABASE_URL: 'postgres://postgres@127.0.0.1:1/never' };
    const runs = await Promise.all(cases.map(([args]) => runCli(['relay', ...args], env, 150_000)));
    runs.forEach((run, i) => {
      const [args, message] = cases[i] as [string[], RegExp];
      assert.equal(run.code, 2, `${args.join(' ')}: ${run.signal ?? ''} ${run.stderr}`);
      assert.match(oneLine(run), message);
    });
  });

  test('a DATABASE_URL or REDIS_URL that is not a URL is named, not looked up as a host', async () => {
    const runs = await Promise.all([
      runCli(['relay', '--port', '0'], { DATABASE_URL: 'not a url' }),
      runCli(['migrate'], { DATABASE_URL: 'not a url' }),
      runCli(['outbox', 'list'], { DATABASE_URL: 'not a url' }),
      runCli(['relay', '--port', '0'], { DATABASE_URL: db.url, REDIS_URL: 'not a url' }),
    ]);
    for (const [i, run] of runs.entries()) {
      assert.equal(run.code, 1, run.stderr);
      const line = oneLine(run);
      assert.match(
        line,
        i < 3 ? /exactly_once\.database\.url: .*DATABASE_URL/ : /exactly_once\.redis\.url: .*REDIS_URL/,
      );
      assert.doesNotMatch(line, /ENOTFOUND/);
    }
  });

  test('--concurrency beyond what the role may connect is refused before any claim', async () => {
    const role = `eo_t_limited_${Math.floor(Math.random() * 1e6)}`;
    await db.pool.query(`CREATE ROLE ${role} LOGIN CONNECTION LIMIT 5`);
    try {
      const run = await runCli(['relay', '--concurrency', '8', '--port', '0', '--wait', '5s'], {
        DATABASE_URL: dbUrl('127.0.0.1', 5432, db.name, role),
        REDIS_URL,
      });
      assert.equal(run.code, 1, run.stderr);
      assert.match(
        oneLine(run),
        new RegExp(
          `exactly_once\\.outbox\\.concurrency: 8 needs 15 Postgres connections .*role "${role}"'s CONNECTION LIMIT \\(5\\)`,
        ),
      );
    } finally {
      await db.pool.query(`DROP ROLE IF EXISTS ${role}`);
    }
  });
});

describe('unreachable and silent servers fail in seconds, in one line', () => {
  test('connection refused: migrate, outbox list and relay name the address, without a stack trace', async () => {
    const closed = await freePort();
    const env = { DATABASE_URL: dbUrl('127.0.0.1', closed), REDIS_URL };
    const runs = await Promise.all([
      runCli(['migrate'], env),
      runCli(['outbox', 'list'], env),
      runCli(['relay', '--port', '0', '--wait', '1s'], env),
    ]);
    for (const run of runs) {
      assert.equal(run.code, 1, run.stderr);
      assert.match(
        oneLine(run),
        new RegExp(`cannot reach Postgres at 127\\.0\\.0\\.1:${closed}/${db.name}: .*ECONNREFUSED`),
      );
    }
    assert.match(runs[2]?.stderr ?? '', /not reachable within 1s \(--wait; \d+ attempts?, last: /);
  });

  test('a Postgres address that accepts TCP and never answers: database.connect_timeout fires', async () => {
    const silent = await silentServer();
    try {
      const file = writeConfigFile('startup-silent', {
        database: { url: dbUrl('127.0.0.1', silent.port), connect_timeout: '2s' },
        redis: { url: REDIS_URL },
      });
      const runs = await Promise.all([
        runCli(['migrate', '--config', file], {}, 90_000),
        runCli(['outbox', 'list', '--config', file], {}, 90_000),
        runCli(['relay', '--config', file, '--wait', '3s'], {}, 90_000),
      ]);
      for (const [i, run] of runs.entries()) {
        assert.equal(run.signal, null, `hung and was killed:\n${run.stdout}${run.stderr}`);
        assert.equal(run.code, 1, run.stderr);
        assert.ok(run.ms < NO_HANG_MS, `took ${Math.round(run.ms)} ms`);
        const line = oneLine(run);
        assert.match(line, new RegExp(`cannot reach Postgres at 127\\.0\\.0\\.1:${silent.port}/`));
        assert.match(
          line,
          i < 2 ? /no answer within 2s \(database\.connect_timeout\)/ : /not reachable within 3s .*no answer/,
        );
      }
    } finally {
      await silent.close();
    }
  });

  test('Redis refused: the relay gives up after --wait and names Redis', async () => {
    const closed = await freePort();
    const run = await runCli(['relay', '--port', '0', '--wait', '1s'], {
      DATABASE_URL: db.url,
      REDIS_URL: `redis://127.0.0.1:${closed}`,
    });
    assert.equal(run.code, 1, run.stderr);
    assert.match(oneLine(run), new RegExp(`cannot reach Redis at 127\\.0\\.0\\.1:${closed}: not reachable within 1s`));
    assert.ok(logLines(run.stdout, 'waiting for Redis').length >= 1, 'each failed attempt is logged');
  });
});

describe('services that come up late', () => {
  test('the relay waits for Redis, and claims nothing before its connection is ready', async () => {
    const port = await freePort();
    const events = await Promise.all(
      [1, 2, 3].map((n) =>
        storeInOutboxStandalone(db.pool, { aggregateId: `late-redis-${n}`, eventType: 'e', payload: {} }),
      ),
    );
    const file = writeConfigFile('startup-late-redis', {
      database: { url: db.url },
      redis: { url: `redis://127.0.0.1:${port}` },
      outbox: { queue_pattern: queuePattern },
    });
    const relay = spawnRelay(file);
    let late: Awaited<ReturnType<typeof spawnRedisServer>> | undefined;
    try {
      await waitFor(() => logLines(relay.stderr(), 'waiting for Redis').length >= 2, 30_000, 'two logged attempts');
      late = await spawnRedisServer([], port);
      const client = new Redis(late.url);
      try {
        await waitFor(async () => (await client.llen(`${prefix}jobqueue:low_priority`)) === 3, 30_000, 'the events');
      } finally {
        client.disconnect();
      }
      const out = relay.stderr();
      assert.doesNotMatch(out, /Stream isn't writeable/);
      assert.deepEqual(logLines(out, /relay batch failed/), [], 'no batch ran before Redis was ready');
      const { rows } = await db.pool.query<{ retry_count: number }>(
        'SELECT retry_count FROM exactly_once_outbox WHERE id = ANY($1::uuid[])',
        [events.map((e) => e.id)],
      );
      assert.deepEqual(
        rows.map((r) => r.retry_count),
        [0, 0, 0],
      );
      relay.child.kill('SIGTERM');
      assert.deepEqual(await relay.exited, { code: 0, signal: null });
    } finally {
      relay.child.kill('SIGKILL');
      await late?.stop();
    }
  });

  test('the relay waits for Postgres (logging each attempt) and then runs', async () => {
    const port = await freePort();
    const proxy = lateProxy(port, Number(new URL(ADMIN_DATABASE_URL).port || 5432));
    const event = await storeInOutboxStandalone(db.pool, { aggregateId: 'late-pg', eventType: 'e', payload: {} });
    const file = writeConfigFile('startup-late-pg', {
      database: { url: dbUrl('127.0.0.1', port) },
      redis: { url: REDIS_URL },
      outbox: { queue_pattern: queuePattern },
    });
    const relay = spawnRelay(file);
    try {
      await waitFor(
        () => logLines(relay.stderr(), 'waiting for Postgres to accept connections').length >= 2,
        30_000,
        'two logged attempts',
      );
      await proxy.listen();
      await waitFor(
        async () =>
          (
            await db.pool.query('SELECT 1 FROM exactly_once_outbox WHERE id = $1 AND status = $2', [
              event.id,
              'published',
            ])
          ).rows.length === 1,
        30_000,
        'the event published',
      );
      relay.child.kill('SIGTERM');
      assert.deepEqual(await relay.exited, { code: 0, signal: null });
    } finally {
      relay.child.kill('SIGKILL');
      await proxy.close();
    }
  });
});

test('--port, --host and --concurrency reach the running daemon (issue 15)', async () => {
  const file = writeConfigFile('startup-flags', {
    database: { url: db.url },
    redis: { url: REDIS_URL },
    outbox: { queue_pattern: queuePattern },
  });
  const relay = await startHttpRelay(file, ['--concurrency', '2'], { LOG_LEVEL: 'info' });
  try {
    const started = logLines(relay.stderr(), 'relay started');
    assert.equal(started.length, 1);
    assert.equal(started[0]?.concurrency, 2);
    const listening = logLines(relay.stderr(), 'admin API listening');
    assert.deepEqual(
      listening.map((l) => [l.host, l.port]),
      [['127.0.0.1', relay.port]],
    );
    assert.equal((await relay.get('/healthz')).status, 200);
    const ready = await relay.get('/readyz');
    assert.equal(ready.status, 200, ready.text);
    assert.equal((await relay.get('/metrics')).status, 200);
    // Two claim loops: the event of each of two aggregates is published.
    await Promise.all(
      ['flags-a', 'flags-b'].map((a) =>
        storeInOutboxStandalone(db.pool, { aggregateId: a, eventType: 'e', payload: {} }),
      ),
    );
    await waitFor(
      async () =>
        (
          await db.pool.query<{ n: number }>(
            "SELECT count(*)::int AS n FROM exactly_once_outbox WHERE aggregate_id LIKE 'flags-%' AND status = 'published'",
          )
        ).rows[0]?.n === 2,
      20_000,
      'both events published',
    );
  } finally {
    assert.deepEqual(await relay.stop(), { code: 0, signal: null });
  }
});
