import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { after, before, test } from 'node:test';
import { promisify } from 'node:util';
import pg from 'pg';
import { configFromObject } from '../src/config/load-config.js';
import { createMigrator, kyselyFromPool, migrateDown, migrateToLatest, migrationStatus } from '../src/db/migrator.js';
import { NotMigratedError } from '../src/errors.js';
import { generateIdempotencyKey, IdempotencyService } from '../src/idempotency/index.js';
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

/** `col` names a user schema (not pg_catalog, information_schema, pg_toast, ...). */
const userSchema = (col: string) => `${col} NOT IN ('pg_catalog', 'information_schema') AND ${col} NOT LIKE 'pg\\_%'`;

/**
 * Everything a migration can create, as sorted lines: columns (type, nullability, default), indexes, constraints,
 * functions (pg_get_functiondef), triggers (pg_get_triggerdef), views, sequences, enum and domain types, in every
 * non-system schema. Whitespace runs are collapsed, so re-indenting a function body is not a difference; any change
 * of its code is.
 */
async function fullSchema(pool: pg.Pool): Promise<string[]> {
  const queries = [
    `SELECT 'column ' || table_schema || '.' || table_name || '.' || column_name || ' ' || data_type || ' null:' ||
            is_nullable || ' default:' || coalesce(column_default, '-') AS line
       FROM information_schema.columns WHERE ${userSchema('table_schema')}`,
    `SELECT 'index ' || schemaname || '.' || indexname || ': ' || indexdef AS line
       FROM pg_indexes WHERE ${userSchema('schemaname')}`,
    `SELECT 'constraint ' || n.nspname || '.' || c.conrelid::regclass::text || '.' || c.conname || ': ' ||
            pg_get_constraintdef(c.oid) AS line
       FROM pg_constraint c JOIN pg_namespace n ON n.oid = c.connamespace WHERE ${userSchema('n.nspname')}`,
    `SELECT 'function ' || n.nspname || '.' || p.proname || '(' || pg_get_function_identity_arguments(p.oid) || '): ' ||
            pg_get_functiondef(p.oid) AS line
       FROM pg_proc p JOIN pg_namespace n ON n.oid = p.pronamespace
      WHERE ${userSchema('n.nspname')} AND p.prokind IN ('f', 'p')
        AND NOT EXISTS (SELECT 1 FROM pg_depend d WHERE d.objid = p.oid AND d.deptype = 'e')`,
    `SELECT 'trigger ' || t.tgrelid::regclass::text || '.' || t.tgname || ': ' || pg_get_triggerdef(t.oid) ||
            ' enabled:' || t.tgenabled::text AS line
       FROM pg_trigger t JOIN pg_class c ON c.oid = t.tgrelid JOIN pg_namespace n ON n.oid = c.relnamespace
      WHERE NOT t.tgisinternal AND ${userSchema('n.nspname')}`,
    `SELECT 'view ' || schemaname || '.' || viewname || ': ' || definition AS line
       FROM pg_views WHERE ${userSchema('schemaname')}`,
    `SELECT 'sequence ' || schemaname || '.' || sequencename || ' ' || data_type::text AS line
       FROM pg_sequences WHERE ${userSchema('schemaname')}`,
    `SELECT 'type ' || n.nspname || '.' || t.typname || ' ' || t.typtype::text || ' ' ||
            coalesce((SELECT string_agg(e.enumlabel, ',' ORDER BY e.enumsortorder) FROM pg_enum e WHERE e.enumtypid = t.oid),
                     format_type(t.typbasetype, t.typtypmod)) AS line
       FROM pg_type t JOIN pg_namespace n ON n.oid = t.typnamespace
      WHERE t.typtype IN ('e', 'd') AND ${userSchema('n.nspname')}`,
  ];
  const lines: string[] = [];
  for (const q of queries) {
    const { rows } = await pool.query<{ line: string }>(q);
    lines.push(...rows.map((r) => r.line.replace(/\s+/g, ' ').trim()));
  }
  return lines.sort();
}

