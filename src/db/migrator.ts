import { promises as fs } from 'node:fs';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { FileMigrationProvider, Kysely, type MigrationResultSet, Migrator, PostgresDialect } from 'kysely';
import type pg from 'pg';
import { ExactlyOnceError, MigrationError } from '../errors.js';

/** Our own bookkeeping tables, so we never collide with the application's `kysely_migration`. */
export const MIGRATION_TABLE = 'exactly_once_migration';
export const MIGRATION_LOCK_TABLE = 'exactly_once_migration_lock';

/** `migrations/` at the package root, from src/ (tsx) and from dist/src/ (built) alike. */
export const MIGRATIONS_FOLDER = fileURLToPath(new URL('../../migrations', import.meta.url));

// biome-ignore lint/suspicious/noExplicitAny: migrations run against a schema they create themselves
export type AnyDb = Kysely<any>;

/** A Kysely Migrator over this package's migrations. kysely.config.ts hands the same one to kysely-ctl. */
export function createMigrator(db: AnyDb): Migrator {
  return new Migrator({
    db,
    provider: new FileMigrationProvider({ fs, path, migrationFolder: MIGRATIONS_FOLDER }),
    migrationTableName: MIGRATION_TABLE,
    migrationLockTableName: MIGRATION_LOCK_TABLE,
  });
}

export function kyselyFromPool(pool: pg.Pool): AnyDb {
  return new Kysely({ dialect: new PostgresDialect({ pool }) });
}

export interface MigrationStatus {
  name: string;
  executedAt: Date | undefined;
}

/** Apply every pending migration. Safe to run from many processes at once (Kysely takes an advisory lock). */
export async function migrateToLatest(db: AnyDb): Promise<string[]> {
  return applied(await createMigrator(db).migrateToLatest(), 'migrate to latest');
}

/** Undo the most recent migration. */
export async function migrateDown(db: AnyDb): Promise<string[]> {
  return applied(await createMigrator(db).migrateDown(), 'migrate down');
}

export async function migrationStatus(db: AnyDb): Promise<MigrationStatus[]> {
  const list = await createMigrator(db).getMigrations();
  return list.map((m) => ({ name: m.name, executedAt: m.executedAt }));
}

function applied(result: MigrationResultSet, what: string): string[] {
  if (result.error) {
    const failed = result.results?.find((r) => r.status === 'Error')?.migrationName;
    const cause = result.error;
    // No migration ran: the database could not be reached or locked. That error says it all, with its own code, as
    // every other command reports it.
    if (!failed && cause instanceof ExactlyOnceError) throw cause;
    const detail = cause instanceof Error ? cause.message : String(cause);
    throw new MigrationError(`${what} failed${failed ? ` in ${failed}` : ''}: ${detail}`, { cause });
  }
  return (result.results ?? []).filter((r) => r.status === 'Success').map((r) => r.migrationName);
}
