import { kyselyFromPool, migrateDown, migrateToLatest, migrationStatus } from '../../db/migrator.js';
import { createPool } from '../../db/pool.js';
import { silentLogger } from '../../logger.js';
import { type Command, parseFlags, UsageError } from '../command.js';
import { cliContext } from '../context.js';

const USAGE = `Usage: exactly-once migrate [latest|down|status] [--config FILE]

  latest   apply every pending migration (default)
  down     undo the most recent migration
  status   list migrations and when each was applied

The database is DATABASE_URL, else database.url from the config file.`;

export const migrateCommand: Command = {
  name: 'migrate',
  usage: USAGE,
  async run(argv) {
    const { values, positionals } = parseFlags(argv, {}, true);
    if (values.help) {
      console.log(USAGE);
      return 0;
    }
    const action = positionals[0] ?? 'latest';
    if (!['latest', 'up', 'down', 'status'].includes(action) || positionals.length > 1) {
      throw new UsageError(`unknown migrate action "${positionals.join(' ')}"`, { showUsage: true });
    }
    const { config } = cliContext(values);
    // A connect timeout (an address that accepts TCP and never answers fails in seconds), but no statement timeout:
    // an index build on a big table may rightly take long.
    const db = kyselyFromPool(
      createPool(config.database.url, silentLogger, { max: 1, connectTimeoutMs: config.database.connectTimeout }),
    );
    try {
      if (action === 'status') {
        for (const m of await migrationStatus(db)) {
          console.log(
            `${m.executedAt ? `applied ${m.executedAt.toISOString()}` : 'pending                          '}  ${m.name}`,
          );
        }
      } else if (action === 'down') {
        const undone = await migrateDown(db);
        console.log(undone.length ? `undid ${undone.join(', ')}` : 'nothing to undo');
      } else {
        const done = await migrateToLatest(db);
        console.log(done.length ? `applied ${done.join(', ')}` : 'already up to date');
      }
      return 0;
    } finally {
      await db.destroy();
    }
  },
};
