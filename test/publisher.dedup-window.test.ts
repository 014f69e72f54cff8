import assert from 'node:assert/strict';
import { rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { after, before, test } from 'node:test';
import { Redis } from 'ioredis';
import { stringify } from 'yaml';
import { configFromObject, loadConfig } from '../src/config/load-config.js';
import { Manager } from '../src/manager.js';
import { markKey } from '../src/publishers/hash-tag.js';
import { insertRawEvents } from './helpers/raw-events.js';
import {
  createTestDatabase,
  deleteRedisPrefix,
  REDIS_URL,
  redisPrefix,
  type TestDatabase,
  waitFor,
} from './helpers/services.js';

// `outbox.dedup_window` is how long after a push a second run of the same batch (a relay that crashed before its
// COMMIT, then came back) is still recognised and not pushed again. It must reach Redis as the lifetime of the lane's
// high-water mark, through the config users write and the Manager they construct, in the right unit.

let db: TestDatabase;
let redis: Redis;
const prefix = redisPrefix('dedup-window');
const queue = `${prefix}jobqueue:{priority}_priority`;
const lowQueue = `${prefix}jobqueue:low_priority`;

before(async () => {
  db = await createTestDatabase('dedup_window');
  redis = new Redis(REDIS_URL);
});
after(async () => {
  await deleteRedisPrefix(redis, prefix);
  redis.disconnect();
  await db.close();
});

/**
 * Make the relay's cursor advance fail, so a publish pushes and then rolls back: the crash window (pushed, not
 * committed), which the mark must cover.
 */
async function failCommits(): Promise<void> {
  await db.pool.query(`
    CREATE OR REPLACE FUNCTION test_refuse_publish() RETURNS trigger LANGUAGE plpgsql AS $$
    BEGIN RAISE EXCEPTION 'test: COMMIT of the publish refused'; END $$;
    CREATE TRIGGER test_refuse_publish BEFORE INSERT ON exactly_once_outbox_progress
      FOR EACH ROW WHEN (current_query() LIKE '%exactly_once_outbox_advance%') EXECUTE FUNCTION test_refuse_publish();`);
}

async function allowCommits(): Promise<void> {
  await db.pool.query('DROP TRIGGER IF EXISTS test_refuse_publish ON exactly_once_outbox_progress');
}

/** The mark of the lane `aggregateId` (type '') hashes to, in the low-priority list. */
async function markOf(aggregateId: string): Promise<string> {
  const { rows } = await db.pool.query<{ outbox_id: string; lane: number }>(
    "SELECT outbox_id, hashtext('/' || $1) & 15 AS lane FROM exactly_once_outbox_meta",
    [aggregateId],
  );
  return markKey(lowQueue, rows[0]?.outbox_id as string, rows[0]?.lane as number);
}

async function pushesOf(id: string): Promise<number> {
  return (await redis.lrange(lowQueue, 0, -1)).filter((j) => JSON.parse(j).id === id).length;
}

test('a 37s dedup_window (configFromObject + Manager) gives the mark a 37s lifetime', async () => {
  const config = configFromObject({
    database: { url: db.url },
    redis: { url: REDIS_URL },
    outbox: { queue_pattern: queue, dedup_window: '37s' },
  });
  const manager = new Manager(config);
  try {
    const [id] = (await insertRawEvents(db.pool, [{ aggregateId: 'w37' }])) as [string];
    await failCommits();
    await assert.rejects(manager.publishOutboxEvents(), /COMMIT of the publish refused/);
    assert.equal(await pushesOf(id), 1, 'pushed, not committed');
    const pttl = await redis.pttl(await markOf('w37'));
    assert.ok(pttl > 30_000 && pttl <= 37_000, `mark PTTL ${pttl} ms, expected (30000, 37000]`);

    // Within the window a second run of the same event is recognised and pushes nothing.
    await allowCommits();
    const again = await manager.publishOutboxEvents();
    assert.deepEqual({ published: again.published, duplicates: again.duplicates }, { published: 0, duplicates: 1 });
    assert.equal(await pushesOf(id), 1);
  } finally {
    await allowCommits();
    await manager.close();
  }
});

test('after a 2s dedup_window (YAML + loadConfig) the mark is gone and a re-run of the batch pushes again', async () => {
  const file = path.join(tmpdir(), `eo-dedup-window-${process.pid}-${Date.now()}.yaml`);
  writeFileSync(
    file,
    stringify({
      exactly_once: {
        database: { url: db.url },
        redis: { url: REDIS_URL },
        outbox: {
          queue_pattern: queue,
          dedup_window: '2s',
          // a window must outlast a claim, and a claim a publish
          claim_timeout: '1500ms',
          publish_timeout: '1s',
        },
      },
    }),
  );
  const manager = new Manager(loadConfig(file, { env: {} }));
  try {
    const [id] = (await insertRawEvents(db.pool, [{ aggregateId: 'w1' }])) as [string];
    await failCommits();
    await assert.rejects(manager.publishOutboxEvents(), /COMMIT of the publish refused/);
    await allowCommits();
    const marker = await markOf('w1');
    const pttl = await redis.pttl(marker);
    assert.ok(pttl > 1000 && pttl <= 2000, `mark PTTL ${pttl} ms, expected (1000, 2000]`);

    await waitFor(async () => (await redis.exists(marker)) === 0, 6000, 'the mark to expire');
    // The window is over: nothing remembers the first push, so a late re-run pushes the job a second time. This is
    // what dedup_window bounds: keep it longer than a relay can stay down between its push and its COMMIT.
    const late = await manager.publishOutboxEvents();
    assert.deepEqual({ published: late.published, duplicates: late.duplicates }, { published: 1, duplicates: 0 });
    assert.equal(await pushesOf(id), 2);
  } finally {
    await allowCommits();
    await manager.close();
    rmSync(file, { force: true });
  }
});
