import assert from 'node:assert/strict';
import { after, before, describe, test } from 'node:test';
import { Redis } from 'ioredis';
import { configFromObject } from '../src/config/load-config.js';
import { PAYLOAD_PREVIEW_BYTES } from '../src/outbox/payload-preview.js';
import type { NewOutboxEvent } from '../src/outbox/types.js';
import { storeInOutbox, storeInOutboxStandalone } from '../src/outbox/writer.js';
import { type HttpRelay, startHttpRelay } from './helpers/relay-http.js';
import { writeConfigFile } from './helpers/relay-process.js';
import {
  createTestDatabase,
  deleteRedisPrefix,
  REDIS_URL,
  redisPrefix,
  type TestDatabase,
} from './helpers/services.js';

// Listings carry a preview of each payload and its size, never the payload: a page of large events stays small to
// read, serialise and send. Opening one event (GET /outbox/events/:id) gives the whole payload. Both storages, each
// through a relay daemon as operators run it.

const API = '/api/v1/exactly-once';
const BIG = 2 * 1024 * 1024;
const prefix = redisPrefix('payload_preview');
let db: TestDatabase;
let redis: Redis;
const relays: HttpRelay[] = [];

before(async () => {
  db = await createTestDatabase('payload_preview');
  redis = new Redis(REDIS_URL);
});
after(async () => {
  await Promise.all(relays.map((r) => r.stop()));
  await deleteRedisPrefix(redis, prefix);
  redis.disconnect();
  await db.close();
});

/** Three 2 MB payloads (one of them non-ASCII, so the cut falls inside characters) and small ones. */
function events(): NewOutboxEvent[] {
  return [
    ...[0, 1].map((i) => ({ aggregateId: `big-${i}`, eventType: 'big', payload: { blob: 'x'.repeat(BIG), i } })),
    { aggregateId: 'big-2', eventType: 'big', payload: { text: 'é€😀'.repeat(BIG / 9) } },
    ...Array.from({ length: 5 }, (_, i) => ({ aggregateId: `small-${i}`, eventType: 'small', payload: { i } })),
  ];
}

interface Listed {
  id: string;
  event_type: string;
  payload?: unknown;
  payload_preview?: string;
  payload_bytes?: number;
  payload_truncated?: boolean;
}

async function checkListing(relay: HttpRelay, expected: Map<string, unknown>): Promise<void> {
  const page = await relay.get(`${API}/outbox?limit=50`);
  assert.equal(page.status, 200, page.text.slice(0, 500));
  assert.ok(page.text.length < 64 * 1024, `GET /outbox is ${page.text.length} bytes with 6 MB of payloads listed`);
  const listed = (page.json() as { events: Listed[] }).events;
  assert.equal(listed.length, expected.size);
  for (const e of listed) {
    assert.equal('payload' in e, false, 'no payload in a listing');
    const whole = JSON.stringify(expected.get(e.id));
    assert.ok(Buffer.byteLength(e.payload_preview ?? '') <= PAYLOAD_PREVIEW_BYTES, e.id);
    if (e.event_type === 'small') {
      assert.deepEqual(JSON.parse(e.payload_preview ?? ''), expected.get(e.id));
      assert.equal(e.payload_truncated, false);
    } else {
      assert.equal(e.payload_truncated, true);
      assert.ok((e.payload_bytes ?? 0) >= Buffer.byteLength(whole), `${e.payload_bytes} bytes`);
      assert.ok(!(e.payload_preview ?? '').includes('\ufffd'), 'cut at a character boundary');
    }
  }
  const big = listed.find((e) => e.event_type === 'big') as Listed;
  const one = await relay.get(`${API}/outbox/events/${big.id}`);
  assert.equal(one.status, 200);
  assert.deepEqual((one.json() as { event: { payload: unknown } }).event.payload, expected.get(big.id));
}

describe('GET /outbox sends previews, GET /outbox/events/:id the payload', () => {
  test('the Postgres outbox', async () => {
    const stored = await storeInOutboxStandalone(db.pool, events());
    const file = writeConfigFile('preview-pg', {
      database: { url: db.url },
      redis: { url: REDIS_URL },
      idempotency: { key_prefix: `${prefix}idem:` },
      outbox: { queue_pattern: `${prefix}pg:{priority}`, poll_interval: '60s' },
    });
    const relay = await startHttpRelay(file);
    relays.push(relay);
    await checkListing(relay, new Map(stored.map((e) => [e.id, e.payload])));
  });

  test('the Redis outbox', async () => {
    const outbox = {
      storage_type: 'redis',
      redis: { key_prefix: `${prefix}outbox:` },
      queue_pattern: `${prefix}redis:{priority}`,
      poll_interval: '60s',
    };
    const multi = redis.multi();
    const stored = await storeInOutbox(multi, events(), configFromObject({ outbox }).outbox);
    await multi.exec();
    const file = writeConfigFile('preview-redis', {
      redis: { url: REDIS_URL },
      idempotency: { enabled: false },
      outbox,
    });
    const relay = await startHttpRelay(file);
    relays.push(relay);
    await checkListing(relay, new Map(stored.map((e) => [e.id, e.payload])));
    const overview = await relay.get(`${API}/overview`);
    assert.equal(overview.status, 200, overview.text);
  });
});
