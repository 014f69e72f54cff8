import { readFileSync } from 'node:fs';
import { parseDocument } from 'yaml';
import type { z } from 'zod';
import { ConfigError } from '../errors.js';
import { hashTag, keySlot } from '../publishers/hash-tag.js';
import { bearerTokenProblem } from './admin-token.js';
import { formatDuration } from './duration.js';
import { exactlyOnceSchema, PG_BOSS_QUEUE_NAME, type RawConfig } from './schema.js';

type Camel<S extends string> = S extends `${infer H}_${infer T}` ? `${H}${Capitalize<Camel<T>>}` : S;
type CamelDeep<T> = T extends readonly unknown[]
  ? T
  : T extends object
    ? { readonly [K in keyof T as K extends string ? Camel<K> : K]: CamelDeep<T[K]> }
    : T;

/**
 * The resolved, validated, frozen configuration. Keys are the YAML keys in camelCase
 * (`retry_backoff.initial_delay` -> `retryBackoff.initialDelay`); every duration is in milliseconds.
 */
// An interface, not an alias of the mapped type: editors and the API reference then show `Config`, not its expansion.
export interface Config extends CamelDeep<RawConfig> {}

export interface LoadConfigOptions {
  /** Environment to read overrides from. @defaultValue process.env */
  env?: Record<string, string | undefined>;
  /** Values that win over file and environment (CLI flags), in YAML shape under `exactly_once`. */
  overrides?: Record<string, unknown>;
}

const SECTIONS = new Set(['idempotency', 'outbox', 'metrics', 'database', 'redis', 'admin', 'worker']);

/**
 * The defaults, with no file and no environment applied.
 *
 * @example const cfg = defaultConfig(); cfg.outbox.batchSize // 500
 */
export function defaultConfig(): Config {
  return resolve({}, undefined);
}

/**
 * Resolve config once: defaults, then the YAML file (`path`, else `EXACTLY_ONCE_CONFIG`), then the environment
 * (`DATABASE_URL`, `REDIS_URL`, `REDIS_CLUSTER_NODES`, `ADMIN_TOKEN`, `ADMIN_READ_ONLY`, `ADMIN_ALLOWED_HOSTS`), then `overrides`. Validates everything and returns a frozen object.
 * Throws `ConfigError` naming the key path and the file.
 *
 * The file may hold the full tree (`exactly_once: {...}`) or a fragment of it (`outbox: {...}`), as the reference
 * document's snippets do.
 *
 * @example const cfg = loadConfig('config/exactly-once.yaml');
 */
export function loadConfig(path?: string, options: LoadConfigOptions = {}): Config {
  const env = options.env ?? process.env;
  const file = path ?? (env.EXACTLY_ONCE_CONFIG || undefined);
  const tree = file ? readYamlTree(file) : {};
  applyEnv(tree, env);
  if (options.overrides) deepMerge(tree, options.overrides);
  return resolve(tree, file);
}

/** Validate an already-parsed `exactly_once` tree (for callers that build config in code). */
export function configFromObject(tree: Record<string, unknown>, file?: string): Config {
  return resolve(structuredClone(tree), file);
}

function readYamlTree(file: string): Record<string, unknown> {
  let text: string;
  try {
    text = readFileSync(file, 'utf8');
  } catch (err) {
    throw new ConfigError('', `cannot read config file: ${(err as Error).message}`, file, { cause: err });
  }
  const doc = parseDocument(text, { uniqueKeys: true });
  if (doc.errors.length > 0) {
    const first = doc.errors[0];
    throw new ConfigError('', `invalid YAML: ${first?.message ?? 'parse error'}`, file);
  }
  const root: unknown = doc.toJS() ?? {};
  if (!isPlainObject(root)) throw new ConfigError('', 'the file must hold a mapping (exactly_once: ...)', file);
  if ('exactly_once' in root) {
    const extra = Object.keys(root).filter((k) => k !== 'exactly_once');
    if (extra.length > 0) throw new ConfigError(extra[0] as string, 'unknown top-level key next to exactly_once', file);
    const tree = root.exactly_once ?? {};
    if (!isPlainObject(tree)) throw new ConfigError('exactly_once', 'must be a mapping', file);
    return tree;
  }
  // A fragment such as the document's `idempotency: {storage: ...}` snippets.
  for (const key of Object.keys(root)) {
    if (!SECTIONS.has(key)) {
      throw new ConfigError(
        `exactly_once.${key}`,
        `unknown key (expected exactly_once: or one of ${[...SECTIONS].join(', ')})`,
        file,
      );
    }
  }
  return root;
}

