import assert from 'node:assert/strict';
import { after, before, test } from 'node:test';
import { Redis } from 'ioredis';
import pg from 'pg';
import { configFromObject } from '../src/config/load-config.js';
import { ConfigError } from '../src/errors.js';
import { silentLogger } from '../src/logger.js';
import { Metrics } from '../src/metrics/metrics.js';
import { Relay } from '../src/outbox/postgres/relay.js';
import { storeInOutboxStandalone } from '../src/outbox/writer.js';
import { RedisListPublisher } from '../src/publishers/redis-list.js';
import { createRedis } from '../src/redis.js';
import { captureLogs } from './helpers/log-capture.js';
import { type OutboxFixture, outboxFixture } from './helpers/outbox-fixture.js';
import { type RedisServer, startRedisServer, waitFor } from './helpers/services.js';

const OPEN = /^circuit breaker open/;
const HALF_OPEN = /^circuit breaker half-open/;
const CLOSED = /^circuit breaker closed/;

let fx: OutboxFixture;
let server: RedisServer;
before(async () => {
  fx = await outboxFixture('breaker', { batch_size: 10 });
  // Its own redis-server (AOF, fsync always), frozen with SIGSTOP: every publish times out, nothing is lost.
  server = await startRedisServer({ persistent: true });
});
after(async () => {
  server.signal('SIGCONT');
  await server.kill();
  await fx.close();
});

async function circuitGauge(metrics: Metrics): Promise<number> {
  const m = /^exactly_once_relay_circuit_state (\d+)$/m.exec(await metrics.text());
  assert.ok(m, 'exactly_once_relay_circuit_state is exported');
  return Number(m[1]);
}

