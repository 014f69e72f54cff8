/**
 * Every error this library throws on purpose. Each class has a stable `code` that is never reused,
 * so callers can branch on `err.code` instead of on message text.
 */
export class ExactlyOnceError extends Error {
  readonly code: string;

  constructor(code: string, message: string, options?: { cause?: unknown }) {
    super(message, options);
    this.name = new.target.name;
    this.code = code;
  }
}

/** A config file, environment variable or flag is invalid. `path` names the key, e.g. `exactly_once.outbox.batch_size`. */
export class ConfigError extends ExactlyOnceError {
  readonly path: string;
  readonly file: string | undefined;

  constructor(path: string, message: string, file?: string, options?: { cause?: unknown }) {
    super('EO_CONFIG_INVALID', `${file ? `${file}: ` : ''}${path ? `${path}: ` : ''}${message}`, options);
    this.path = path;
    this.file = file;
  }
}

/** An event handed to `storeInOutbox` is invalid; nothing was written. `field` names the offending field. */
export class OutboxEventValidationError extends ExactlyOnceError {
  readonly field: string;
  readonly index: number | undefined;

  constructor(field: string, message: string, index?: number) {
    const where = index === undefined ? field : `events[${index}].${field}`;
    super('EO_OUTBOX_INVALID_EVENT', `${where}: ${message}`);
    this.field = field;
    this.index = index;
  }
}

/** The handle handed to `storeInOutbox` (or `storeInOutboxStandalone`) is not a Kysely or pg handle it can use. */
export class UnsupportedExecutorError extends ExactlyOnceError {
  constructor(
    message = 'storeInOutbox needs a Kysely Transaction or a pg Client/PoolClient inside your transaction; got something else',
  ) {
    super('EO_UNSUPPORTED_EXECUTOR', message);
  }
}

/**
 * `storeInOutbox` was handed a pg `Pool` or a root `Kysely` instance. Each statement on those autocommits on whichever
 * connection is free, so the event would be published even if the app's transaction rolled back (G1); nothing was
 * written. `handle` says what was passed.
 */
export class OutboxTransactionRequiredError extends ExactlyOnceError {
  readonly handle: string;

  constructor(handle: string) {
    super(
      'EO_OUTBOX_TRANSACTION_REQUIRED',
      `storeInOutbox needs your transaction: a Kysely Transaction (inside db.transaction().execute(async (trx) => ...)) ` +
        `or a pg Client/PoolClient after BEGIN; got ${handle}, whose statements autocommit, so the event would be ` +
        `published even if your transaction rolled back. Nothing was written. To write events on their own, outside ` +
        `any transaction of yours, call storeInOutboxStandalone(poolOrDb, events).`,
    );
    this.handle = handle;
  }
}

/**
 * `storeInOutbox` was handed an ioredis client or a plain `pipeline()` while it recognised Redis: neither is a
 * transaction, so the event could be stored while the app's own writes were not (or the reverse). Pass the
 * `redis.multi()` your writes go into. Nothing was written. `handle` says what was passed.
 */
export class OutboxMultiRequiredError extends ExactlyOnceError {
  readonly handle: string;

  constructor(handle: string) {
    super(
      'EO_OUTBOX_MULTI_REQUIRED',
      `storeInOutbox with the Redis outbox needs your transaction, the ioredis multi() that holds your writes ` +
        `(const multi = redis.multi(); multi.set(...); await storeInOutbox(multi, event, config.outbox); await multi.exec()); ` +
        `got ${handle}, which is not a MULTI/EXEC transaction. Nothing was written.`,
    );
    this.handle = handle;
  }
}

/**
 * Two events of one `storeInOutbox` call share an id, or an event's id is already in the outbox. Nothing of the call
 * was written and the caller's transaction is still usable. `index` is the event's position in the batch.
 */
export class OutboxDuplicateIdError extends ExactlyOnceError {
  readonly field = 'id';
  readonly id: string;
  readonly index: number | undefined;
  /** The earlier event of the same batch with this id; `undefined` when the id was already in the outbox. */
  readonly firstIndex: number | undefined;

  constructor(id: string, index: number | undefined, firstIndex?: number) {
    const where = index === undefined ? 'id' : `events[${index}].id`;
    const why =
      firstIndex === undefined
        ? `an event with id "${id}" is already in the outbox (ids are unique; omit id to have one generated)`
        : `"${id}" is also the id of events[${firstIndex}]; each event needs its own id`;
    super('EO_OUTBOX_DUPLICATE_ID', `${where}: ${why}`);
    this.id = id;
    this.index = index;
    this.firstIndex = firstIndex;
  }
}

