import assert from 'node:assert/strict';
import { after, before, describe, test } from 'node:test';
import { Redis } from 'ioredis';
import { configFromObject } from '../src/config/load-config.js';
import { OutboxMultiRequiredError } from '../src/errors.js';
import { RedisOutboxInspector } from '../src/outbox/redis/inspector.js';
import { RedisOutboxRelay } from '../src/outbox/redis/relay.js';
import { storeInOutbox } from '../src/outbox/writer.js';
import { deleteRedisPrefix, REDIS_URL, redisPrefix } from './helpers/services.js';

// The Redis writer's edges: an event must be queued inside a MULTI that is still open (else the app's writes and the
// event are not one transaction), and a batch as large as the Postgres writer takes is stored in one EXEC.

const prefix = redisPrefix('redis_outbox_writer_guards');
const config = configFromObject({
  outbox: {
    storage_type: 'redis',
    redis: { key_prefix: `${prefix}outbox:` },
    queue_pattern: `${prefix}{priority}`,
  },
});
let redis: Redis;

before(() => {
  redis = new Redis(REDIS_URL);
});
after(async () => {
  await deleteRedisPrefix(redis, prefix);
  redis.disconnect();
});

const inspector = () => new RedisOutboxInspector(redis, config.outbox);
const event = (id: string) => ({ aggregateId: id, eventType: 'x', payload: {} });

/**
 * A `pipeline()` with MULTI/EXEC/DISCARD queued by hand, as an app may write it (ioredis types them on `multi()` only).
 * `exec()` first queues the EXEC of the MULTI it closes; the next `exec()` sends the pipeline.
 */
interface HandPipeline {
  multi(): void;
  discard(): void;
  set(key: string, value: string): void;
  exec(): Promise<unknown>;
}
const handPipeline = (client: Redis) => client.pipeline() as unknown as HandPipeline;

describe('storeInOutbox(multi): the MULTI must be open', () => {
  test('a pipeline whose MULTI was closed by exec() is refused, and the failed WATCH stores no event', async () => {
    const watcher = new Redis(REDIS_URL);
    try {
      await watcher.watch(`${prefix}stock`);
      const p = handPipeline(watcher);
      p.multi();
      p.set(`${prefix}stock`, 'taken');
      void p.exec(); // queues EXEC into the pipeline: what follows is outside the transaction
      await assert.rejects(storeInOutbox(p, event('closed'), config.outbox), (err: Error) => {
        assert.ok(err instanceof OutboxMultiRequiredError, String(err));
        assert.match(err.message, /MULTI/);
        return true;
      });
      await redis.set(`${prefix}stock`, 'someone else'); // the WATCH fails: the app's write is discarded
      await p.exec();
    } finally {
      watcher.disconnect();
    }
    assert.equal(await redis.get(`${prefix}stock`), 'someone else');
    assert.equal((await inspector().backlog()).pending, 0, 'no event without its transaction');
  });

  test('a pipeline whose MULTI was discarded is refused; one whose MULTI is still open is accepted', async () => {
    const discarded = handPipeline(redis);
    discarded.multi();
    discarded.set(`${prefix}discarded`, '1');
    discarded.discard();
    await assert.rejects(storeInOutbox(discarded, event('discarded'), config.outbox), OutboxMultiRequiredError);

    const p = handPipeline(redis);
    p.multi();
    p.set(`${prefix}open`, '1');
    await storeInOutbox(p, event('open'), config.outbox);
    void p.exec(); // queues EXEC
    await p.exec(); // sends the pipeline
    assert.equal(await redis.get(`${prefix}open`), '1');
    const page = await inspector().list({ status: 'pending' });
    assert.deepEqual(
      page.events.map((e) => e.aggregateId),
      ['open'],
    );
  });
});

describe('storeInOutbox(multi): a large batch', () => {
  test('50,000 events (what the Postgres writer takes) are stored in one EXEC and the relay takes them', async () => {
    const n = 50_000;
    const events = Array.from({ length: n }, (_, i) => ({
      aggregateId: `big-${i % 50}`,
      eventType: 'bulk',
      payload: { i },
    }));
    const multi = redis.multi();
    multi.set(`${prefix}bulk-business`, 'done');
    const stored = await storeInOutbox(multi, events, config.outbox);
    assert.equal(stored.length, n);
    const result = await multi.exec();
    assert.ok(
      result?.every(([err]) => err === null),
      String(result?.find(([err]) => err)?.[0]),
    );
    assert.equal(await redis.get(`${prefix}bulk-business`), 'done');
    assert.equal((await inspector().backlog()).pending, n + 1, 'the 50,000 and the event of the test above');
    const batch = await new RedisOutboxRelay({ config, redis }).runBatch();
    assert.equal(batch.published, config.outbox.batchSize);
  });
});