/** Assert two schema snapshots are equal, naming what is missing and what is extra. */
function assertSameSchema(actual: string[], expected: string[], what: string): void {
  const missing = expected.filter((l) => !actual.includes(l));
  const extra = actual.filter((l) => !expected.includes(l));
  assert.ok(
    missing.length === 0 && extra.length === 0,
    `${what}:\n  missing:\n    ${missing.join('\n    ') || '-'}\n  extra:\n    ${extra.join('\n    ') || '-'}`,
  );
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
  assert.ok(cols.includes('exactly_once_outbox_events_lane_seq'));
});

test('migrate down then latest restores the same schema', async () => {
  const before = await fullSchema(db.pool);
  const k = kyselyFromPool(new pg.Pool({ connectionString: db.url, max: 1 }));
  try {
    const status = await migrationStatus(k);
    for (let i = 0; i < status.length; i++) await migrateDown(k);
    assert.ok(!(await schema()).some((c) => c.startsWith('exactly_once_outbox')));
    await migrateToLatest(k);
  } finally {
    await k.destroy();
  }
  assertSameSchema(await fullSchema(db.pool), before, 'down to nothing, then latest');
});

test('every migration round-trips: up, down restores the schema before it (functions and triggers included), up again', async () => {
  const fresh = await createTestDatabase('migrations_steps', { migrate: false });
  const k = kyselyFromPool(new pg.Pool({ connectionString: fresh.url, max: 1 }));
  try {
    const migrator = createMigrator(k);
    const names = (await migrator.getMigrations()).map((m) => m.name);
    assert.ok(names.length >= 4, `found only ${names.length} migrations`);
    // Snapshots after 0, 1, 2, ... migrations. The bookkeeping tables appear with the first migration run, so the
    // baseline is taken after one up and down.
    const step = async (direction: 'up' | 'down', expected: string) => {
      const result = direction === 'up' ? await migrator.migrateUp() : await migrator.migrateDown();
      if (result.error) throw result.error;
      const ran = result.results?.map((r) => `${r.migrationName}:${r.direction}:${r.status}`);
      assert.deepEqual(ran, [`${expected}:${direction === 'up' ? 'Up' : 'Down'}:Success`]);
    };
    await step('up', names[0] as string);
    await step('down', names[0] as string);
    const snapshots = [await fullSchema(fresh.pool)];
    for (const [i, name] of names.entries()) {
      await step('up', name);
      const after = await fullSchema(fresh.pool);
      assert.notDeepEqual(after, snapshots[i], `${name} changed nothing in the schema`);
      await step('down', name);
      assertSameSchema(await fullSchema(fresh.pool), snapshots[i] as string[], `down of ${name} after its up`);
      await step('up', name);
      assertSameSchema(await fullSchema(fresh.pool), after, `${name} applied again after its down`);
      snapshots.push(after);
    }
    // And back down from the latest, one by one: each down restores the state before its migration.
    for (let i = names.length - 1; i >= 0; i--) {
      await step('down', names[i] as string);
      assertSameSchema(
        await fullSchema(fresh.pool),
        snapshots[i] as string[],
        `down of ${names[i]} from the latest schema`,
      );
    }
  } finally {
    await k.destroy();
    await fresh.close();
  }
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

/** Names of the tables in `pool`'s database that start with `prefix`. */
async function tablesLike(pool: pg.Pool, prefix: string): Promise<string[]> {
  const { rows } = await pool.query<{ t: string }>(
    `SELECT table_name AS t FROM information_schema.tables WHERE table_schema = 'public' AND table_name LIKE $1 ORDER BY 1`,
    [`${prefix}%`],
  );
  return rows.map((r) => r.t);
}

test('migrations read no config: a config naming another idempotency table changes neither up nor down', async () => {
  const fresh = await createTestDatabase('migrations_noconfig', { migrate: false });
  const dir = mkdtempSync(path.join(tmpdir(), 'eo-migrate-'));
  const file = path.join(dir, 'config.yaml');
  writeFileSync(file, 'idempotency:\n  storage:\n    database:\n      table_name: other_keys\n');
  const saved = process.env.EXACTLY_ONCE_CONFIG;
  // The environment a migration could have read the table name from (this is what the CLI used to set).
  process.env.EXACTLY_ONCE_CONFIG = file;
  const k = kyselyFromPool(new pg.Pool({ connectionString: fresh.url, max: 1 }));
  try {
    await migrateToLatest(k);
    assert.deepEqual(await tablesLike(fresh.pool, 'other_keys'), []);
    assert.deepEqual(await tablesLike(fresh.pool, 'idempotency_keys'), ['idempotency_keys', 'idempotency_keys_stats']);
    // And the CLI with --config: nothing left to do, nothing created under the configured name.
    const env = { ...process.env, DATABASE_URL: fresh.url, EXACTLY_ONCE_CONFIG: '', LOG_LEVEL: 'warn' };
    const up = await run(process.execPath, [BIN, 'migrate', '--config', file], { env });
    assert.match(up.stdout, /already up to date/);
    assert.deepEqual(await tablesLike(fresh.pool, 'other_keys'), []);
    const status = await migrationStatus(k);
    for (let i = 0; i < status.length; i++) await migrateDown(k);
    assert.deepEqual(await tablesLike(fresh.pool, 'idempotency_keys'), [], 'down drops what up created');
  } finally {
    if (saved === undefined) delete process.env.EXACTLY_ONCE_CONFIG;
    else process.env.EXACTLY_ONCE_CONFIG = saved;
    rmSync(dir, { recursive: true, force: true });
    await k.destroy();
    await fresh.close();
  }
});

test('a table_name the migrations do not create: EO_NOT_MIGRATED names it and the docs, whose DDL then works', async () => {
  const config = configFromObject({
    database: { url: db.url },
    idempotency: { storage: { type: 'database', database: { table_name: 'app_idempotency_keys', hot_cache: false } } },
  });
  const service = new IdempotencyService({ config, pool: db.pool });
  try {
    const key = generateIdempotencyKey('mail', '', 'custom-table-1');
    let runs = 0;
    const processor = async () => ++runs;
    await assert.rejects(service.processWithIdempotency(key, processor), (err: unknown) => {
      assert.ok(err instanceof NotMigratedError, String(err));
      assert.match(err.message, /"app_idempotency_keys" does not exist/);
      assert.match(err.message, /docs\/operations\.md \("The idempotency table under another name"\)/);
      return true;
    });
    assert.equal(runs, 0);
    // The DDL block of that section, run as the docs tell the operator to.
    const docs = readFileSync(new URL('../docs/operations.md', import.meta.url), 'utf8');
    const section = docs.slice(docs.indexOf('## The idempotency table under another name'));
    const ddl = /```sql\n([\s\S]*?)```/.exec(section)?.[1];
    assert.ok(ddl, 'the section has a sql block');
    await db.pool.query(ddl);
    assert.deepEqual(await service.processWithIdempotency(key, processor), { duplicate: false, result: 1 });
    assert.deepEqual(await service.processWithIdempotency(key, processor), { duplicate: true, result: 1 });
    assert.equal((await service.getDedupStats('mail')).duplicatesAvoided, 1, 'the stats table works too');
    // Same columns, types and indexes as the migrated table.
    const shape = async (t: string) =>
      (
        await db.pool.query<{ c: string }>(
          `SELECT column_name || ' ' || data_type || ' ' || is_nullable || ' ' || coalesce(column_default, '-') AS c
             FROM information_schema.columns WHERE table_name = $1 ORDER BY ordinal_position`,
          [t],
        )
      ).rows.map((r) => r.c);
    assert.deepEqual(await shape('app_idempotency_keys'), await shape('idempotency_keys'));
    assert.deepEqual(await shape('app_idempotency_keys_stats'), await shape('idempotency_keys_stats'));
  } finally {
    await service.close();
    await db.pool.query('DROP TABLE IF EXISTS app_idempotency_keys, app_idempotency_keys_stats');
  }
});
