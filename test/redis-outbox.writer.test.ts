import assert from 'node:assert/strict';
import { after, before, describe, test } from 'node:test';
import { Redis } from 'ioredis';
import { configFromObject } from '../src/config/load-config.js';
import { OutboxMultiRequiredError } from '../src/errors.js';
import { RedisOutboxInspector } from '../src/outbox/redis/inspector.js';
import { RedisOutboxRelay } from '../src/outbox/redis/relay.js';
import { storeInOutbox } from '../src/outbox/writer.js';
import { deleteRedisPrefix, REDIS_URL, redisPrefix } from './helpers/services.js';

// G1 with the outbox in Redis: the event joins the app's MULTI/EXEC. EXEC runs -> published exactly once (G2);
// DISCARD, or a WATCH that fails -> never stored, never published.

const prefix = redisPrefix('redis_outbox_writer');
const config = configFromObject({
  outbox: {
    storage_type: 'redis',
    redis: { key_prefix: `${prefix}outbox:` },
    queue_pattern: `${prefix}{priority}`,
    allowed_queues: [`${prefix}custom:*`],
    poll_interval: '50ms',
  },
});
const low = `${prefix}low`;
let redis: Redis;
let relay: RedisOutboxRelay;

before(async () => {
  redis = new Redis(REDIS_URL);
  relay = new RedisOutboxRelay({ config, redis });
});
after(async () => {
  await deleteRedisPrefix(redis, prefix);
  redis.disconnect();
});

const jobs = async (list = low) => (await redis.lrange(list, 0, -1)).reverse().map((j) => JSON.parse(j));

