import type pg from 'pg';
import { fromPg, type SqlExecutor } from '../db/executor.js';
import { NotMigratedError, PgErrorCode, sqlState } from '../errors.js';
import { fromJsonbValue, toJsonbText } from './jsonb-codec.js';
import type { KeyRef } from './keys.js';
import type {
  ClaimOutcome,
  ClaimRequest,
  IdempotencyRecord,
  IdempotencyStore,
  StatsDelta,
  StoredStats,
} from './types.js';

interface RecordRow extends Record<string, unknown> {
  queue_name: string;
  tenant_id: string;
  key_id: string;
  status: 'in_progress' | 'completed';
  result: unknown;
  fingerprint: string | null;
  created_at: Date;
  expires_at: Date;
  lease_expires_at: Date | null;
}

/** The table migrations/0002 creates: `table_name`'s default. */
const MIGRATED_TABLE = 'idempotency_keys';
const COLUMNS = 'queue_name, tenant_id, key_id, status, result, fingerprint, created_at, expires_at, lease_expires_at';

/**
 * Postgres as the source of truth. Every decision is one statement keyed on the primary key, so the unique index is
 * the only arbiter: `INSERT ... ON CONFLICT DO UPDATE ... WHERE <expired or lease over>` either claims (fresh or
 * takeover) or leaves the row alone, and Postgres serialises concurrent claimants on the row.
 *
 * Statements take an optional executor so the transactional form can run the same SQL inside the caller's transaction.
 * Completion and release are fenced by `claim_token` (G4): a caller whose lease lapsed and was taken over changes
 * nothing. Results go through jsonb-codec.ts, so results jsonb would refuse (NUL, lone surrogates) are stored too.
 *
 * G4: an in-progress row is governed by its lease alone. Its `expires_at` is kept at or after `lease_expires_at`
 * (the claim and every renewal push it out), and claim, create and cleanup end an in-progress row only once its lease
 * lapsed. Otherwise a processor that runs longer than the key's TTL, renewing its lease all along, would lose its key
 * to a concurrent duplicate (a second run) or to cleanup.
 */
export class DatabaseStore implements IdempotencyStore {
  readonly kind = 'database' as const;
  readonly table: string;
  private readonly statsTable: string;
  private readonly sql: {
    claim: string;
    renew: string;
    complete: string;
    release: string;
    get: string;
    create: string;
    delete: string;
    cleanup: string;
  };
  private readonly exec: SqlExecutor;

  /** `table` must be a validated SQL identifier (the config schema guarantees it). */
  constructor(
    private readonly pool: pg.Pool,
    table: string,
  ) {
    this.table = table;
    this.statsTable = `${table}_stats`;
    this.exec = fromPg(pool);
    const t = `"${table}"`;
    const pk = 'queue_name = $1 AND tenant_id = $2 AND key_id = $3';
    const live = `NOT ${over('')}`;
    this.sql = {
      // One round trip for both answers: the CTE claims (insert, or takeover of an expired completed row or a lapsed
      // lease), and the second branch returns the row that blocked the claim. A row committed by a concurrent claimant
      // after this statement's snapshot is invisible to the second branch; the caller sees no row and simply claims
      // again. G4: an in-progress row is taken over only when its lease lapsed, never because its TTL ran out, and a
      // new claim's expiry is no earlier than its lease end (a key's TTL may be shorter than the lease).
      claim: `
        WITH claimed AS (
          INSERT INTO ${t} AS k (queue_name, tenant_id, key_id, status, fingerprint, claim_token, lease_expires_at,
                                 created_at, expires_at)
          VALUES ($1, $2, $3, 'in_progress', $4, $5, now() + $6::float8 * interval '1 millisecond', now(),
                  now() + greatest($6::float8, $7::float8) * interval '1 millisecond')
          ON CONFLICT (queue_name, tenant_id, key_id) DO UPDATE
            SET status = 'in_progress', result = NULL, fingerprint = EXCLUDED.fingerprint,
                claim_token = EXCLUDED.claim_token, lease_expires_at = EXCLUDED.lease_expires_at,
                created_at = EXCLUDED.created_at, expires_at = EXCLUDED.expires_at
            WHERE (k.status = 'completed' AND k.expires_at <= now())
               OR (k.status = 'in_progress' AND k.lease_expires_at <= now())
          RETURNING 1
        )
        SELECT true AS claimed, NULL AS ${COLUMNS.split(', ').join(', NULL AS ')} FROM claimed
        UNION ALL
        SELECT false, ${COLUMNS} FROM ${t} WHERE ${pk} AND NOT EXISTS (SELECT 1 FROM claimed)`,
      // G4: the row's expiry moves with the lease (never back), so the record outlives its TTL while the processor runs.
      renew: `
        UPDATE ${t} SET lease_expires_at = v.lease_end, expires_at = greatest(expires_at, v.lease_end)
        FROM (SELECT clock_timestamp() + $5::float8 * interval '1 millisecond' AS lease_end) AS v
        WHERE ${pk} AND claim_token = $4 AND status = 'in_progress' RETURNING 1`,
      complete: `
        UPDATE ${t} SET status = 'completed', result = $5::jsonb, claim_token = NULL, lease_expires_at = NULL,
                        expires_at = clock_timestamp() + $6::float8 * interval '1 millisecond'
        WHERE ${pk} AND claim_token = $4 AND status = 'in_progress' RETURNING fingerprint`,
      release: `DELETE FROM ${t} WHERE ${pk} AND claim_token = $4 AND status = 'in_progress' RETURNING 1`,
      get: `SELECT ${COLUMNS} FROM ${t} WHERE ${pk} AND ${live}`,
      create: `
        INSERT INTO ${t} AS k (queue_name, tenant_id, key_id, status, result, created_at, expires_at)
        VALUES ($1, $2, $3, 'completed', $4::jsonb, now(), now() + $5::float8 * interval '1 millisecond')
        ON CONFLICT (queue_name, tenant_id, key_id) DO UPDATE
          SET status = 'completed', result = EXCLUDED.result, fingerprint = NULL, claim_token = NULL,
              lease_expires_at = NULL, created_at = EXCLUDED.created_at, expires_at = EXCLUDED.expires_at
          WHERE ${over('k.')}
        RETURNING ${COLUMNS}`,
      delete: `DELETE FROM ${t} WHERE ${pk} RETURNING ${live} AS live`,
      // Small autocommit batches keep each lock short; SKIP LOCKED steps around rows a claimant is updating, and the
      // TID lookup makes the DELETE touch exactly the rows the index scan picked. An in-progress row under a live lease
      // is never deleted (G4), whatever its expiry says.
      cleanup: `
        DELETE FROM ${t} WHERE ctid = ANY (ARRAY(
          SELECT ctid FROM ${t} WHERE ${over('')} ORDER BY expires_at LIMIT $1 FOR UPDATE SKIP LOCKED))
        RETURNING 1`,
    };
  }

