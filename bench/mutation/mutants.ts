// biome-ignore-all lint/suspicious/noTemplateCurlyInString: mutants quote source text, template placeholders included
/**
 * Hand-made mutants of the core modules: each one is a deliberate bug a reviewer could plausibly miss, and the test
 * files that should notice it. `npm run mutation` (bench/mutation/main.ts) applies one at a time to a copy of the
 * repository and runs its tests; a mutant is killed when they fail.
 *
 * To update: when a module changes, a mutant whose `search` text is gone is reported "stale" (never applied); fix its
 * text or drop it. `search` must occur exactly once in `file`. List the fastest test file that should kill a mutant
 * first: files run in order and the first failure ends the mutant's run.
 */
export interface Mutant {
  /** Stable name, `<module>.<what breaks>`. */
  id: string;
  /** Group for the per-module score in docs/testing.md. */
  module: Module;
  /** Path from the repository root. */
  file: string;
  search: string;
  replace: string;
  /** Test files (from the repository root) expected to fail, fastest first. */
  tests: string[];
  /** The bug in a user's words: what would go wrong. */
  breaks: string;
}

export type Module =
  | 'relay'
  | 'relay SQL'
  | 'publisher'
  | 'publisher Lua'
  | 'writer'
  | 'idempotency service'
  | 'database store'
  | 'lease'
  | 'migrations';

const RELAY = 'src/outbox/relay.ts';
const MARK_PLAN = 'src/outbox/mark-plan.ts';
const DOORBELL = 'src/outbox/doorbell.ts';
const SQL = 'src/outbox/relay-sql.ts';
const PUBLISHER = 'src/publishers/marked-batch.ts';
const LUA = 'src/publishers/lua/publish-jobs.lua';
const WRITER = 'src/outbox/writer.ts';
const VALIDATE = 'src/outbox/validate-event.ts';
const PROCESSOR = 'src/idempotency/service.ts';
const DB_STORE = 'src/idempotency/database-store.ts';
const LEASE = 'src/idempotency/lease.ts';