/**
 * An event names a destination (`queue`) that `outbox.allowed_queues` and `outbox.queue_pattern` do not allow, or a
 * key reserved for the relay's own (high-water marks, dedup markers). Nothing was written.
 */
export class OutboxQueueNotAllowedError extends ExactlyOnceError {
  readonly field = 'queue';
  readonly queue: string;
  readonly index: number | undefined;

  constructor(queue: string, index: number | undefined, reason: string) {
    super('EO_OUTBOX_QUEUE_NOT_ALLOWED', `${index === undefined ? '' : `events[${index}].`}queue: ${reason}`);
    this.queue = queue;
    this.index = index;
  }
}

/** The outbox table is missing: migrations have not been applied to this database. */
export class NotMigratedError extends ExactlyOnceError {
  /** `hint`: what to do instead of running the migrations (for a table they do not create). */
  constructor(table: string, options?: { cause?: unknown; hint?: string }) {
    super(
      'EO_NOT_MIGRATED',
      `table "${table}" does not exist; ${options?.hint ?? 'run `exactly-once migrate` first'}`,
      options,
    );
  }
}

/** A migration command failed. */
export class MigrationError extends ExactlyOnceError {
  constructor(message: string, options?: { cause?: unknown }) {
    super('EO_MIGRATION_FAILED', message, options);
  }
}

/** Another caller holds the idempotency key and did not finish within the wait time. The processor was not run. */
export class IdempotencyInProgressError extends ExactlyOnceError {
  readonly key: string;

  constructor(key: string, waitedMs: number) {
    super(
      'EO_IDEMPOTENCY_IN_PROGRESS',
      `idempotency key "${key}" is being processed by another caller (waited ${waitedMs} ms)`,
    );
    this.key = key;
  }
}

/** The idempotency key was first used with a different request fingerprint. The processor was not run. */
export class IdempotencyKeyMismatchError extends ExactlyOnceError {
  readonly key: string;

  constructor(key: string) {
    super('EO_IDEMPOTENCY_KEY_MISMATCH', `idempotency key "${key}" was first used with a different request payload`);
    this.key = key;
  }
}

/** A feature was used while disabled in config. */
export class FeatureDisabledError extends ExactlyOnceError {
  constructor(feature: string) {
    super('EO_FEATURE_DISABLED', `${feature} is disabled in config (exactly_once.${feature}.enabled: false)`);
  }
}

/** A relay batch could not be attempted at all (Redis unreachable or too slow); it is rolled back and retried. */
export class PublishUnavailableError extends ExactlyOnceError {
  constructor(message: string, options?: { cause?: unknown }) {
    super('EO_PUBLISH_UNAVAILABLE', message, options);
  }
}

/**
 * The relay's circuit breaker is open (publishing kept failing): nothing was claimed. `retryInMs` says when a trial
 * batch may run. See src/outbox/circuit-breaker.ts.
 */
export class CircuitOpenError extends ExactlyOnceError {
  readonly retryInMs: number;

  constructor(retryInMs: number, lastError: string | undefined) {
    super(
      'EO_CIRCUIT_OPEN',
      `publishing is paused by the circuit breaker (retry in ${retryInMs} ms)${lastError ? `; last error: ${lastError}` : ''}`,
    );
    this.retryInMs = retryInMs;
  }
}

/**
 * Postgres or Redis could not be reached: refused, unknown host, or no answer within the connect timeout (or the
 * relay's start-up wait). `service` says which, `target` is `host:port[/database]` (never the password).
 */
export class ServiceUnreachableError extends ExactlyOnceError {
  readonly service: 'postgres' | 'redis';
  readonly target: string;

  constructor(service: 'postgres' | 'redis', target: string, reason: string, options?: { cause?: unknown }) {
    super(
      'EO_SERVICE_UNREACHABLE',
      `cannot reach ${service === 'postgres' ? 'Postgres' : 'Redis'} at ${target}: ${reason}`,
      options,
    );
    this.service = service;
    this.target = target;
  }
}

/**
 * The Redis that holds the outbox (`outbox.storage_type: redis`) may evict any key when it is full (`maxmemory-policy`
 * `allkeys-*`): an evicted event hash, aggregate list or status set is an event lost or stranded (G1). The relay
 * refuses to start on it. `target` is `host:port`, `policy` the server's setting.
 */
export class RedisEvictionPolicyError extends ExactlyOnceError {
  readonly target: string;
  readonly policy: string;