describe('storeInOutbox(multi) with outbox.storage_type: redis', () => {
  test('committed MULTI: business keys and the event land together; the relay publishes it exactly once', async () => {
    const multi = redis.multi();
    multi.set(`${prefix}order:1`, 'paid');
    const stored = await storeInOutbox(
      multi,
      {
        aggregateType: 'order',
        aggregateId: '1',
        eventType: 'order.paid',
        payload: { total: 10, filepath: '/tmp/x', filesize: 42 },
        headers: { traceparent: '00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01' },
      },
      config.outbox,
    );
    // Nothing reaches Redis before EXEC.
    assert.equal(await redis.exists(`${prefix}order:1`), 0);
    assert.equal((await new RedisOutboxInspector(redis, config.outbox).backlog()).pending, 0);
    const result = await multi.exec();
    assert.ok(
      result?.every(([err]) => err === null),
      JSON.stringify(result),
    );
    assert.equal(await redis.get(`${prefix}order:1`), 'paid');

    const first = await relay.publishDue();
    assert.equal(first.published, 1);
    assert.equal((await relay.publishDue()).published, 0, 'a second drain publishes nothing again');
    const [job] = await jobs();
    assert.equal(job.id, stored.id);
    assert.equal(job.filepath, '/tmp/x');
    assert.equal(job.filesize, 42);
    assert.equal(job.priority, 'low');
    assert.equal(job.trace_id, '0af7651916cd43dd8448eb211c80319c');
    assert.equal(job.aggregate_id, '1');
    assert.deepEqual(job.payload, { total: 10, filepath: '/tmp/x', filesize: 42 });
    assert.equal(await redis.llen(low), 1);

    const page = await new RedisOutboxInspector(redis, config.outbox).list({ status: 'published' });
    assert.deepEqual(
      page.events.map((e) => [e.id, e.status]),
      [[stored.id, 'published']],
    );
    assert.ok(page.events[0]?.publishedAt instanceof Date);
  });

  test('DISCARD: nothing stored, nothing published', async () => {
    const multi = redis.multi();
    multi.set(`${prefix}order:2`, 'paid');
    await storeInOutbox(multi, { aggregateId: '2', eventType: 'order.paid', payload: {} }, config.outbox);
    await multi.discard();
    assert.equal(await redis.exists(`${prefix}order:2`), 0);
    assert.equal((await relay.publishDue()).claimed, 0);
    assert.equal((await new RedisOutboxInspector(redis, config.outbox).backlog()).pending, 0);
  });

  test('a WATCHed key changed before EXEC: the transaction is aborted, the event never stored', async () => {
    const watcher = new Redis(REDIS_URL);
    try {
      await watcher.watch(`${prefix}stock`);
      const multi = watcher.multi();
      multi.decr(`${prefix}stock`);
      await storeInOutbox(multi, { aggregateId: '3', eventType: 'stock.taken', payload: {} }, config.outbox);
      await redis.set(`${prefix}stock`, '5'); // another client wins the race
      assert.equal(await multi.exec(), null);
    } finally {
      watcher.disconnect();
    }
    assert.equal(await redis.get(`${prefix}stock`), '5');
    assert.equal((await relay.publishDue()).claimed, 0);
  });

  test('per-aggregate order across transactions, a batch in one call, an event naming its own list', async () => {
    for (let i = 0; i < 5; i++) {
      const multi = redis.multi();
      await storeInOutbox(
        multi,
        [
          { aggregateId: 'a', eventType: `a.${i}`, payload: { i } },
          { aggregateId: 'b', eventType: `b.${i}`, payload: { i }, queue: `${prefix}custom:b` },
        ],
        config.outbox,
      );
      await multi.exec();
    }
    const summary = await relay.publishDue();
    assert.equal(summary.published, 10);
    const a = (await jobs()).filter((j) => j.aggregate_id === 'a').map((j) => j.event_type);
    assert.deepEqual(a, ['a.0', 'a.1', 'a.2', 'a.3', 'a.4']);
    const b = (await jobs(`${prefix}custom:b`)).map((j) => j.event_type);
    assert.deepEqual(b, ['b.0', 'b.1', 'b.2', 'b.3', 'b.4']);
  });

  test('the same validation as Postgres, and only a MULTI is accepted', async () => {
    const multi = redis.multi();
    await assert.rejects(
      storeInOutbox(multi, { aggregateId: '', eventType: 'x', payload: {} }, config.outbox),
      (err: Error & { code?: string }) => err.code === 'EO_OUTBOX_INVALID_EVENT' && /aggregateId/.test(err.message),
    );
    await assert.rejects(
      storeInOutbox(multi, { aggregateId: 'x', eventType: 'x', payload: {}, queue: 'elsewhere' }, config.outbox),
      (err: Error & { code?: string }) => err.code === 'EO_OUTBOX_QUEUE_NOT_ALLOWED',
    );
    await assert.rejects(
      storeInOutbox(
        multi,
        { aggregateId: 'x', eventType: 'x', payload: {}, headers: { destination: 'stream' } },
        config.outbox,
      ),
      (err: Error & { field?: string }) =>
        err.field === 'headers.destination' && /storage_type: redis/.test(err.message),
    );
    await assert.rejects(
      storeInOutbox(redis, { aggregateId: 'x', eventType: 'x', payload: {} }, config.outbox),
      OutboxMultiRequiredError,
    );
    await assert.rejects(
      storeInOutbox(redis.pipeline(), { aggregateId: 'x', eventType: 'x', payload: {} }, config.outbox),
      OutboxMultiRequiredError,
    );
    await multi.exec();
    assert.equal((await relay.publishDue()).claimed, 0, 'nothing of the refused calls was queued');
  });

  test('an id already stored: the script stores none of its call, EXEC reports it', async () => {
    const id = '0190a0b0-0000-7000-8000-000000000001';
    const m1 = redis.multi();
    await storeInOutbox(m1, { id, aggregateId: 'dup', eventType: 'x', payload: 1 }, config.outbox);
    await m1.exec();
    const m2 = redis.multi();
    m2.set(`${prefix}dup-business`, '1');
    await storeInOutbox(
      m2,
      [
        { aggregateId: 'dup2', eventType: 'y', payload: 2 },
        { id, aggregateId: 'dup', eventType: 'x', payload: 1 },
      ],
      config.outbox,
    );
    const result = await m2.exec();
    assert.match(String(result?.[1]?.[0]), /EO_OUTBOX_DUPLICATE_ID/);
    const summary = await relay.publishDue();
    assert.equal(summary.published, 1, 'only the first write of the id');
  });

  test('cleanup deletes published and failed history older than cleanup_after, never pending events', async () => {
    const inspector = new RedisOutboxInspector(redis, config.outbox);
    assert.deepEqual(await relay.cleanup(), { deleted: 0, batches: 1 }, '168h: nothing is that old yet');
    const multi = redis.multi();
    await storeInOutbox(multi, { aggregateId: 'kept', eventType: 'x', payload: {} }, config.outbox);
    await multi.exec();
    const before = (await inspector.list({ status: 'published', limit: 1000 })).events.length;
    assert.ok(before > 0);
    await new Promise((r) => setTimeout(r, 5));
    const { deleted } = await inspector.cleanup(1);
    assert.equal(deleted, before);
    assert.equal((await inspector.list({ status: 'published' })).events.length, 0);
    const pending = await inspector.list({ status: 'pending' });
    assert.deepEqual(
      pending.events.map((e) => e.aggregateId),
      ['kept'],
    );
    assert.equal((await relay.publishDue()).published, 1);
  });
});