export const MUTANTS: Mutant[] = [
  // --- relay (relay.ts and its doorbell) ----------------------------------------------------------------------------
  {
    id: 'relay.duplicate-not-marked',
    module: 'relay',
    file: MARK_PLAN,
    search: "if (outcome.kind === 'published' || outcome.kind === 'duplicate') {",
    replace: "if (outcome.kind === 'published') {",
    tests: ['test/relay.crash-window.test.ts'],
    breaks: 'an event already in Redis (pushed by a crashed relay) is never marked published: the outbox stalls',
  },
  {
    id: 'relay.retry-limit-off-by-one',
    module: 'relay',
    file: MARK_PLAN,
    search: 'if (outcome.permanent || attempt > (event.maxRetries ?? policy.maxRetries)) {',
    replace: 'if (outcome.permanent || attempt >= (event.maxRetries ?? policy.maxRetries)) {',
    tests: ['test/relay.poison-event.test.ts'],
    breaks: 'an event gets one attempt fewer than max_retries allows',
  },
  {
    id: 'relay.no-retry-backoff',
    module: 'relay',
    file: MARK_PLAN,
    search: 'const delay = backoffDelay(attempt, policy.retryBackoff);',
    replace: 'const delay = 0;',
    tests: ['test/relay.poison-event.test.ts'],
    breaks: 'a failing event is retried at once, hammering Redis, instead of with growing delays',
  },
  {
    id: 'relay.retries-marked-published',
    module: 'relay',
    file: 'src/outbox/batch-commit.ts',
    search: 'if (seqs.length > 0 && summary.retried + summary.failed === 0) {',
    replace: 'if (seqs.length > 0) {',
    tests: ['test/relay.poison-event.test.ts'],
    breaks: 'an event whose push failed is marked published: lost (G1)',
  },
  {
    id: 'relay.error-not-recorded',
    module: 'relay',
    file: MARK_PLAN,
    search: 'plan.errors.push(error);',
    replace: 'plan.errors.push(null);',
    tests: ['test/relay.poison-event.test.ts'],
    breaks: 'operators never see why an event failed (last_error stays empty)',
  },
  {
    id: 'relay.stop-does-not-drain',
    module: 'relay',
    file: RELAY,
    search: 'await Promise.allSettled(this.#loops);',
    replace: '',
    tests: ['test/relay.shutdown.test.ts'],
    breaks: 'SIGTERM does not wait for the batch in flight',
  },
  {
    id: 'relay.listen-never-reconnects',
    module: 'relay',
    file: DOORBELL,
    search:
      'this.#retry = setTimeout(() => void this.#connect(attempt + 1), backoffDelay(attempt + 1, RECONNECT_BACKOFF));',
    replace: 'this.#retry = undefined;',
    tests: ['test/relay.wakeup.test.ts'],
    breaks: 'issue 15: after the LISTEN connection drops, events wait for poll_interval forever after',
  },
  {
    id: 'relay.notify-ignored',
    module: 'relay',
    file: DOORBELL,
    search: "client.on('notification', () => this.#wakeup.wake());",
    replace: "client.on('notification', () => {});",
    tests: ['test/relay.wakeup.test.ts'],
    breaks: 'NOTIFY never wakes the relay: every event waits for poll_interval',
  },

  // --- relay SQL ----------------------------------------------------------------------------------------------------
  {
    id: 'sql.no-aggregate-lock',
    module: 'relay SQL',
    file: SQL,
    search: "ELSE pg_try_advisory_xact_lock(${LOCK_SPACE}, hashtext(c.aggregate_type || '/' || c.aggregate_id))",
    replace: 'ELSE true',
    tests: ['test/relay.ordering.test.ts'],
    breaks: 'two relays can hold one aggregate at once and publish its events out of order (G3)',
  },
  {
    id: 'sql.no-claim-timeout',
    module: 'relay SQL',
    file: SQL,
    search: '`SET LOCAL idle_in_transaction_session_timeout = ${int(options.claimTimeoutMs)}`',
    replace: '`SET LOCAL idle_in_transaction_session_timeout = 0`',
    tests: ['test/relay.stuck-claim.test.ts'],
    breaks: "a wedged relay keeps its claim forever: its aggregates' events are never delivered (G5)",
  },
  {
    id: 'sql.retry-hold-reversed',
    module: 'relay SQL',
    file: SQL,
    search: 'h.seq < ${row}.seq AND h.next_attempt_at > now()',
    replace: 'h.seq > ${row}.seq AND h.next_attempt_at > now()',
    tests: ['test/relay.poison-event.test.ts'],
    breaks: 'later events of an aggregate overtake its event that waits for a retry (G3)',
  },
  {
    id: 'sql.retry-count-frozen',
    module: 'relay SQL',
    file: SQL,
    search: "retry_count = o.retry_count + CASE WHEN r.status = 'published' THEN 0 ELSE 1 END,",
    replace: 'retry_count = o.retry_count,',
    tests: ['test/relay.poison-event.test.ts'],
    breaks: 'a poison event is retried forever and never ends failed',
  },
  {
    id: 'sql.claim-order-reversed',
    module: 'relay SQL',
    file: SQL,
    search: '  ORDER BY o.seq\n  FOR UPDATE SKIP LOCKED',
    replace: '  ORDER BY o.seq DESC\n  FOR UPDATE SKIP LOCKED',
    tests: ['test/outbox.writer.test.ts', 'test/relay.ordering.test.ts'],
    breaks: 'a batch is pushed newest first: consumers see each aggregate backwards (G3)',
  },

  // --- publisher (redis-list.ts, job.ts) ----------------------------------------------------------------------------
  {
    id: 'publisher.dedup-window-1000x',
    module: 'publisher',
    file: PUBLISHER,
    search: 'Math.round(options.dedupWindowMs ?? 86_400_000)',
    replace: 'Math.round((options.dedupWindowMs ?? 86_400_000) * 1000)',
    tests: ['test/publisher.dedup-window.test.ts'],
    breaks: 'issue 15: dedup markers live 1000x longer than dedup_window (milliseconds read as seconds)',
  },
  {
    id: 'publisher.duplicate-reported-as-published',
    module: 'publisher',
    file: PUBLISHER,
    search: "else if (reply === 0) outcomes[job.index] = { kind: 'duplicate' };",
    replace: "else if (reply === 0) outcomes[job.index] = { kind: 'published' };",
    tests: ['test/relay.crash-window.test.ts'],
    breaks: 'a second push stopped by its marker is reported as a fresh push: duplicates are never counted (G2)',
  },
  {
    id: 'publisher.default-priority-ignored',
    module: 'publisher',
    file: PUBLISHER,
    search: "this.#priority = options.defaultPriority ?? 'low';",
    replace: "this.#priority = 'low';",
    tests: ['test/outbox.writer.test.ts', 'test/publisher.job-shape.test.ts'],
    breaks: 'outbox.default_priority is ignored: events without a priority header always go to the low list',
  },
  {
    id: 'publisher.cluster-one-group',
    module: 'publisher',
    file: 'src/publishers/batch-plan.ts',
    search: 'const slot = options.cluster ? keySlot(listKey) : 0;',
    replace: 'const slot = 0;',
    tests: ['test/publisher.redis-cluster.test.ts'],
    breaks: 'on Redis Cluster a batch spanning slots is one script call: CROSSSLOT, nothing is published',
  },
  {
    id: 'publisher.filesize-not-int64',
    module: 'publisher',
    file: 'src/publishers/job.ts',
    search: '`,"filesize":${int64Text(event.filesize)}`',
    replace: '`,"filesize":${event.filesize ?? 0}`',
    tests: ['test/publisher.job-shape.test.ts'],
    breaks: 'issue 9: a filesize like 1e+21 reaches Go workers, which drop the job',
  },

  // --- publisher Lua ------------------------------------------------------------------------------------------------
  {
    id: 'lua.marker-without-nx',
    module: 'publisher Lua',
    file: LUA,
    search: "redis.pcall('SET', marker, '1', 'NX', 'PX', window)",
    replace: "redis.pcall('SET', marker, '1', 'PX', window)",
    tests: ['test/relay.crash-window.test.ts', 'test/relay.ordering.test.ts'],
    breaks: 'the dedup marker never stops a second push: a relay crash between push and COMMIT duplicates jobs (G2)',
  },
  {
    id: 'lua.failed-push-keeps-marker',
    module: 'publisher Lua',
    file: LUA,
    search: "redis.call('DEL', marker)",
    replace: '-- marker kept',
    tests: ['test/publisher.event-errors.test.ts', 'test/relay.poison-event.test.ts'],
    breaks: 'after a failed push the retry finds the marker and counts the event as published: lost (G1)',
  },
  {
    id: 'lua.failure-does-not-hold-aggregate',
    module: 'publisher Lua',
    file: LUA,
    search: "redis.call('DEL', marker)\n        held[agg] = true",
    replace: "redis.call('DEL', marker)",
    tests: ['test/publisher.event-errors.test.ts', 'test/relay.poison-event.test.ts'],
    breaks: 'events after a failed one in its aggregate are pushed ahead of it (G3)',
  },

  // --- writer (writer.ts, validate-event.ts) ------------------------------------------------------------------------
  {
    id: 'writer.pool-accepted',
    module: 'writer',
    file: WRITER,
    search: 'if (handle) throw new OutboxTransactionRequiredError(handle);',
    replace: '',
    tests: ['test/outbox.writer-transaction.test.ts'],
    breaks: 'issue 9: storeInOutbox(pool) autocommits, so an event of a rolled-back transaction is published (G1)',
  },
  {
    id: 'writer.duplicate-id-in-batch',
    module: 'writer',
    file: WRITER,
    search: 'if (first !== undefined) throw new OutboxDuplicateIdError(id, index(i), first);',
    replace: '',
    tests: ['test/outbox.writer-validation.test.ts'],
    breaks: 'the same id twice in one batch reaches Postgres (raw error, or half a batch)',
  },
  {
    id: 'writer.id-case-kept',
    module: 'writer',
    file: WRITER,
    search: 'const id = (e.id ?? uuidv7()).toLowerCase();',
    replace: 'const id = e.id ?? uuidv7();',
    tests: ['test/outbox.writer-validation.test.ts'],
    breaks: 'issue 9: an uppercase UUID is stored lower-cased but returned as given (the event differs from its row)',
  },
  {
    id: 'validate.lone-surrogate-accepted',
    module: 'writer',
    file: VALIDATE,
    search: 'if (LONE_SURROGATE.test(value)) fail(',
    replace: 'if (false) fail(',
    tests: ['test/outbox.writer-validation.test.ts'],
    breaks: "issue 9: a lone surrogate reaches jsonb: a raw 22P02 that aborts the caller's transaction (G6)",
  },
  {
    id: 'validate.aggregate-id-optional',
    module: 'writer',
    file: VALIDATE,
    search: "requiredString(e.aggregateId, 'aggregateId', fail);",
    replace: "optionalString(e.aggregateId, 'aggregateId', fail);",
    tests: ['test/outbox.writer.test.ts'],
    breaks: 'an event without aggregateId gets a raw NOT NULL error instead of one naming the field (G6)',
  },
  {
    id: 'validate.depth-off-by-one',
    module: 'writer',
    file: VALIDATE,
    search: 'if (depth >= MAX_JSON_DEPTH) fail(',
    replace: 'if (depth > MAX_JSON_DEPTH) fail(',
    tests: ['test/outbox.writer-validation.test.ts'],
    breaks: 'the documented nesting limit (100) is not the one enforced',
  },

  // --- idempotency service (service.ts) -----------------------------------------------------------------------------
  {
    id: 'service.duplicate-reported-as-first',
    module: 'idempotency service',
    file: PROCESSOR,
    search: 'return { duplicate: true, result: outcome.record.result as T };',
    replace: 'return { duplicate: false, result: outcome.record.result as T };',
    tests: ['test/idempotency.store-behaviour.test.ts'],
    breaks: 'a duplicate is reported as a first run: callers repeat side effects they guard on `duplicate`',
  },
  {
    id: 'service.fingerprint-ignored',
    module: 'idempotency service',
    file: PROCESSOR,
    search: 'if (fingerprint !== null && stored !== null && stored !== fingerprint) {',
    replace: 'if (false) {',
    tests: ['test/idempotency.store-behaviour.test.ts'],
    breaks: 'a different request body under the same key gets the first one`s result instead of a mismatch error',
  },
  {
    id: 'service.lost-lease-accepted',
    module: 'idempotency service',
    file: PROCESSOR,
    search: 'if (!(await this.completeWithRetry(ref, claim, ran.json))) {',
    replace: 'if (!(await this.completeWithRetry(ref, claim, ran.json)) && false) {',
    tests: ['test/idempotency.lease-loss.test.ts'],
    breaks: 'issue 9: a call whose lease was taken over returns duplicate:false although a second process ran (G4)',
  },

  // --- database store -----------------------------------------------------------------------------------------------
  {
    id: 'db.lapsed-lease-not-taken-over',
    module: 'database store',
    file: DB_STORE,
    search:
      "WHERE (k.status = 'completed' AND k.expires_at <= now())\n               OR (k.status = 'in_progress' AND k.lease_expires_at <= now())",
    replace: "WHERE (k.status = 'completed' AND k.expires_at <= now())",
    tests: ['test/idempotency.crash-recovery.test.ts'],
    breaks: "a crashed worker's key is stuck until its TTL (hours), not its lease (G5)",
  },
  {
    id: 'db.expired-key-not-reclaimed',
    module: 'database store',
    file: DB_STORE,
    search: "WHERE (k.status = 'completed' AND k.expires_at <= now())\n               OR (k.status",
    replace: 'WHERE (k.status',
    tests: ['test/idempotency.store-behaviour.test.ts'],
    breaks: 'an expired key never runs again: it answers "duplicate" forever',
  },
  {
    id: 'db.completion-not-fenced',
    module: 'database store',
    file: DB_STORE,
    search:
      "expires_at = clock_timestamp() + $6::float8 * interval '1 millisecond'\n        WHERE ${pk} AND claim_token = $4",
    replace:
      "expires_at = clock_timestamp() + $6::float8 * interval '1 millisecond'\n        WHERE ${pk} AND (claim_token = $4 OR true)",
    tests: ['test/idempotency.lease-loss.test.ts'],
    breaks: "issue 9: a caller whose lease was taken over overwrites the new owner's record (G4)",
  },
  {
    id: 'db.cleanup-deletes-live-keys',
    module: 'database store',
    file: DB_STORE,
    search: "SELECT ctid FROM ${t} WHERE ${over('')} ORDER BY expires_at",
    replace: 'SELECT ctid FROM ${t} WHERE true ORDER BY expires_at',
    tests: ['test/idempotency.cleanup-batches.test.ts', 'test/idempotency.store-behaviour.test.ts'],
    breaks: 'cleanup deletes live keys: their jobs run again (G4)',
  },
  {
    id: 'db.renew-does-not-extend',
    module: 'database store',
    file: DB_STORE,
    search: 'SET lease_expires_at = v.lease_end, expires_at',
    replace: 'SET lease_expires_at = lease_expires_at, expires_at',
    tests: ['test/idempotency.long-processor.test.ts', 'test/idempotency.lease-loss.test.ts'],
    breaks: 'a job longer than its lease is taken over by a duplicate while it still runs (G4)',
  },

  // --- lease --------------------------------------------------------------------------------------------------------
  {
    id: 'lease.never-renewed',
    module: 'lease',
    file: LEASE,
    search: 'timer = setInterval(check, ',
    replace: 'timer = setInterval(() => {}, ',
    tests: ['test/idempotency.lease-loss.test.ts'],
    breaks: 'long jobs lose their key after one lease and a duplicate runs them again (G4)',
  },
  {
    id: 'lease.error-does-not-release',
    module: 'lease',
    file: LEASE,
    search: '.release()\n      .catch((releaseErr)',
    replace: '.renew()\n      .catch((releaseErr)',
    tests: ['test/idempotency.store-behaviour.test.ts'],
    breaks: 'a processor error keeps the key in progress: the retry waits for the lease instead of running',
  },
  {
    id: 'lease.signal-never-fires',
    module: 'lease',
    file: LEASE,
    search: 'controller.abort(new IdempotencyLeaseLostError(ref.keyId, reason));',
    replace: '',
    tests: ['test/idempotency.lease-loss.test.ts'],
    breaks: 'issue 9: a processor is never told its lease was lost',
  },
  {
    id: 'lease.renewal-does-not-count',
    module: 'lease',
    file: LEASE,
    search: 'if (held) validUntil = Math.max(validUntil, sentAt + lease.leaseMs);',
    replace: 'if (held) validUntil = Math.max(validUntil, lease.claimedAt + lease.leaseMs);',
    tests: ['test/idempotency.long-processor.test.ts', 'test/idempotency.lease-loss.test.ts'],
    breaks: 'a job that keeps renewing still has its signal fire after one lease',
  },

  // --- migrations ---------------------------------------------------------------------------------------------------
  {
    id: 'migration.doorbell-down-broken',
    module: 'migrations',
    file: 'migrations/0004_outbox_doorbell.ts',
    search: "    BEGIN\n      PERFORM pg_notify('exactly_once_outbox', '');\n      RETURN NULL;",
    replace: '    BEGIN\n      RETURN NULL;',
    tests: ['test/migrations.test.ts'],
    breaks: 'issue 15: migrating down past 0004 leaves a doorbell function that never rings',
  },
];