function applyEnv(tree: Record<string, unknown>, env: Record<string, string | undefined>): void {
  if (env.DATABASE_URL) deepMerge(tree, { database: { url: env.DATABASE_URL } });
  if (env.REDIS_URL) deepMerge(tree, { redis: { url: env.REDIS_URL } });
  if (env.REDIS_CLUSTER_NODES !== undefined) {
    // Comma-separated seed nodes; blanks around commas are tolerated, an empty list is refused by the schema.
    const nodes = env.REDIS_CLUSTER_NODES.split(',')
      .map((n) => n.trim())
      .filter((n) => n !== '');
    deepMerge(tree, { redis: { cluster: { nodes } } });
  }
  // Set but empty is refused rather than read as "no token": `ADMIN_TOKEN=` in an env file would otherwise leave every
  // mutating endpoint open while the operator believes it is protected.
  if (env.ADMIN_TOKEN !== undefined) {
    const problem = bearerTokenProblem(env.ADMIN_TOKEN);
    if (problem) throw new ConfigError('ADMIN_TOKEN', problem);
    deepMerge(tree, { admin: { token: env.ADMIN_TOKEN } });
  }
  // Only the two words: `ADMIN_READ_ONLY=yes` silently read as false would leave writes open.
  if (env.ADMIN_READ_ONLY !== undefined) {
    const value = env.ADMIN_READ_ONLY.trim().toLowerCase();
    if (value !== 'true' && value !== 'false') throw new ConfigError('ADMIN_READ_ONLY', 'must be "true" or "false"');
    deepMerge(tree, { admin: { read_only: value === 'true' } });
  }
  if (env.ADMIN_ALLOWED_HOSTS !== undefined) {
    const hosts = env.ADMIN_ALLOWED_HOSTS.split(',')
      .map((h) => h.trim())
      .filter((h) => h !== '');
    deepMerge(tree, { admin: { allowed_hosts: hosts } });
  }
}

function resolve(tree: Record<string, unknown>, file: string | undefined): Config {
  const parsed = exactlyOnceSchema.safeParse(tree);
  if (!parsed.success) throw toConfigError(parsed.error, file);
  const raw = parsed.data;
  honourIdempotencyBatchSize(raw, tree, file);
  if (raw.outbox.enabled && raw.outbox.storage_type === 'redis') checkRedisOutbox(raw, file);
  if (raw.outbox.retry_backoff.max_delay < raw.outbox.retry_backoff.initial_delay) {
    throw new ConfigError('exactly_once.outbox.retry_backoff.max_delay', 'must be >= initial_delay', file);
  }
  checkAgreement(raw, file);
  checkWorker(raw, file);
  if (raw.outbox.publisher === 'pg-boss') checkPgBoss(raw, file);
  checkCluster(raw, tree, file);
  return deepFreeze(camelize(raw)) as Config;
}

/** The worker's timings, which upstream go-redis-work-queue checks the same way. */
function checkWorker(raw: RawConfig, file: string | undefined): void {
  const w = raw.worker;
  if (w.backoff.max < w.backoff.base) throw new ConfigError('exactly_once.worker.backoff.max', 'must be >= base', file);
  if (w.block_timeout > w.heartbeat_ttl / 2) {
    throw new ConfigError(
      'exactly_once.worker.block_timeout',
      `must be at most half of heartbeat_ttl (${formatDuration(w.heartbeat_ttl)}): go-redis-work-queue's rule, and a stopping worker waits for the pop in flight`,
      file,
    );
  }
}

/**
 * Keys that are each valid but together break a guarantee. Each message names both keys and their values.
 * Not checked, on purpose: `idempotency.wait_timeout` against `lease`. Shorter, a duplicate behind a crashed caller
 * gives up and is redelivered by its queue; longer, it waits and takes the key over. Both keep G4.
 */
