import { IdempotencyKeyInvalidError, IdempotencyKeyNotFoundError, InvalidParameterError } from '../../errors.js';
import { type AdminContext, type AdminRoute, API_PREFIX, requireIdempotency } from '../route.js';
import { dedupStatsJson, recordJson } from '../serialize.js';
import { Fields, MAX_TTL_MS } from '../validate.js';

const URL = `${API_PREFIX}/idempotency`;
const KEY_QUERY = ['queue', 'key', 'tenant'] as const;
const BODY_FIELDS = ['queue_name', 'tenant_id', 'key_id', 'value', 'ttl'] as const;
const BODY_NAMES: Record<string, string> = { queueName: 'queue_name', tenantId: 'tenant_id', keyId: 'key_id' };

function keyFromQuery(query: unknown) {
  const q = new Fields(query, 'query', KEY_QUERY);
  return { queue: q.requiredString('queue'), key: q.requiredString('key'), tenant: q.optionalString('tenant') ?? '' };
}

/** `GET /stats` and `GET|POST|DELETE /idempotency`. */
export function idempotencyRoutes(ctx: AdminContext): AdminRoute[] {
  return [
    {
      method: 'GET',
      url: `${API_PREFIX}/stats`,
      access: 'read',
      async handler(request) {
        const q = new Fields(request.query, 'query', ['queue', 'tenant']);
        const queue = q.requiredString('queue');
        const tenant = q.optionalString('tenant');
        return dedupStatsJson(await requireIdempotency(ctx).getDedupStats(queue, tenant));
      },
    },
    {
      method: 'GET',
      url: URL,
      access: 'read',
      async handler(request) {
        const { queue, key, tenant } = keyFromQuery(request.query);
        const service = requireIdempotency(ctx);
        const record = await service.getRecord(queue, tenant, key);
        if (!record) throw new IdempotencyKeyNotFoundError(key);
        const cached = service.isCached ? await service.isCached(queue, tenant, key) : null;
        return { ...recordJson(record), cached };
      },
    },
    {
      method: 'POST',
      url: URL,
      access: 'write',
      async handler(request, reply) {
        const b = new Fields(request.body, 'body', BODY_FIELDS);
        const queueName = b.requiredString('queue_name');
        const keyId = b.requiredString('key_id');
        const tenantId = b.optionalString('tenant_id') ?? '';
        const ttlMs = b.optionalDuration('ttl', MAX_TTL_MS);
        const service = requireIdempotency(ctx);
        try {
          const record = await service.createRecord({
            queueName,
            tenantId,
            keyId,
            value: b.has('value') ? b.optionalJson('value') : null,
            ...(ttlMs === undefined ? {} : { ttlMs }),
          });
          return reply.status(201).send(recordJson(record));
        } catch (err) {
          if (err instanceof IdempotencyKeyInvalidError) {
            const field = BODY_NAMES[err.field] ?? err.field;
            throw new InvalidParameterError(field, err.message.replace(`${err.field}: `, ''), { cause: err });
          }
          throw err;
        }
      },
    },
    {
      method: 'DELETE',
      url: URL,
      access: 'write',
      async handler(request, reply) {
        const { queue, key, tenant } = keyFromQuery(request.query);
        const deleted = await requireIdempotency(ctx).deleteRecord(queue, tenant, key);
        if (!deleted) throw new IdempotencyKeyNotFoundError(key);
        return reply.status(204).send();
      },
    },
  ];
}