  async claim(ref: KeyRef, request: ClaimRequest, exec: SqlExecutor = this.exec): Promise<ClaimOutcome> {
    // Bounded only as a guard: each retry means a concurrent claimant committed in between, which cannot go on forever.
    for (let attempt = 0; attempt < 100; attempt++) {
      const { rows } = await this.run<RecordRow & { claimed: boolean }>(exec, this.sql.claim, [
        ...pkParams(ref),
        request.fingerprint,
        request.token,
        request.leaseMs,
        request.ttlMs,
      ]);
      const row = rows[0];
      if (!row) continue; // the blocking row appeared after our snapshot (see the comment on the statement)
      if (row.claimed) return { kind: 'claimed' };
      const record = toRecord(row);
      return record.status === 'completed' ? { kind: 'completed', record } : { kind: 'in_progress', record };
    }
    throw new Error(`claim of "${ref.keyId}" kept racing with concurrent claimants`);
  }

  async renew(ref: KeyRef, token: string, leaseMs: number): Promise<boolean> {
    const { rows } = await this.run(this.exec, this.sql.renew, [...pkParams(ref), token, leaseMs]);
    return rows.length > 0;
  }

  async complete(
    ref: KeyRef,
    token: string,
    resultJson: string,
    ttlMs: number,
    exec: SqlExecutor = this.exec,
  ): Promise<boolean> {
    return (await this.completeClaim(ref, token, resultJson, ttlMs, exec)) !== undefined;
  }

  /** `complete`, answering the fingerprint the key was claimed with (the hot cache keeps a copy); `undefined` when lost. */
  async completeClaim(
    ref: KeyRef,
    token: string,
    resultJson: string,
    ttlMs: number,
    exec: SqlExecutor = this.exec,
  ): Promise<{ fingerprint: string | null } | undefined> {
    const { rows } = await this.run<{ fingerprint: string | null }>(exec, this.sql.complete, [
      ...pkParams(ref),
      token,
      toJsonbText(resultJson),
      ttlMs,
    ]);
    return rows[0];
  }

  async release(ref: KeyRef, token: string): Promise<boolean> {
    const { rows } = await this.run(this.exec, this.sql.release, [...pkParams(ref), token]);
    return rows.length > 0;
  }

  async get(ref: KeyRef): Promise<IdempotencyRecord | undefined> {
    const { rows } = await this.run<RecordRow>(this.exec, this.sql.get, pkParams(ref));
    return rows[0] ? toRecord(rows[0]) : undefined;
  }

  async create(ref: KeyRef, valueJson: string, ttlMs: number): Promise<IdempotencyRecord | undefined> {
    const { rows } = await this.run<RecordRow>(this.exec, this.sql.create, [
      ...pkParams(ref),
      toJsonbText(valueJson),
      ttlMs,
    ]);
    return rows[0] ? toRecord(rows[0]) : undefined;
  }

  async delete(ref: KeyRef): Promise<boolean> {
    const { rows } = await this.run<{ live: boolean }>(this.exec, this.sql.delete, pkParams(ref));
    return rows[0]?.live === true;
  }

