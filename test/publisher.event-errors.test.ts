import assert from 'node:assert/strict';
import { after, before, beforeEach, test } from 'node:test';
import type { Redis } from 'ioredis';
import { silentLogger } from '../src/logger.js';
import { RedisListPublisher, type RedisListPublisherOptions } from '../src/publishers/redis-list.js';
import { createRedis } from '../src/redis.js';
import { type OutboxFixture, outboxFixture } from './helpers/outbox-fixture.js';
import { eventStates, insertRawEvents } from './helpers/raw-events.js';
import { type RedisServer, startRedisServer, waitFor } from './helpers/services.js';

// G1/G3: one event's deterministic error (WRONGTYPE, a job too large for the server or for max_job_bytes, a job that
// cannot be built, a key the Redis user may not touch) is that event's failure: it is retried with backoff and finally
// marked failed, while the other aggregates of the same batch go out in that batch. Only infrastructure errors (here: a full
// server with noeviction) fail the whole batch, without counting a retry.

let fx: OutboxFixture;
let server: RedisServer;
const clients: Redis[] = [];

before(async () => {
  fx = await outboxFixture('event-errors', {
    max_retries: 2,
    allowed_queues: ['*'], // the relay's destination check: these tests name odd keys on purpose
    retry_backoff: { initial_delay: '100ms', jitter: false },
  });
  server = await startRedisServer();
});
after(async () => {
  for (const c of clients) c.disconnect();
  await server?.kill();
  await fx.close();
});
beforeEach(async () => {
  await fx.db.pool.query('TRUNCATE exactly_once_outbox_events, exactly_once_outbox_parked');
});

/** A client configured as the relay's own (no offline queue, one retry), on the test-owned server. */
async function ownServerClient(options: { username?: string } = {}): Promise<Redis> {
  const client = createRedis(server.url, silentLogger, options.username ? { username: options.username } : {});
  clients.push(client);
  await waitFor(() => client.status === 'ready', 5000, 'the Redis client to connect');
  return client;
}

function publisherFor(client: Redis, options: RedisListPublisherOptions = {}): RedisListPublisher {
  return new RedisListPublisher(client, { queuePattern: fx.config.outbox.queuePattern, ...options });
}

const bigPayload = (bytes: number) => JSON.stringify({ blob: 'x'.repeat(bytes) });

async function listIds(redis: Redis, list: string): Promise<string[]> {
  return (await redis.lrange(list, 0, -1)).reverse().map((j) => JSON.parse(j).id as string);
}

test('WRONGTYPE, an oversized job and an unbuildable job fail alone; the rest of the batch is published', async () => {
  const notAList = `${fx.prefix}not-a-list`;
  await fx.redis.set(notAList, 'occupied');
  const ids = await insertRawEvents(fx.db.pool, [
    { aggregateId: 'g1' },
    { aggregateId: 'sick', queue: notAList },
    { aggregateId: 'sick' },
    { aggregateId: 'timeless', createdAt: 'infinity' },
    { aggregateId: 'huge', payload: bigPayload(5000) },
    { aggregateId: 'g2' },
  ]);
  const [g1, wrongType, behindWrongType, unbuildable, oversized, g2] = ids as string[] as [
    string,
    string,
    string,
    string,
    string,
    string,
  ];
  const relay = fx.relay({ publisher: publisherFor(fx.redis, { maxJobBytes: 4096 }) });
  const summary = await relay.runBatch();
  assert.deepEqual(
    { published: summary.published, retried: summary.retried, held: summary.held, failed: summary.failed },
    { published: 2, retried: 3, held: 1, failed: 0 },
  );
  assert.deepEqual(await listIds(fx.redis, fx.lowQueue), [g1, g2]);
  const states = await eventStates(fx.db.pool, ids);
  assert.match(states.get(wrongType)?.lastError ?? '', /^WRONGTYPE/);
  assert.match(states.get(unbuildable)?.lastError ?? '', /created_at/);
  assert.match(states.get(oversized)?.lastError ?? '', /max_job_bytes.*4096/);
  for (const id of [wrongType, unbuildable, oversized]) {
    assert.deepEqual(
      { status: states.get(id)?.status, retries: states.get(id)?.retryCount },
      {
        status: 'pending',
        retries: 1,
      },
    );
  }
  assert.deepEqual(
    { status: states.get(behindWrongType)?.status, retries: states.get(behindWrongType)?.retryCount },
    {
      status: 'pending',
      retries: 0,
    },
  );
  assert.equal(await fx.redis.get(notAList), 'occupied');
});

