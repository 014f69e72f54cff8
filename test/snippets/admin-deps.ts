// docs/operations.md, mounting the admin API: the app's `config`, pg `pool`, ioredis client and `logger`.
import { loadConfig } from 'exactly-once';
import { createLogger } from 'exactly-once/manager';
import { Redis } from 'ioredis';
import pg from 'pg';

export const config = loadConfig();
export const pool = new pg.Pool({ connectionString: config.database.url });
export const redis = new Redis(config.redis.url);
export const logger = createLogger();