  async cleanup(batchSize: number): Promise<number> {
    let removed = 0;
    for (;;) {
      const { rows } = await this.run(this.exec, this.sql.cleanup, [batchSize]);
      removed += rows.length;
      if (rows.length < batchSize) return removed;
    }
  }

  async countKeys(queueName?: string, tenantId?: string): Promise<number> {
    const { text, params } = filtered(
      `SELECT count(*)::int8 AS n FROM "${this.table}" WHERE NOT ${over('')}`,
      queueName,
      tenantId,
    );
    const { rows } = await this.run<{ n: string }>(this.exec, text, params);
    return Number(rows[0]?.n ?? 0);
  }

  async addStats(deltas: readonly StatsDelta[]): Promise<void> {
    if (deltas.length === 0) return;
    // Sorted, so two processes flushing overlapping counters lock the rows in the same order (no deadlock).
    const sorted = [...deltas].sort((a, b) =>
      a.queueName === b.queueName ? cmp(a.tenantId, b.tenantId) : cmp(a.queueName, b.queueName),
    );
    await this.run(
      this.exec,
      `INSERT INTO "${this.statsTable}" AS s (queue_name, tenant_id, total_requests, duplicates_avoided, updated_at)
       SELECT q, t, r, d, now() FROM unnest($1::text[], $2::text[], $3::int8[], $4::int8[]) WITH ORDINALITY AS u(q, t, r, d, i)
       ORDER BY i
       ON CONFLICT (queue_name, tenant_id) DO UPDATE
         SET total_requests = s.total_requests + EXCLUDED.total_requests,
             duplicates_avoided = s.duplicates_avoided + EXCLUDED.duplicates_avoided,
             updated_at = EXCLUDED.updated_at`,
      [
        sorted.map((d) => d.queueName),
        sorted.map((d) => d.tenantId),
        sorted.map((d) => d.requests),
        sorted.map((d) => d.duplicates),
      ],
    );
  }

  async readStats(queueName: string, tenantId?: string): Promise<StoredStats> {
    const { text, params } = filtered(
      `SELECT coalesce(sum(total_requests), 0)::int8 AS r, coalesce(sum(duplicates_avoided), 0)::int8 AS d,
              max(updated_at) AS u
       FROM "${this.statsTable}" WHERE true`,
      queueName,
      tenantId,
    );
    const { rows } = await this.run<{ r: string; d: string; u: Date | null }>(this.exec, text, params);
    const row = rows[0];
    return {
      totalRequests: Number(row?.r ?? 0),
      duplicatesAvoided: Number(row?.d ?? 0),
      lastUpdated: row?.u ?? null,
    };
  }

  /** The pool is the service's to close. */
  async close(): Promise<void> {}

  /** For the transactional form: a pool client to run a transaction on. */
  connect(): Promise<pg.PoolClient> {
    return this.pool.connect();
  }

  /** Only the default table comes from the migrations (migrations/0002 reads no config); another is the operator's. */
  private missingHint(): string | undefined {
    if (this.table === MIGRATED_TABLE) return undefined;
    return (
      `\`exactly-once migrate\` creates only "${MIGRATED_TABLE}": create "${this.table}" and "${this.statsTable}" ` +
      'with the DDL in docs/operations.md ("The idempotency table under another name")'
    );
  }

  private async run<R extends Record<string, unknown>>(
    exec: SqlExecutor,
    text: string,
    params: readonly unknown[],
  ): Promise<{ rows: R[] }> {
    try {
      return await exec.query<R>(text, params);
    } catch (err) {
      if (sqlState(err) === PgErrorCode.undefinedTable)
        throw new NotMigratedError(this.table, { cause: err, hint: this.missingHint() });
      throw err;
    }
  }
}

/**
 * G4: a row is over when its TTL ran out and, while in progress, its lease too. `expires_at` alone would do given the
 * invariant on the class; the lease term keeps a row written without it (by an older version) safe as well.
 * `alias` is the table alias with its dot (`'k.'`), or `''`.
 */
function over(alias: string): string {
  return `(${alias}expires_at <= now() AND (${alias}status = 'completed' OR ${alias}lease_expires_at <= now()))`;
}

function pkParams(ref: KeyRef): unknown[] {
  return [ref.queueName, ref.tenantId, ref.keyId];
}

function filtered(base: string, queueName?: string, tenantId?: string): { text: string; params: unknown[] } {
  const params: unknown[] = [];
  let text = base;
  if (queueName !== undefined) {
    params.push(queueName);
    text += ` AND queue_name = $${params.length}`;
  }
  if (tenantId !== undefined) {
    params.push(tenantId);
    text += ` AND tenant_id = $${params.length}`;
  }
  return { text, params };
}

function toRecord(row: RecordRow): IdempotencyRecord {
  return {
    queueName: row.queue_name,
    tenantId: row.tenant_id,
    keyId: row.key_id,
    status: row.status,
    result: fromJsonbValue(row.result),
    fingerprint: row.fingerprint,
    createdAt: row.created_at,
    expiresAt: row.expires_at,
    leaseExpiresAt: row.lease_expires_at,
  };
}

function cmp(a: string, b: string): number {
  return a < b ? -1 : a > b ? 1 : 0;
}
