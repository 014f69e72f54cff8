import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { after, before, describe, test } from 'node:test';
import pg from 'pg';
import { Metrics } from '../src/metrics/metrics.js';
import { storeInOutboxStandalone } from '../src/outbox/writer.js';
import { type AdminFixture, adminFixture } from './helpers/admin-fixture.js';
import { seedOutbox } from './helpers/outbox-rows.js';
import { sample } from './helpers/relay-http.js';
import { freePort } from './helpers/services.js';

let fx: AdminFixture;

before(async () => {
  fx = await adminFixture('metrics', {
    config: { metrics: { cardinality_limit: 2, histogram_buckets: [0.05, 0.5, 5] } },
  });
});
after(async () => {
  await fx.close();
});

async function scrape(): Promise<string> {
  const res = await fx.request('GET', '/metrics');
  assert.equal(res.status, 200);
  return res.text;
}

describe('after a known workload the counters have the expected values', () => {
  test('idempotency metrics, with cardinality_limit and histogram_buckets from config', async () => {
    const svc = fx.idempotency;
    const a = svc.generateIdempotencyKey('m-q1', '', 'a');
    await svc.processWithIdempotency(a, async () => 'done');
    const dup = await svc.processWithIdempotency(a, async () => 'again');
    assert.equal(dup.duplicate, true);
    await assert.rejects(
      svc.processWithIdempotency(svc.generateIdempotencyKey('m-q1', '', 'b'), async () => {
        throw new Error('processor failed');
      }),
      /processor failed/,
    );
    await svc.processWithIdempotency(svc.generateIdempotencyKey('m-q2', '', 'c'), async () => 1);
    // The limit is 2 queues: a third collapses into "other".
    await svc.processWithIdempotency(svc.generateIdempotencyKey('m-q3', '', 'd'), async () => 1);
    await svc.processWithIdempotency(svc.generateIdempotencyKey('m-q4', '', 'e'), async () => 1);

    const text = await scrape();
    const checks = 'exactly_once_idempotency_checks_total';
    assert.equal(sample(text, checks, { queue: 'm-q1', outcome: 'first' }), 1);
    assert.equal(sample(text, checks, { queue: 'm-q1', outcome: 'duplicate' }), 1);
    assert.equal(sample(text, checks, { queue: 'm-q2', outcome: 'first' }), 1);
    assert.equal(sample(text, checks, { queue: 'other', outcome: 'first' }), 2);
    assert.doesNotMatch(text, /m-q3|m-q4/);
    assert.equal(sample(text, 'exactly_once_duplicates_avoided_total', { queue: 'm-q1' }), 1);
    assert.equal(sample(text, 'exactly_once_successful_processing_total', { queue: 'm-q1' }), 1);
    assert.equal(sample(text, 'exactly_once_successful_processing_total', { queue: 'other' }), 2);

    const duration = 'exactly_once_processing_duration_seconds';
    assert.equal(sample(text, `${duration}_count`, { queue: 'm-q1', result: 'success' }), 1);
    assert.equal(sample(text, `${duration}_count`, { queue: 'm-q1', result: 'error' }), 1);
    for (const le of ['0.05', '0.5', '5', '+Inf']) {
      assert.equal(sample(text, `${duration}_bucket`, { queue: 'm-q1', result: 'success', le }), 1, `le=${le}`);
    }
    assert.equal(sample(text, `${duration}_bucket`, { queue: 'm-q1', result: 'success', le: '0.1' }), undefined);

    const storageOps = [...text.matchAll(/^exactly_once_storage_operations_total\{.*\} (\d+)$/gm)];
    assert.ok(storageOps.length > 0 && storageOps.every((m) => Number(m[1]) > 0), 'storage operations counted');
    // Live keys: a, c, d, e (b was released when its processor failed).
    assert.equal(sample(text, 'exactly_once_storage_size', { backend: fx.idempotency.store.kind }), 4);
  });

  test('outbox metrics: published, failed, batch size, Redis round trip, backlog and its age', async () => {
    await fx.db.pool.query('TRUNCATE exactly_once_outbox_events, exactly_once_outbox_parked');
    await seedOutbox(fx.db.pool, [{ status: 'pending', ageMs: 120_000, aggregateId: 'old' }]);
    for (const n of [1, 2])
      await storeInOutboxStandalone(fx.db.pool, { aggregateId: `ok-${n}`, eventType: 'e', payload: {} });
    // Its destination is a string key: LPUSH fails with WRONGTYPE, and max_retries 0 makes it dead at once.
    const poison = `${fx.prefix}not-a-list`;
    await fx.redis.set(poison, 'occupied');
    await storeInOutboxStandalone(
      fx.db.pool,
      { aggregateId: 'sick', eventType: 'e', payload: {}, queue: poison },
      fx.config.outbox,
    );

    const beforeText = await scrape();
    assert.equal(sample(beforeText, 'exactly_once_outbox_backlog_events', { status: 'pending' }), 4);
    assert.equal(sample(beforeText, 'exactly_once_outbox_backlog_events', { status: 'failed' }), 0);
    const age = sample(beforeText, 'exactly_once_outbox_oldest_pending_age_seconds') ?? 0;
    assert.ok(age >= 120 && age < 180, `age ${age}`);

    const published = await fx.request('POST', '/api/v1/exactly-once/outbox');
    assert.equal(published.status, 200, published.text);

    const text = await scrape();
    assert.equal(sample(text, 'exactly_once_outbox_published_total'), 3);
    assert.equal(sample(text, 'exactly_once_outbox_failed_total'), 1);
    assert.equal(sample(text, 'exactly_once_outbox_batch_size_sum'), 4);
    const batches = sample(text, 'exactly_once_outbox_batch_size_count') ?? 0;
    assert.ok(batches >= 1);
    assert.equal(sample(text, 'exactly_once_outbox_processing_duration_seconds_count'), batches);
    assert.ok((sample(text, 'exactly_once_redis_round_trip_seconds_count') ?? 0) >= 1);
    assert.equal(sample(text, 'exactly_once_outbox_backlog_events', { status: 'pending' }), 0);
    assert.equal(sample(text, 'exactly_once_outbox_backlog_events', { status: 'failed' }), 1);
    assert.equal(sample(text, 'exactly_once_outbox_oldest_pending_age_seconds'), 0);
  });

  test('maintenance runs are counted', async () => {
    const res = await fx.request('POST', '/api/v1/exactly-once/cleanup?type=outbox');
    assert.equal(res.status, 200, res.text);
    const text = await scrape();
    assert.equal(sample(text, 'exactly_once_maintenance_runs_total', { type: 'outbox', result: 'ok' }), 1);
  });

  // The reference document: docs/reference-api.md.
  test('every metric name of the reference document is exposed, plus default process metrics', async () => {
    const text = await scrape();
    for (const name of [
      'exactly_once_processing_duration_seconds',
      'exactly_once_duplicates_avoided_total',
      'exactly_once_successful_processing_total',
      'exactly_once_storage_errors_total',
      'exactly_once_idempotency_checks_total',
      'exactly_once_outbox_published_total',
      'exactly_once_outbox_failed_total',
      'exactly_once_outbox_processing_duration_seconds',
      'exactly_once_storage_operations_total',
      'exactly_once_storage_size',
      'exactly_once_outbox_backlog_events',
      'exactly_once_outbox_oldest_pending_age_seconds',
      'exactly_once_outbox_batch_size',
      'exactly_once_redis_round_trip_seconds',
      'process_cpu_user_seconds_total',
      'nodejs_heap_size_used_bytes',
    ]) {
      assert.match(text, new RegExp(`^# TYPE ${name} `, 'm'), name);
    }
  });
});

