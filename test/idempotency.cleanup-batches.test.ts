import assert from 'node:assert/strict';
import { after, before, test } from 'node:test';
import { fileURLToPath } from 'node:url';
import { loadConfig } from '../src/config/load-config.js';
import { IdempotencyService } from '../src/idempotency/index.js';
import { idempotencyTestConfig } from './helpers/idempotency-env.js';
import { createTestDatabase, type TestDatabase } from './helpers/services.js';

// `idempotency.batch_size` (the reference document's (docs/reference-api.md) tuning snippet: "Larger batches for cleanup operations") had no
// effect under the default storage: Postgres cleanup deleted in batches of `storage.database.batch_size` (100)
// whatever it said. A statement-level trigger records how many rows each cleanup DELETE removed, so the batch size is
// read from Postgres itself.

let db: TestDatabase;
const TUNING = fileURLToPath(new URL('./fixtures/reference/tuning-throughput.yaml', import.meta.url));

before(async () => {
  db = await createTestDatabase('idem_cleanup_batches');
  await db.pool.query(`
    CREATE TABLE cleanup_statements (id serial PRIMARY KEY, deleted int NOT NULL);
    CREATE FUNCTION log_cleanup() RETURNS trigger LANGUAGE plpgsql AS $$
      BEGIN INSERT INTO cleanup_statements (deleted) SELECT count(*) FROM old_rows; RETURN NULL; END $$;
    CREATE TRIGGER log_cleanup AFTER DELETE ON idempotency_keys
      REFERENCING OLD TABLE AS old_rows FOR EACH STATEMENT EXECUTE FUNCTION log_cleanup();`);
});
after(() => db.close());

/** `n` expired completed keys, plus one live key that cleanup must leave alone. */
async function seed(n: number): Promise<void> {
  await db.pool.query('TRUNCATE idempotency_keys, cleanup_statements');
  await db.pool.query(
    `INSERT INTO idempotency_keys (queue_name, key_id, status, result, expires_at)
     SELECT 'q', 'expired-' || g, 'completed', '1'::jsonb, now() - interval '1 minute' FROM generate_series(1, $1) g
     UNION ALL SELECT 'q', 'live', 'completed', '1'::jsonb, now() + interval '1 hour'`,
    [n],
  );
}

async function statements(): Promise<number[]> {
  const { rows } = await db.pool.query<{ deleted: number }>('SELECT deleted FROM cleanup_statements ORDER BY id');
  return rows.map((r) => r.deleted);
}

async function cleanupWith(service: IdempotencyService): Promise<{ removed: number; statements: number[] }> {
  try {
    const removed = await service.cleanup();
    return { removed, statements: await statements() };
  } finally {
    await service.close();
  }
}

test('idempotency.batch_size sets the size of each cleanup DELETE under the database storage', async () => {
  await seed(20);
  const config = idempotencyTestConfig({
    databaseUrl: db.url,
    keyPrefix: 'unused:',
    variant: 'database',
    extra: { batch_size: 7 },
  });
  const outcome = await cleanupWith(new IdempotencyService({ config, pool: db.pool }));
  assert.deepEqual(outcome, { removed: 20, statements: [7, 7, 6] });
  const { rows } = await db.pool.query('SELECT key_id FROM idempotency_keys');
  assert.deepEqual(rows, [{ key_id: 'live' }]);
});

test("the reference document's tuning snippet (batch_size: 500) is honoured as written", async () => {
  await seed(1100);
  const config = loadConfig(TUNING, {
    env: {},
    overrides: { database: { url: db.url }, idempotency: { storage: { database: { hot_cache: false } } } },
  });
  const outcome = await cleanupWith(new IdempotencyService({ config, pool: db.pool }));
  assert.deepEqual(outcome, { removed: 1100, statements: [500, 500, 100] });
});

test('storage.database.batch_size alone still sets it (the reference document names both keys)', async () => {
  await seed(10);
  const config = idempotencyTestConfig({
    databaseUrl: db.url,
    keyPrefix: 'unused:',
    variant: 'database',
    extra: { storage: { type: 'database', database: { hot_cache: false, batch_size: 4 } } },
  });
  const outcome = await cleanupWith(new IdempotencyService({ config, pool: db.pool }));
  assert.deepEqual(outcome, { removed: 10, statements: [4, 4, 2] });
});