test('a slot split into several calls keeps order, and a failure in one call holds its aggregate in the next', async () => {
  const notAList = `${fx.prefix}chunked-not-a-list`;
  await fx.redis.set(notAList, 'occupied');
  await fx.redis.del(fx.lowQueue);
  const payload = bigPayload(400);
  const ids = await insertRawEvents(fx.db.pool, [
    { aggregateId: 'a', payload },
    { aggregateId: 'sick', queue: notAList, payload },
    { aggregateId: 'b', payload },
    { aggregateId: 'a', payload },
    { aggregateId: 'sick', payload },
    { aggregateId: 'b', payload },
  ]);
  // About two jobs per call: the failure lands in the first call, its aggregate's next event in the third.
  const relay = fx.relay({ publisher: publisherFor(fx.redis, { maxCallChars: 2000 }) });
  const summary = await relay.runBatch();
  assert.deepEqual(
    { published: summary.published, retried: summary.retried, held: summary.held },
    { published: 4, retried: 1, held: 1 },
  );
  assert.deepEqual(await listIds(fx.redis, fx.lowQueue), [ids[0], ids[2], ids[3], ids[5]]);
  const states = await eventStates(fx.db.pool, ids);
  assert.equal(states.get(ids[4] as string)?.retryCount, 0, 'held behind the failed event, not retried');
  assert.equal(states.get(ids[4] as string)?.status, 'pending');
});

test("a job above the server's proto-max-bulk-len fails alone instead of breaking the connection", async () => {
  const admin = await ownServerClient();
  await admin.config('SET', 'proto-max-bulk-len', String(1024 * 1024));
  try {
    const ids = await insertRawEvents(fx.db.pool, [
      { aggregateId: 'a' },
      { aggregateId: 'big', payload: bigPayload(1024 * 1024 + 100) },
      { aggregateId: 'b' },
    ]);
    const relay = fx.relay({ publisher: publisherFor(await ownServerClient()) });
    const summary = await relay.runBatch();
    assert.deepEqual({ published: summary.published, retried: summary.retried }, { published: 2, retried: 1 });
    assert.deepEqual(await listIds(admin, fx.lowQueue), [ids[0], ids[2]]);
    const big = (await eventStates(fx.db.pool, ids)).get(ids[1] as string);
    assert.match(big?.lastError ?? '', /proto-max-bulk-len/);
  } finally {
    await admin.config('SET', 'proto-max-bulk-len', String(512 * 1024 * 1024));
    await admin.flushall();
  }
});

