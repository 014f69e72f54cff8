import assert from 'node:assert/strict';
import { after, before, describe, test } from 'node:test';
import { Redis } from 'ioredis';
import { configFromObject } from '../src/config/load-config.js';
import { outboxKeys } from '../src/outbox/redis/keys.js';
import { RedisOutboxRelay } from '../src/outbox/redis/relay.js';
import type { NewOutboxEvent } from '../src/outbox/types.js';
import { storeInOutbox } from '../src/outbox/writer.js';
import { startTestCluster } from './helpers/redis-cluster.js';
import { type HttpRelay, logLines, startHttpRelay } from './helpers/relay-http.js';
import { writeConfigFile } from './helpers/relay-process.js';
import { freePort, type RedisServer, startRedisServer, waitFor } from './helpers/services.js';

// The relay daemon of the Redis outbox as an app without Postgres runs it: `DATABASE_URL` points at a closed port, the
// outbox and the idempotency keys live in Redis. It starts, publishes and answers /readyz; an app's EXEC wakes it at
// once through the doorbell (poll_interval is 60 s here, so only the doorbell can deliver within the deadlines below),
// also after its subscriber connection was killed; and the admin API and dashboard endpoints read the Redis outbox.
// A Redis server of its own: `CLIENT KILL TYPE pubsub` must not cut other test files' subscribers.

const DOORBELL_DEADLINE_MS = 2000;
const API = '/api/v1/exactly-once';
const outbox = {
  storage_type: 'redis',
  queue_pattern: 'jobs:{priority}',
  allowed_queues: ['q:*'],
  poll_interval: '60s',
  max_retries: 0,
  retry_backoff: { initial_delay: '60s', max_delay: '60s', jitter: false },
  // Everything published or failed is old enough for POST /cleanup; the relay's own cleanup ran once, at its start.
  cleanup_after: '1ms',
};
const config = configFromObject({ outbox });
const keys = outboxKeys(config.outbox.redis.keyPrefix);
let server: RedisServer;
let redis: Redis;
let relay: HttpRelay;
let postgresUrl: string;

before(async () => {
  server = await startRedisServer();
  redis = new Redis(server.url);
  postgresUrl = `postgres://postgres@127.0.0.1:${await freePort()}/nothing`;
  const file = writeConfigFile('redis-daemon', {
    redis: { url: server.url },
    idempotency: { storage: { type: 'redis' } },
    metrics: { collection_interval: 0 },
    outbox,
  });
  relay = await startHttpRelay(file, [], { DATABASE_URL: postgresUrl, LOG_LEVEL: 'info' });
});
after(async () => {
  await relay?.stop();
  redis?.disconnect();
  await server?.kill();
});

async function write(events: NewOutboxEvent[]): Promise<string[]> {
  const multi = redis.multi();
  multi.incr('business-writes');
  const stored = await storeInOutbox(multi, events, config.outbox);
  await multi.exec();
  return stored.map((e) => e.id);
}

const subscribers = async () => ((await redis.pubsub('NUMSUB', keys.doorbell)) as [string, number])[1];
const listed = async (list: string) => (await redis.lrange(list, 0, -1)).map((j) => JSON.parse(j).id as string);

describe('without Postgres', () => {
  test('the relay starts, says Postgres is not used, and is ready', async () => {
    assert.equal(logLines(relay.stderr(), /Postgres is not used/).length, 1, relay.stderr());
    const ready = await relay.get('/readyz');
    assert.equal(ready.status, 200, ready.text);
    const body = ready.json() as { checks: { postgres: { ok: boolean; used?: boolean }; redis: { ok: boolean } } };
    assert.deepEqual([body.checks.postgres.used, body.checks.redis.ok], [false, true]);
    assert.doesNotMatch(relay.stderr(), /waiting for Postgres|scheduled cleanup is not running/);
  });
});

describe('the doorbell', () => {
  test('an event committed by EXEC is on its list at once, not at the next poll', async () => {
    await waitFor(async () => (await subscribers()) === 1, 10_000, 'the relay to subscribe to the doorbell');
    const [id] = await write([{ aggregateId: 'w1', eventType: 'rang', payload: {} }]);
    await waitFor(async () => (await listed('jobs:low')).includes(id as string), DOORBELL_DEADLINE_MS, 'the event');
  });

  test('a killed subscriber connection is replaced, and the relay claims what came in the gap', async () => {
    const killed = await redis.client('KILL', 'TYPE', 'pubsub');
    assert.equal(killed, 1, 'the relay had one doorbell connection');
    // Written while the relay re-subscribes: the claim right after its subscription is confirmed finds it.
    const [inGap] = await write([{ aggregateId: 'w2', eventType: 'in-gap', payload: {} }]);
    await waitFor(async () => (await listed('jobs:low')).includes(inGap as string), DOORBELL_DEADLINE_MS, 'the gap');
    await waitFor(async () => (await subscribers()) === 1, 10_000, 'the relay to subscribe again');
    const [later] = await write([{ aggregateId: 'w3', eventType: 'rang-again', payload: {} }]);
    await waitFor(async () => (await listed('jobs:low')).includes(later as string), DOORBELL_DEADLINE_MS, 'later');
    assert.equal(logLines(relay.stderr(), /doorbell subscription lost/).length, 1);
  });
});

