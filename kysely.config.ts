// Lets `npx kysely migrate:latest` (kysely-ctl) run the same migrations, with the same bookkeeping tables,
// as `exactly-once migrate`. The database comes from DATABASE_URL / EXACTLY_ONCE_CONFIG like everywhere else.
import { PostgresDialect } from 'kysely';
import { defineConfig } from 'kysely-ctl';
import pg from 'pg';
import { loadConfig } from './src/config/load-config.js';
import { MIGRATION_LOCK_TABLE, MIGRATION_TABLE } from './src/db/migrator.js';

export default defineConfig({
  dialect: new PostgresDialect({ pool: new pg.Pool({ connectionString: loadConfig().database.url, max: 2 }) }),
  migrations: {
    migrationFolder: 'migrations',
    migrationTableName: MIGRATION_TABLE,
    migrationLockTableName: MIGRATION_LOCK_TABLE,
  },
});