test('Redis frozen: the breaker opens after the threshold, claims nothing while open, half-opens, closes; every event once', async () => {
  const config = configFromObject({
    database: { url: fx.db.url },
    redis: { url: server.url },
    outbox: {
      queue_pattern: fx.config.outbox.queuePattern,
      batch_size: 10,
      concurrency: 2,
      poll_interval: '200ms',
      publish_timeout: '300ms',
      circuit_breaker: { failure_threshold: 3, open_for: '1s' },
    },
  });
  const redis = createRedis(server.url, silentLogger);
  const publisher = new RedisListPublisher(redis, { queuePattern: config.outbox.queuePattern, timeoutMs: 300 });
  // The relay's own pool, so every connection checkout it makes (a claim, a pg_locks read) is counted.
  const pool = new pg.Pool({ connectionString: fx.db.url, max: 4 });
  let checkouts = 0;
  pool.on('acquire', () => {
    checkouts++;
  });
  const logs = captureLogs('info');
  const atLine = new Map<string, number[]>();
  logs.onLine((line) => {
    for (const [name, re] of [
      ['open', OPEN],
      ['half', HALF_OPEN],
      ['closed', CLOSED],
    ] as const)
      if (re.test(line.msg)) atLine.set(name, [...(atLine.get(name) ?? []), checkouts]);
  });
  const metrics = new Metrics({ processMetrics: false });
  const relay = new Relay({ config, pool, publisher, logger: logs.logger, metrics });
  const written: string[] = [];
  const write = async (from: number, n: number) => {
    const events = Array.from({ length: n }, (_, i) => ({
      aggregateId: `b${(from + i) % 3}`,
      eventType: 'e',
      payload: { n: Math.floor((from + i) / 3) },
    }));
    written.push(...(await storeInOutboxStandalone(fx.db.pool, events)).map((e) => e.id));
  };
  await relay.start();
  try {
    await write(0, 30);
    await waitFor(async () => (await pendingCount()) === 0, 20_000, 'the first 30 events delivered');
    const healthy = relay.health();
    assert.equal(healthy.ready, true);
    assert.equal(healthy.breaker, 'closed');
    assert.equal(healthy.consecutiveFailures, 0);
    assert.ok(healthy.lastSuccessAt instanceof Date);
    assert.equal(await circuitGauge(metrics), 0);

    assert.ok(server.signal('SIGSTOP'), 'redis-server frozen');
    await write(30, 30);
    await logs.waitFor(OPEN, 20_000);
    const open = relay.health();
    assert.equal(open.ready, false);
    assert.equal(open.breaker, 'open');
    assert.ok(open.consecutiveFailures >= 3, `consecutiveFailures ${open.consecutiveFailures}`);
    assert.match(open.reason ?? '', /circuit breaker open after \d+ consecutive publish failures/);
    assert.match(open.lastError ?? '', /longer than 300 ms|timed out|timeout/i);
    assert.equal(await circuitGauge(metrics), 2);

    // Still frozen when the first trial runs: it fails and the circuit opens again.
    await logs.waitFor(OPEN, 20_000, 1);
    assert.equal(logs.matching(HALF_OPEN).length, 1, 'one half-open between the two opens');
    assert.ok(server.signal('SIGCONT'), 'redis-server thawed');
    await logs.waitFor(CLOSED, 20_000);
    await waitFor(async () => (await pendingCount()) === 0, 20_000, 'the backlog to drain');
    assert.equal(relay.health().ready, true);
    assert.equal(await circuitGauge(metrics), 0);
  } finally {
    server.signal('SIGCONT');
    await relay.stop();
    redis.disconnect();
    await pool.end();
  }

  // Claims stop while open: no connection was checked out between a transition to open and the next half-open.
  const opens = atLine.get('open') ?? [];
  const halves = atLine.get('half') ?? [];
  assert.ok(
    opens.length >= 2 && halves.length >= 2,
    `transitions logged: ${JSON.stringify(Object.fromEntries(atLine))}`,
  );
  for (let i = 0; i < opens.length; i++) {
    if (halves[i] === undefined) continue;
    assert.equal(halves[i], opens[i], `checkouts while open (period ${i + 1})`);
  }
  const order = logs.lines.map((l) => l.msg).filter((m) => OPEN.test(m) || HALF_OPEN.test(m) || CLOSED.test(m));
  assert.deepEqual(
    order.map((m) => (OPEN.test(m) ? 'open' : HALF_OPEN.test(m) ? 'half_open' : 'closed')),
    ['open', 'half_open', 'open', 'half_open', 'closed'],
  );
  const openLine = logs.matching(OPEN)[0];
  assert.equal(openLine?.level, 40, 'opening is a warning');
  assert.equal(logs.matching(CLOSED)[0]?.level, 30, 'closing is info');

  // Every event once (publishes that timed out may still have run on thaw: their markers made the retry a duplicate).
  const reader = new Redis(server.url);
  const raw = (await reader.lrange(fx.lowQueue, 0, -1)).reverse();
  reader.disconnect();
  const jobs = raw.map((j) => JSON.parse(j) as { id: string; aggregate_id: string; payload: { n: number } });
  const ids = jobs.map((j) => j.id);
  assert.equal(new Set(ids).size, ids.length, 'no duplicates');
  assert.deepEqual(new Set(ids), new Set(written), 'every event arrived');
  assert.equal(jobs.length, 60);
  const next = new Map<string, number>();
  for (const j of jobs) {
    assert.equal(j.payload.n, next.get(j.aggregate_id) ?? 0, `order of ${j.aggregate_id}`);
    next.set(j.aggregate_id, j.payload.n + 1);
  }
  const { rows } = await fx.db.pool.query('SELECT max(retry_count)::int AS m FROM exactly_once_outbox');
  assert.equal(rows[0].m, 0, 'an open circuit is not an event failure: no retries burned');
});

test('circuit_breaker config is validated, naming the key', () => {
  assert.throws(
    () => configFromObject({ outbox: { circuit_breaker: { failure_threshold: 0 } } }),
    (err: unknown) =>
      err instanceof ConfigError && err.path === 'exactly_once.outbox.circuit_breaker.failure_threshold',
  );
  assert.throws(
    () => configFromObject({ outbox: { circuit_breaker: { open_for: 0 } } }),
    (err: unknown) => err instanceof ConfigError && err.path === 'exactly_once.outbox.circuit_breaker.open_for',
  );
  const defaults = configFromObject({}).outbox.circuitBreaker;
  assert.deepEqual(defaults, { enabled: true, failureThreshold: 5, openFor: 10_000 });
});

async function pendingCount(): Promise<number> {
  const { rows } = await fx.db.pool.query(
    "SELECT count(*)::int AS n FROM exactly_once_outbox WHERE status <> 'published'",
  );
  return rows[0].n;
}