describe('the admin API and dashboard endpoints on the Redis outbox', () => {
  const get = async (path: string) => {
    const res = await relay.get(`${API}${path}`);
    assert.equal(res.status, 200, `${path}: ${res.text}`);
    return res.json() as Record<string, unknown>;
  };
  let dead: string[];
  let blocking: string;
  let waiting: string;

  before(async () => {
    // Two dead events with one error (max_retries 0), and an aggregate held behind a retry due in 60 s.
    await redis.set('q:bad', 'not a list');
    await redis.set('q:slow', 'not a list either');
    dead = [
      ...(await write([{ aggregateId: 'd1', eventType: 'dead', payload: { n: 1 }, queue: 'q:bad' }])),
      ...(await write([{ aggregateId: 'd2', eventType: 'dead', payload: { n: 2 }, queue: 'q:bad' }])),
    ];
    [blocking, waiting] = (await write([
      { aggregateId: 'h', eventType: 'retrying', payload: {}, queue: 'q:slow', maxRetries: 5 },
      { aggregateId: 'h', eventType: 'behind', payload: {} },
    ])) as [string, string];
    await waitFor(
      async () => (await redis.zcard(keys.failed)) === 2 && (await redis.zcard(keys.delayed)) === 1,
      10_000,
      'two dead events and one retry',
    );
  });

  test('GET /outbox/events/:id reads the event from Redis; unknown is 404, malformed 400', async () => {
    const { event } = (await get(`/outbox/events/${dead[0]}`)) as { event: Record<string, unknown> };
    assert.equal(event.id, dead[0]);
    assert.equal(event.status, 'failed');
    assert.equal(event.queue, 'q:bad');
    assert.deepEqual(event.payload, { n: 1 });
    assert.match(String(event.last_error), /^WRONGTYPE/);
    const unknown = await relay.get(`${API}/outbox/events/0190f6c2-0000-7000-8000-000000000000`);
    assert.equal(unknown.status, 404);
    assert.match(unknown.text, /EO_OUTBOX_EVENT_NOT_FOUND/);
    assert.equal((await relay.get(`${API}/outbox/events/nope`)).status, 400);
  });

  test('GET /outbox/failed/groups and /outbox/held', async () => {
    const { groups } = (await get('/outbox/failed/groups')) as { groups: Record<string, unknown>[] };
    assert.equal(groups.length, 1);
    assert.match(String(groups[0]?.error), /^WRONGTYPE/);
    assert.equal(groups[0]?.count, 2);
    assert.deepEqual(groups[0]?.sample_ids, dead);

    const { aggregates } = (await get('/outbox/held')) as { aggregates: Record<string, unknown>[] };
    assert.equal(aggregates.length, 1);
    const held = aggregates[0] as { aggregate_id: string; waiting: number; blocking: Record<string, unknown> };
    assert.deepEqual([held.aggregate_id, held.waiting], ['h', 1]);
    assert.equal(held.blocking.id, blocking);
    assert.equal(held.blocking.retry_count, 1);
    assert.ok(Date.parse(String(held.blocking.next_attempt_at)) > Date.now() + 30_000, 'its retry is a minute away');
    const page = (await get('/outbox?status=pending')) as { events: { id: string }[] };
    assert.deepEqual(
      page.events.map((e) => e.id),
      [blocking, waiting],
    );
  });

  test('GET /overview counts the Redis backlog, destinations and relays', async () => {
    const o = (await get('/overview')) as {
      storage: string;
      backlog: Record<string, number>;
      destinations: { queue: string; pending: number; failed: number; published_15m: number }[];
      relays: { awake: number };
      health: { postgres: { used?: boolean }; redis: { ok: boolean } };
      rates: { points: { published: number }[] };
    };
    assert.equal(o.storage, 'redis');
    assert.deepEqual(o.backlog, {
      pending: 2,
      due: 1,
      retrying: 1,
      failed: 2,
      oldest_pending_age_seconds: o.backlog.oldest_pending_age_seconds,
    });
    const byQueue = new Map(o.destinations.map((d) => [d.queue, d]));
    assert.deepEqual(byQueue.get('q:bad'), { queue: 'q:bad', pending: 0, failed: 2, published_15m: 0 });
    assert.deepEqual(byQueue.get('q:slow'), { queue: 'q:slow', pending: 1, failed: 0, published_15m: 0 });
    assert.equal(byQueue.get('jobs:low')?.published_15m, 3, 'the doorbell tests published three');
    assert.equal(byQueue.get('jobs:low')?.pending, 1, 'the event behind the retry');
    assert.equal(
      o.rates.points.reduce((n, p) => n + p.published, 0),
      3,
    );
    assert.equal(o.relays.awake, 1);
    assert.deepEqual([o.health.postgres.used, o.health.redis.ok], [false, true]);
  });

  test('GET /tables reports the Redis outbox memory; POST /cleanup cleans the Redis outbox', async () => {
    const t = (await get('/tables')) as {
      storage: string;
      tables: unknown[];
      redis_outbox: {
        events: Record<string, number>;
        keys: { name: string; bytes: number }[];
        estimated_bytes: number;
      };
      cleanup: { outbox_rows_due: number; idempotency_keys_expired: number | null };
    };
    assert.equal(t.storage, 'redis');
    assert.deepEqual(t.tables, [], 'no Postgres tables: Postgres is not used');
    assert.deepEqual(
      [t.redis_outbox.events.pending, t.redis_outbox.events.published, t.redis_outbox.events.failed],
      [2, 3, 2],
    );
    assert.ok((t.redis_outbox.events.bytes_per_event ?? 0) > 100, JSON.stringify(t.redis_outbox));
    assert.ok(t.redis_outbox.keys.some((k) => k.name === keys.pending && k.bytes > 0));
    assert.deepEqual([t.cleanup.outbox_rows_due, t.cleanup.idempotency_keys_expired], [5, null]);

    const res = await fetch(`${relay.url}${API}/cleanup?type=outbox`, { method: 'POST' });
    const body = (await res.json()) as { outbox: { deleted: number } };
    assert.equal(res.status, 200, JSON.stringify(body));
    assert.equal(body.outbox.deleted, 5);
    const after = (await get('/outbox')) as { events: { id: string }[] };
    assert.deepEqual(
      after.events.map((e) => e.id),
      [blocking, waiting],
      'pending events are never cleaned',
    );
  });
});