function checkAgreement(raw: RawConfig, file: string | undefined): void {
  const o = raw.outbox;
  const d = formatDuration;
  if (o.publish_timeout >= o.claim_timeout) {
    // The claim's transaction sits idle while Redis is written; Postgres ends it after claim_timeout. A publish that may
    // run that long lands its jobs in Redis and then loses the claim: the batch is rolled back and claimed again.
    throw new ConfigError(
      'exactly_once.outbox.publish_timeout',
      `must be less than outbox.claim_timeout (${d(o.claim_timeout)}; got ${d(o.publish_timeout)}): ` +
        "a publish that runs that long outlives the relay's claim, so the batch is rolled back after Redis has its jobs",
      file,
    );
  }
  if (o.dedup_window <= o.claim_timeout) {
    // A relay that hangs after its push keeps the claim until claim_timeout; the relay that claims the events next
    // pushes again, and only a live high-water mark stops that push (G2).
    throw new ConfigError(
      'exactly_once.outbox.dedup_window',
      `must be longer than outbox.claim_timeout (${d(o.claim_timeout)}; got ${d(o.dedup_window)}): ` +
        'events a hung relay had pushed are claimed again after claim_timeout, and an expired mark lets them be pushed twice',
      file,
    );
  }
}

/**
 * The pg-boss publisher's queue names are pg-boss names: a pattern that yields a name pg-boss refuses would fail every
 * event at run time, so it is refused here, naming the key that supplied it.
 */
function checkPgBoss(raw: RawConfig, file: string | undefined): void {
  const o = raw.outbox;
  const pattern = o.pg_boss.queue ?? o.queue_pattern;
  const key = o.pg_boss.queue === undefined ? 'queue_pattern' : 'pg_boss.queue';
  for (const priority of ['high', 'low']) {
    const name = pattern.replaceAll('{priority}', priority);
    if (PG_BOSS_QUEUE_NAME.test(name)) continue;
    throw new ConfigError(
      `exactly_once.outbox.${key}`,
      `gives the pg-boss queue name ${JSON.stringify(name)}, which pg-boss refuses (letters, digits, _ - . / only)` +
        (key === 'queue_pattern' ? '; set outbox.pg_boss.queue, e.g. "jobqueue.{priority}_priority"' : ''),
      file,
    );
  }
}

/**
 * A Redis Cluster config that one client cannot serve. Everything else runs unchanged on a cluster: every Lua script
 * this project runs touches one key (idempotency) or keys it groups by slot (publishers: each high-water mark is named
 * into its destination's slot), so no key name a user chooses can make a script cross slots.
 */
function checkCluster(raw: RawConfig, tree: Record<string, unknown>, file: string | undefined): void {
  const cluster = raw.redis.cluster;
  if (!cluster) return;
  const redisTree = isPlainObject(tree.redis) ? tree.redis : {};
  if (redisTree.url !== undefined) {
    throw new ConfigError(
      'exactly_once.redis.url',
      'is set together with redis.cluster.nodes; set one of them (env REDIS_URL sets redis.url, REDIS_CLUSTER_NODES the nodes)',
      file,
    );
  }
  // ioredis connects to every node with one set of options: nodes that disagree on TLS or credentials would fail on
  // the nodes the client discovers, long after start.
  const access = (node: string) => {
    const u = new URL(node);
    return `${u.protocol}${u.username}:${u.password}`;
  };
  const first = cluster.nodes[0] as string;
  const odd = cluster.nodes.findIndex((node) => access(node) !== access(first));
  if (odd > 0) {
    throw new ConfigError(
      `exactly_once.redis.cluster.nodes.${odd}`,
      'differs from nodes.0 in scheme (redis:// or rediss://) or credentials; a cluster client uses one set for every node',
      file,
    );
  }
}

/**
 * What the Redis outbox cannot do (src/outbox/redis/): the relay moves an event and marks it in one Lua script, so the
 * destination must sit where that script runs. One server: always. A cluster: the destination lists must hash to the
 * outbox keys' slot, or the move could not be atomic; refused here rather than failing every event at run time.
 */
