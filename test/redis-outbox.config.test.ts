import assert from 'node:assert/strict';
import { after, before, describe, test } from 'node:test';
import { Redis } from 'ioredis';
import { configFromObject, loadConfig } from '../src/config/load-config.js';
import { ConfigError } from '../src/errors.js';
import { Manager } from '../src/manager.js';
import { RedisOutboxInspector } from '../src/outbox/redis/inspector.js';
import { RedisOutboxRelay } from '../src/outbox/redis/relay.js';
import { storeInOutbox } from '../src/outbox/writer.js';
import { runCli, showCli } from './helpers/cli-process.js';
import { writeConfigFile } from './helpers/relay-process.js';
import { deleteRedisPrefix, REDIS_URL, redisPrefix } from './helpers/services.js';

// The reference document's (docs/reference-api.md) YAML offers `outbox.storage_type: "redis"`; it loads and runs. What the Redis outbox cannot
// do atomically (a destination in another cluster slot) is refused at start, naming the key.

const ref = (name: string) => new URL(`./fixtures/reference/${name}.yaml`, import.meta.url).pathname;
const prefix = redisPrefix('redis_outbox_config');
let redis: Redis;

before(() => {
  redis = new Redis(REDIS_URL);
});
after(async () => {
  await deleteRedisPrefix(redis, prefix);
  redis.disconnect();
});

describe('the reference document snippet with storage_type: "redis"', () => {
  test('loads, and with the outbox enabled a manager stores and publishes through Redis', async () => {
    const config = loadConfig(ref('basic'), {
      env: {},
      // The snippet ships the outbox disabled; this file's own keys keep it apart from other tests.
      overrides: { outbox: { enabled: true, redis: { key_prefix: `${prefix}outbox:` }, queue_pattern: `${prefix}q` } },
    });
    assert.equal(config.outbox.storageType, 'redis');
    assert.equal(config.outbox.batchSize, 50);
    const manager = new Manager(config, { redis });
    try {
      assert.ok(manager.createOutboxRelay() instanceof RedisOutboxRelay);
      assert.throws(() => manager.createRelay(), /createOutboxRelay/);
      const multi = redis.multi();
      multi.set(`${prefix}user:1`, 'created');
      const event = await manager.storeInOutbox(multi, {
        aggregateId: 'user-1',
        eventType: 'user.created',
        payload: {},
      });
      await multi.exec();
      const summary = await manager.publishOutboxEvents();
      assert.equal(summary.published, 1);
      assert.equal(JSON.parse((await redis.lindex(`${prefix}q`, 0)) as string).id, event.id);
      assert.equal((await manager.outboxInspector.backlog()).pending, 0);
    } finally {
      await manager.close();
    }
  });
});

describe('what the Redis outbox refuses at start', () => {
  const cluster = { nodes: ['redis://127.0.0.1:7000'] };
  const refused = (tree: Record<string, unknown>, path: string, message: RegExp) =>
    assert.throws(
      () => configFromObject(tree),
      (err: unknown) => err instanceof ConfigError && err.path === path && message.test(err.message),
    );

  test('a cluster whose destination lists hash to another slot than the outbox keys', () => {
    refused(
      { redis: { cluster }, outbox: { storage_type: 'redis' } },
      'exactly_once.outbox.queue_pattern',
      /slot .*one script/,
    );
    refused(
      { redis: { cluster }, outbox: { storage_type: 'redis', redis: { key_prefix: 'eo:outbox:' } } },
      'exactly_once.outbox.redis.key_prefix',
      /hash tag/,
    );
    const ok = configFromObject({
      redis: { cluster },
      outbox: {
        storage_type: 'redis',
        redis: { key_prefix: 'eo:{jobqueue}:' },
        queue_pattern: '{jobqueue}:{priority}_priority',
      },
    });
    assert.equal(ok.outbox.storageType, 'redis');
  });

  test('the stream publisher (lists only for now)', () => {
    refused({ outbox: { storage_type: 'redis', publisher: 'stream' } }, 'exactly_once.outbox.publisher', /list/);
  });

  test('destination lists that are outbox keys: a key_prefix or a queue_pattern overlapping the other', async () => {
    refused(
      { outbox: { storage_type: 'redis', redis: { key_prefix: 'jobqueue:' } } },
      'exactly_once.outbox.queue_pattern',
      /"jobqueue:high_priority" starts with outbox\.redis\.key_prefix "jobqueue:"/,
    );
    refused(
      { outbox: { storage_type: 'redis', queue_pattern: 'eo:{outbox}:{priority}' } },
      'exactly_once.outbox.queue_pattern',
      /"eo:\{outbox\}:high" starts with outbox\.redis\.key_prefix "eo:\{outbox\}:"/,
    );
    // What the operator sees: the relay does not start, and says which key to change.
    const file = writeConfigFile('redis-overlap', {
      redis: { url: REDIS_URL },
      idempotency: { enabled: false },
      outbox: { storage_type: 'redis', redis: { key_prefix: 'jobqueue:' } },
    });
    const run = await runCli(['relay', '--config', file, '--wait', '0'], {});
    assert.equal(run.code, 1, showCli(run));
    assert.match(run.stderr, /exactly_once\.outbox\.queue_pattern: .*key_prefix.*\[EO_CONFIG_INVALID\]/, showCli(run));
  });

  test('a disabled outbox keeps any storage type, as the snippet has it', () => {
    assert.equal(
      configFromObject({ outbox: { enabled: false, storage_type: 'redis', publisher: 'stream' } }).outbox.enabled,
      false,
    );
  });
});

test('`exactly-once cleanup` deletes the Redis outbox history older than cleanup_after, not pending events', async () => {
  const outbox = {
    storage_type: 'redis',
    redis: { key_prefix: `${prefix}clean:` },
    queue_pattern: `${prefix}clean-jobs`,
    cleanup_after: '1ms',
  };
  const config = configFromObject({ outbox });
  const multi = redis.multi();
  await storeInOutbox(
    multi,
    [1, 2].map((i) => ({ aggregateId: `c${i}`, eventType: 'x', payload: {} })),
    config.outbox,
  );
  await multi.exec();
  assert.equal((await new RedisOutboxRelay({ config, redis }).publishDue()).published, 2);
  const later = redis.multi();
  await storeInOutbox(later, { aggregateId: 'still-pending', eventType: 'x', payload: {} }, config.outbox);
  await later.exec();
  const file = writeConfigFile('redis-cleanup', { redis: { url: REDIS_URL }, idempotency: { enabled: false }, outbox });
  const run = await runCli(['cleanup', '--type', 'outbox', '--json', '--config', file], {});
  assert.equal(run.code, 0, showCli(run));
  assert.equal((JSON.parse(run.stdout) as { outbox: { deleted: number } }).outbox.deleted, 2);
  const inspector = new RedisOutboxInspector(redis, config.outbox);
  assert.equal((await inspector.list()).events.length, 1);
  assert.equal((await inspector.backlog()).pending, 1);
});