test('nothing in the relay tried to reach Postgres (admin reads, /metrics, cleanup included)', async () => {
  const metrics = await relay.get('/metrics');
  assert.equal(metrics.status, 200);
  assert.match(metrics.text, /exactly_once_outbox_backlog_events\{status="pending"\} 2/);
  assert.doesNotMatch(relay.stderr(), /ECONNREFUSED|Postgres is unreachable|waiting for Postgres/);
});

describe('on a Redis Cluster', () => {
  test('the doorbell rings a relay whose subscription sits on any master (PUBLISH reaches every node)', async () => {
    const cluster = await startTestCluster();
    const clusterConfig = configFromObject({
      redis: { cluster: { nodes: cluster.ports.map((port) => `redis://127.0.0.1:${port}`) } },
      outbox: { ...outbox, redis: { key_prefix: 'eo:{jobqueue}:' }, queue_pattern: '{jobqueue}:{priority}_priority' },
    });
    const clusterKeys = outboxKeys(clusterConfig.outbox.redis.keyPrefix);
    const clusterRelay = new RedisOutboxRelay({ config: clusterConfig, redis: cluster.client });
    try {
      await clusterRelay.start();
      const subscribed = async () => {
        let n = 0;
        for (const node of cluster.client.nodes('master')) {
          n += Number(((await node.pubsub('NUMSUB', clusterKeys.doorbell)) as [string, number])[1]);
        }
        return n === 1;
      };
      await waitFor(subscribed, 10_000, 'the relay to subscribe to the doorbell');
      for (const aggregateId of ['c1', 'c2', 'c3']) {
        const multi = cluster.client.multi();
        multi.set(`{jobqueue}:order:${aggregateId}`, 'paid');
        const [event] = await storeInOutbox(
          multi,
          [{ aggregateId, eventType: 'paid', payload: {} }],
          clusterConfig.outbox,
        );
        await multi.exec();
        await waitFor(
          async () =>
            (await cluster.client.lrange('{jobqueue}:low_priority', 0, -1)).some((j) => JSON.parse(j).id === event?.id),
          DOORBELL_DEADLINE_MS,
          `${aggregateId} published`,
        );
      }
    } finally {
      await clusterRelay.stop();
      await cluster.close();
    }
  });
});