test('promtool check metrics accepts the output', async () => {
  // scripts/test-tools.mjs (run by npm test) makes sure promtool is installed.
  const which = spawnSync('promtool', ['--version'], { encoding: 'utf8' });
  assert.ifError(which.error);
  const text = await scrape();
  const result = spawnSync('promtool', ['check', 'metrics'], { input: text, encoding: 'utf8' });
  assert.equal(result.status, 0, `promtool: ${result.stdout}${result.stderr}`);
  assert.equal(`${result.stdout}${result.stderr}`.trim(), '');
});

test('a scrape still answers when Postgres is unreachable: last values kept, the error counted', async () => {
  const port = await freePort();
  const pool = new pg.Pool({ connectionString: `postgres://postgres@127.0.0.1:${port}/none`, max: 1 });
  pool.on('error', () => {});
  try {
    const metrics = new Metrics({
      pool,
      processMetrics: false,
      config: { ...fx.config.metrics, collectionInterval: 0 },
    });
    const text = await metrics.text();
    assert.equal(sample(text, 'exactly_once_storage_errors_total', { queue: '', operation: 'outbox_backlog' }), 1);
    assert.equal(sample(text, 'exactly_once_outbox_backlog_events', { status: 'pending' }), undefined);
  } finally {
    await pool.end();
  }
});

test('instances have registries of their own', async () => {
  const a = new Metrics({ processMetrics: false });
  const b = new Metrics({ processMetrics: false });
  a.outboxPublished(5);
  assert.equal(sample(await a.text(), 'exactly_once_outbox_published_total'), 5);
  assert.equal(sample(await b.text(), 'exactly_once_outbox_published_total'), 0);
});