test('when CONFIG is not allowed, the first oversized job costs one outage backoff, then fails alone', async () => {
  const admin = await ownServerClient();
  await admin.config('SET', 'proto-max-bulk-len', String(1024 * 1024));
  await admin.call('ACL', 'SETUSER', 'noconfig', 'on', 'nopass', '~*', '+@all', '-config');
  try {
    const ids = await insertRawEvents(fx.db.pool, [
      { aggregateId: 'a' },
      { aggregateId: 'big', payload: bigPayload(1024 * 1024 + 100) },
      { aggregateId: 'b' },
    ]);
    const relay = fx.relay({ publisher: publisherFor(await ownServerClient({ username: 'noconfig' })) });
    // Redis answers "Protocol error" and closes the connection: an outage for this batch, nothing counted...
    await assert.rejects(relay.runBatch(), { code: 'EO_PUBLISH_UNAVAILABLE', message: /Protocol error/ });
    const before = await eventStates(fx.db.pool, ids);
    assert.deepEqual(
      ids.map((id) => before.get(id)?.retryCount),
      [0, 0, 0],
    );
    // ...but the publisher learnt the limit, so once the client has reconnected the job fails on its own.
    let summary = await relay.runBatch().catch(() => undefined);
    for (let i = 0; summary === undefined && i < 40; i++) {
      await new Promise((r) => setTimeout(r, 50)); // reconnect backoff of the client, bounded by the loop
      summary = await relay.runBatch().catch(() => undefined);
    }
    assert.ok(summary, 'a batch succeeded within 2 s of reconnecting');
    assert.deepEqual({ published: summary.published, retried: summary.retried }, { published: 2, retried: 1 });
    assert.deepEqual(await listIds(admin, fx.lowQueue), [ids[0], ids[2]]);
    assert.match((await eventStates(fx.db.pool, ids)).get(ids[1] as string)?.lastError ?? '', /too large/);
  } finally {
    await admin.call('ACL', 'DELUSER', 'noconfig');
    await admin.config('SET', 'proto-max-bulk-len', String(512 * 1024 * 1024));
    await admin.flushall();
  }
});

test('a destination the Redis user may not touch (NOPERM) fails alone; the same call is split to find it', async () => {
  const admin = await ownServerClient();
  await admin.call('ACL', 'SETUSER', 'scoped', 'on', 'nopass', `~${fx.prefix}*`, `~{${fx.prefix}*`, '+@all');
  try {
    const ids = await insertRawEvents(fx.db.pool, [
      { aggregateId: 'a' },
      { aggregateId: 'elsewhere', queue: 'someone-else:list' },
      { aggregateId: 'elsewhere' },
      { aggregateId: 'b' },
    ]);
    const relay = fx.relay({ publisher: publisherFor(await ownServerClient({ username: 'scoped' })) });
    const summary = await relay.runBatch();
    assert.deepEqual(
      { published: summary.published, retried: summary.retried, held: summary.held },
      { published: 2, retried: 1, held: 1 },
    );
    assert.deepEqual(await listIds(admin, fx.lowQueue), [ids[0], ids[3]]);
    assert.equal(await admin.exists('someone-else:list'), 0);
    assert.match((await eventStates(fx.db.pool, ids)).get(ids[1] as string)?.lastError ?? '', /^NOPERM/);
  } finally {
    await admin.call('ACL', 'DELUSER', 'scoped');
    await admin.flushall();
  }
});

test('a full server (OOM, noeviction) is an outage: the batch throws and no event counts a retry', async () => {
  const admin = await ownServerClient();
  const ids = await insertRawEvents(fx.db.pool, [{ aggregateId: 'a' }, { aggregateId: 'b' }]);
  const relay = fx.relay({ publisher: publisherFor(await ownServerClient()) });
  await admin.config('SET', 'maxmemory-policy', 'noeviction');
  await admin.config('SET', 'maxmemory', '1');
  try {
    await assert.rejects(relay.runBatch(), { code: 'EO_PUBLISH_UNAVAILABLE', message: /OOM/ });
  } finally {
    await admin.config('SET', 'maxmemory', '0');
  }
  const states = await eventStates(fx.db.pool, ids);
  assert.deepEqual(
    ids.map((id) => [states.get(id)?.status, states.get(id)?.retryCount]),
    [
      ['pending', 0],
      ['pending', 0],
    ],
  );
  const summary = await relay.runBatch();
  assert.equal(summary.published, 2, 'once memory is available the same events go out');
  assert.deepEqual(await listIds(admin, fx.lowQueue), ids);
  await admin.flushall();
});