function checkRedisOutbox(raw: RawConfig, file: string | undefined): void {
  const o = raw.outbox;
  if (o.publisher !== 'list') {
    throw new ConfigError(
      'exactly_once.outbox.publisher',
      `"${o.publisher}" is not available with outbox.storage_type: redis yet; use "list"`,
      file,
    );
  }
  const prefix = o.redis.key_prefix;
  // The relay refuses to push onto a key under key_prefix (it could overwrite the outbox's own state), so a default
  // list there would fail every ordinary event.
  for (const priority of ['high', 'low']) {
    const list = o.queue_pattern.replaceAll('{priority}', priority);
    if (!list.startsWith(prefix)) continue;
    throw new ConfigError(
      'exactly_once.outbox.queue_pattern',
      `list ${JSON.stringify(list)} starts with outbox.redis.key_prefix ${JSON.stringify(prefix)}, where the outbox ` +
        'keeps its own keys: the relay would refuse every event bound for it. Give the lists and the outbox keys ' +
        'different prefixes (the defaults: queue_pattern "jobqueue:{priority}_priority", key_prefix "eo:{outbox}:")',
      file,
    );
  }
  if (!raw.redis.cluster) return;
  const tag = hashTag(`${prefix}due`);
  if (tag === `${prefix}due`) {
    throw new ConfigError(
      'exactly_once.outbox.redis.key_prefix',
      `needs a hash tag on a Redis Cluster (e.g. "eo:{jobqueue}:"), so every outbox key sits in one slot; got ${JSON.stringify(prefix)}`,
      file,
    );
  }
  const slot = keySlot(`${prefix}due`);
  for (const priority of ['high', 'low']) {
    const list = o.queue_pattern.replaceAll('{priority}', priority);
    if (keySlot(list) !== slot) {
      throw new ConfigError(
        'exactly_once.outbox.queue_pattern',
        `list ${JSON.stringify(list)} is in cluster slot ${keySlot(list)}, the outbox keys (${JSON.stringify(prefix)}) in ` +
          `slot ${slot}: the relay moves an event and marks it in one script, which needs both in one slot. Give both ` +
          'the same hash tag, e.g. queue_pattern "{jobqueue}:{priority}_priority" with key_prefix "eo:{jobqueue}:"',
        file,
      );
    }
  }
}

/**
 * The reference document (docs/reference-api.md) tunes cleanup with `idempotency.batch_size`, while the Postgres store reads
 * `storage.database.batch_size`. Given alone, the general key sets the specific one; both given and different is
 * refused, since one of them would be silently ignored.
 */
function honourIdempotencyBatchSize(raw: RawConfig, tree: Record<string, unknown>, file: string | undefined): void {
  const idem = isPlainObject(tree.idempotency) ? tree.idempotency : {};
  const storage = isPlainObject(idem.storage) ? idem.storage : {};
  const database = isPlainObject(storage.database) ? storage.database : {};
  const general = idem.batch_size !== undefined;
  const specific = database.batch_size !== undefined;
  if (!general || raw.idempotency.storage.type !== 'database') return;
  if (!specific) {
    raw.idempotency.storage.database.batch_size = raw.idempotency.batch_size;
    return;
  }
  if (raw.idempotency.batch_size !== raw.idempotency.storage.database.batch_size) {
    throw new ConfigError(
      'exactly_once.idempotency.batch_size',
      `differs from idempotency.storage.database.batch_size (${raw.idempotency.storage.database.batch_size}), which the ` +
        'database storage uses; set one of them (or both to the same value)',
      file,
    );
  }
}

function toConfigError(error: z.ZodError, file: string | undefined): ConfigError {
  const issue = error.issues[0];
  if (!issue) return new ConfigError('exactly_once', 'invalid config', file);
  const path = ['exactly_once', ...issue.path.map(String)];
  if (issue.code === 'unrecognized_keys') {
    const key = issue.keys[0] as string;
    return new ConfigError([...path, key].join('.'), 'unknown key', file);
  }
  return new ConfigError(path.join('.'), issue.message, file);
}

function camelize(value: unknown): unknown {
  if (Array.isArray(value)) return value.map(camelize);
  if (!isPlainObject(value)) return value;
  const out: Record<string, unknown> = {};
  for (const [k, v] of Object.entries(value))
    out[k.replace(/_([a-z])/g, (_, c: string) => c.toUpperCase())] = camelize(v);
  return out;
}

function deepMerge(target: Record<string, unknown>, source: Record<string, unknown>): void {
  for (const [k, v] of Object.entries(source)) {
    const current = target[k];
    if (isPlainObject(v) && isPlainObject(current)) deepMerge(current, v);
    else target[k] = isPlainObject(v) ? structuredClone(v) : v;
  }
}

function deepFreeze<T>(value: T): T {
  if (typeof value === 'object' && value !== null) {
    for (const v of Object.values(value)) deepFreeze(v);
    Object.freeze(value);
  }
  return value;
}

function isPlainObject(value: unknown): value is Record<string, unknown> {
  return typeof value === 'object' && value !== null && !Array.isArray(value);
}