  constructor(target: string, policy: string) {
    super(
      'EO_REDIS_EVICTION_POLICY',
      `Redis at ${target} runs with maxmemory-policy ${policy}: when full it may evict any key, and with the outbox ` +
        'in it that loses or strands events. Set maxmemory-policy noeviction (writes then fail while it is full, ' +
        'nothing is lost), or a volatile-* policy (the outbox keys have no TTL), or keep the outbox in another Redis',
    );
    this.target = target;
    this.policy = policy;
  }
}

/** SQLSTATE codes we match on; never match Postgres errors on message text. */
export const PgErrorCode = {
  undefinedTable: '42P01',
  undefinedFunction: '42883',
  uniqueViolation: '23505',
  serializationFailure: '40001',
  deadlockDetected: '40P01',
  queryCanceled: '57014',
  adminShutdown: '57P01',
  idleInTransactionTimeout: '25P03',
} as const;

/** The SQLSTATE of a pg error, if it is one. */
export function sqlState(err: unknown): string | undefined {
  if (
    typeof err === 'object' &&
    err !== null &&
    'code' in err &&
    typeof err.code === 'string' &&
    err.code.length === 5
  ) {
    return err.code;
  }
  return undefined;
}

// --- admin API, outbox inspection, maintenance ---

/** A query parameter, body field or argument is invalid. `field` names it (`limit`, `cursor`, `ids[2]`, `ttl`). */
export class InvalidParameterError extends ExactlyOnceError {
  readonly field: string;
  /** What is wrong, without the field's name (the message is `<field>: <problem>`). */
  readonly problem: string;

  constructor(field: string, message: string, options?: { cause?: unknown }) {
    super('EO_INVALID_PARAMETER', `${field}: ${message}`, options);
    this.field = field;
    this.problem = message;
  }
}

/** A mutating admin request (or any request, with `protect_reads`) lacks the right bearer token. */
export class AdminUnauthorizedError extends ExactlyOnceError {
  constructor(message = 'missing or wrong bearer token (Authorization: Bearer <token>)') {
    super('EO_ADMIN_UNAUTHORIZED', message);
  }
}

/** The idempotency key an admin request names does not exist. */
export class IdempotencyKeyNotFoundError extends ExactlyOnceError {
  readonly key: string;

  constructor(key: string) {
    super('EO_IDEMPOTENCY_KEY_NOT_FOUND', `idempotency key "${key}" does not exist`);
    this.key = key;
  }
}

/** Creating an idempotency key would overwrite an existing one; nothing was written. */
export class IdempotencyKeyExistsError extends ExactlyOnceError {
  readonly key: string;

  constructor(key: string) {
    super('EO_IDEMPOTENCY_KEY_EXISTS', `idempotency key "${key}" already exists; delete it first to replace it`);
    this.key = key;
  }
}

/** A maintenance (cleanup) run failed. The cause says which step. */
export class MaintenanceError extends ExactlyOnceError {
  constructor(message: string, options?: { cause?: unknown }) {
    super('EO_MAINTENANCE_FAILED', message, options);
  }
}

/** An idempotency key (or an admin record identity) is malformed. `field` names the offending field. */
export class IdempotencyKeyInvalidError extends ExactlyOnceError {
  readonly field: string;

  constructor(field: string, message: string) {
    super('EO_IDEMPOTENCY_KEY_INVALID', `${field}: ${message}`);
    this.field = field;
  }
}

/** The idempotency store (Postgres, Redis) failed an operation; `cause` holds the driver error. */
export class IdempotencyStorageError extends ExactlyOnceError {
  readonly operation: string;

  constructor(operation: string, options: { cause: unknown }) {
    const detail = options.cause instanceof Error ? options.cause.message : String(options.cause);
    super('EO_IDEMPOTENCY_STORAGE', `idempotency store failed to ${operation}: ${detail}`, options);
    this.operation = operation;
  }
}

/** The transactional form needs the Postgres store (`idempotency.storage.type: database`). */
export class IdempotencyTransactionUnsupportedError extends ExactlyOnceError {
  constructor(storageType: string) {
    super(
      'EO_IDEMPOTENCY_NO_TRANSACTION',
      `processInTransaction needs exactly_once.idempotency.storage.type "database" (configured: "${storageType}")`,
    );
  }
}

/**
 * The call lost its idempotency key while the processor ran: the lease lapsed before it could be renewed (event loop
 * blocked, store unreachable) or another caller took the key over. Its result was not stored (the new owner's record
 * is untouched); the processor may have had its effect all the same, which only `processInTransaction` rules out.
 * `cause` holds the processor's own error when it stopped on the abort signal.
 */
