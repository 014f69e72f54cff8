import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import { after, before, test } from 'node:test';
import { promisify } from 'node:util';
import pg from 'pg';
import { kyselyFromPool, migrateDown, migrateToLatest, migrationStatus } from '../src/db/migrator.js';
import { createTestDatabase, type TestDatabase } from './helpers/services.js';

const run = promisify(execFile);
const BIN = new URL('../bin/exactly-once.js', import.meta.url).pathname;
const ROOT = new URL('..', import.meta.url).pathname;

let db: TestDatabase;
before(async () => {
  db = await createTestDatabase('migrations', { migrate: false });
});
after(async () => {
  await db.close();
});

async function schema(): Promise<string[]> {
  const { rows } = await db.pool.query(`
    SELECT table_name || '.' || column_name || ':' || data_type AS c FROM information_schema.columns
    WHERE table_schema = 'public' ORDER BY 1`);
  const idx = await db.pool.query("SELECT indexname AS c FROM pg_indexes WHERE schemaname = 'public' ORDER BY 1");
  return [...rows.map((r) => r.c), ...idx.rows.map((r) => r.c)];
}

test('ten migrators started at once leave one correct schema', async () => {
  const dbs = Array.from({ length: 10 }, () => kyselyFromPool(new pg.Pool({ connectionString: db.url, max: 1 })));
  try {
    const applied = await Promise.all(dbs.map((k) => migrateToLatest(k)));
    // Exactly one migrator applied each migration; the others found nothing to do.
    const all = applied.flat();
    assert.equal(all.length, new Set(all).size, `applied twice: ${all}`);
    const status = await migrationStatus(dbs[0] as (typeof dbs)[0]);
    assert.ok(status.length >= 1);
    assert.ok(status.every((m) => m.executedAt instanceof Date));
    assert.deepEqual(all.sort(), status.map((m) => m.name).sort());
  } finally {
    await Promise.all(dbs.map((k) => k.destroy()));
  }
  const cols = await schema();
  assert.ok(cols.includes('exactly_once_outbox.aggregate_id:text'));
  assert.ok(cols.includes('exactly_once_outbox.next_attempt_at:timestamp with time zone'));
  assert.ok(cols.includes('exactly_once_outbox_pending'));
});

test('migrate down then latest restores the same schema', async () => {
  const before = await schema();
  const k = kyselyFromPool(new pg.Pool({ connectionString: db.url, max: 1 }));
  try {
    const status = await migrationStatus(k);
    for (let i = 0; i < status.length; i++) await migrateDown(k);
    assert.ok(!(await schema()).some((c) => c.startsWith('exactly_once_outbox')));
    await migrateToLatest(k);
  } finally {
    await k.destroy();
  }
  assert.deepEqual(await schema(), before);
});

test('CLI: migrate, migrate status, bad action', async () => {
  const env = { ...process.env, DATABASE_URL: db.url, LOG_LEVEL: 'warn' };
  const up = await run(process.execPath, [BIN, 'migrate'], { env });
  assert.match(up.stdout, /already up to date/);
  const status = await run(process.execPath, [BIN, 'migrate', 'status'], { env });
  assert.match(status.stdout, /applied \S+ {2}0001_outbox/);
  await assert.rejects(
    run(process.execPath, [BIN, 'migrate', 'sideways'], { env }),
    (err: { code: number; stderr: string }) => {
      assert.equal(err.code, 2);
      assert.match(err.stderr, /unknown migrate action "sideways"/);
      return true;
    },
  );
});

test('kysely-ctl runs the same migrations through kysely.config.ts', async () => {
  const fresh = await createTestDatabase('kyselyctl', { migrate: false });
  try {
    const env = { ...process.env, DATABASE_URL: fresh.url };
    await run(process.execPath, [`${ROOT}node_modules/kysely-ctl/dist/bin.mjs`, 'migrate:latest'], { env, cwd: ROOT });
    const { rows } = await fresh.pool.query('SELECT name FROM exactly_once_migration ORDER BY name');
    assert.equal(rows[0]?.name, '0001_outbox');
    const again = kyselyFromPool(new pg.Pool({ connectionString: fresh.url, max: 1 }));
    try {
      assert.deepEqual(await migrateToLatest(again), [], 'the CLI sees kysely-ctl`s work as its own');
    } finally {
      await again.destroy();
    }
  } finally {
    await fresh.close();
  }
});