export class IdempotencyLeaseLostError extends ExactlyOnceError {
  readonly key: string;
  /** Why the lease counts as lost, e.g. that it ran out before it could be renewed. */
  readonly reason: string;

  constructor(key: string, reason: string, options?: { cause?: unknown }) {
    super('EO_IDEMPOTENCY_LEASE_LOST', `idempotency key "${key}" was lost while processing: ${reason}`, options);
    this.key = key;
    this.reason = reason;
  }
}

/** A `beforeProcessing` hook threw: the processor did not run and the key was released. `cause` is the hook's error. */
export class IdempotencyHookAbortedError extends ExactlyOnceError {
  readonly key: string;

  constructor(key: string, options: { cause: unknown }) {
    const detail = options.cause instanceof Error ? options.cause.message : String(options.cause);
    super('EO_IDEMPOTENCY_HOOK_ABORTED', `beforeProcessing hook aborted idempotency key "${key}": ${detail}`, options);
    this.key = key;
  }
}

/** A mutating admin request while `admin.read_only` is on: refused whatever the token, nothing changed. */
export class AdminReadOnlyError extends ExactlyOnceError {
  constructor() {
    super('EO_ADMIN_READ_ONLY', 'the admin API is read-only (admin.read_only / ADMIN_READ_ONLY); nothing was changed');
  }
}

/**
 * A mutating admin request sent by a page of another origin (its `Origin` or `Sec-Fetch-Site` header says so): a
 * cross-site request forgery, or a page that is not the dashboard. Refused before the token is looked at.
 */
export class AdminForeignOriginError extends ExactlyOnceError {
  readonly origin: string;

  constructor(origin: string) {
    super('EO_ADMIN_FOREIGN_ORIGIN', `writes are accepted only from this server's own pages (Origin: ${origin})`);
    this.origin = origin;
  }
}

/**
 * A request to the admin API or the dashboard whose `Host` names neither an IP address, `localhost` nor an entry of
 * `admin.allowed_hosts`: what a page on another site sends after pointing its own name at this server (DNS
 * rebinding), which the same-origin check alone cannot tell from the dashboard. Refused before anything else.
 */
export class AdminHostNotAllowedError extends ExactlyOnceError {
  readonly host: string;

  constructor(host: string) {
    super(
      'EO_ADMIN_HOST_NOT_ALLOWED',
      `Host ${JSON.stringify(host.slice(0, 200))} is not a name of this server: use its IP address or localhost, or ` +
        'add the name to admin.allowed_hosts (env ADMIN_ALLOWED_HOSTS)',
    );
    this.host = host;
  }
}

/** The outbox event an admin request names does not exist (never written, or deleted by cleanup). */
export class OutboxEventNotFoundError extends ExactlyOnceError {
  readonly id: string;

  constructor(id: string) {
    super('EO_OUTBOX_EVENT_NOT_FOUND', `outbox event "${id}" does not exist`);
    this.id = id;
  }
}

/** The admin server's port is taken (another relay, the demo, another program) when it starts listening. */
export class AdminPortInUseError extends ExactlyOnceError {
  readonly host: string;
  readonly port: number;

  constructor(host: string, port: number, options?: { cause?: unknown }) {
    super(
      'EO_ADMIN_PORT_IN_USE',
      `the admin port ${host.includes(':') ? `[${host}]` : host}:${port} is in use; give this process another with ` +
        '--port N (admin.port), or --port 0 for any free one',
      options,
    );
    this.host = host;
    this.port = port;
  }
}

/**
 * A worker was given no usable handler: `createWorker` without `process` or `processInTransaction`, or an
 * `exactly-once worker --module` file that cannot be loaded or exports neither. `module` names the file, if any.
 */
export class WorkerHandlerError extends ExactlyOnceError {
  readonly module: string | undefined;

  constructor(message: string, module?: string, options?: { cause?: unknown }) {
    super('EO_WORKER_HANDLER', `${module ? `${module}: ` : ''}${message}`, options);
    this.module = module;
  }
}

/** A dead-letter entry an admin request names is not in the dead-letter list (replayed or removed meanwhile). */
export class DeadLetterNotFoundError extends ExactlyOnceError {
  readonly id: string;

  constructor(id: string) {
    super('EO_WORKER_DEAD_LETTER_NOT_FOUND', `no dead-letter entry of job "${id}"`);
    this.id = id;
  }
}
