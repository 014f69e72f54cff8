import { InvalidParameterError } from '../../errors.js';
import { LIST_MAX_LIMIT, type ListOutboxOptions, OUTBOX_STATUSES } from '../../outbox/inspect.js';
import { capPage } from '../page-cap.js';
import {
  type AdminContext,
  type AdminRoute,
  API_PREFIX,
  outboxInspector,
  requireNoBody,
  requireOutbox,
} from '../route.js';
import { backlogJson, outboxEventJson, snakeKeys } from '../serialize.js';
import { Fields, noQuery } from '../validate.js';

const URL = `${API_PREFIX}/outbox`;

const LIST_QUERY = [
  'status',
  'limit',
  'cursor',
  'order',
  'queue',
  'aggregate_type',
  'aggregate_id',
  'event_type',
  'tenant_id',
  'since',
  'until',
] as const;

/** `GET /outbox`'s query as `listOutboxEvents` options; every bad value is a 400 naming its parameter. */
function listFilters(query: unknown, ctx: AdminContext): ListOutboxOptions {
  const q = new Fields(query, 'query', LIST_QUERY);
  const text = (name: string) => q.optionalString(name);
  const { queuePattern, defaultPriority } = ctx.manager.config.outbox;
  const options: ListOutboxOptions = {
    status: q.oneOf('status', OUTBOX_STATUSES),
    limit: q.optionalInt('limit', 1, LIST_MAX_LIMIT),
    cursor: text('cursor'),
    order: q.oneOf('order', ['asc', 'desc'] as const),
    queue: text('queue'),
    aggregateType: text('aggregate_type'),
    aggregateId: text('aggregate_id'),
    eventType: text('event_type'),
    tenantId: text('tenant_id'),
    since: q.optionalTime('since'),
    until: q.optionalTime('until'),
    destinations: { queuePattern, defaultPriority },
  };
  if (options.since && options.until && options.since >= options.until) {
    throw new InvalidParameterError('until', 'must be later than since');
  }
  return Object.fromEntries(Object.entries(options).filter(([, v]) => v !== undefined)) as ListOutboxOptions;
}

/** `POST /outbox` (publish now), `GET /outbox` (inspect), `POST /outbox/retry` (replay failed events). */
export function outboxRoutes(ctx: AdminContext): AdminRoute[] {
  return [
    {
      method: 'POST',
      url: URL,
      access: 'write',
      async handler(request) {
        noQuery(request.query);
        requireNoBody(request.body);
        requireOutbox(ctx);
        return snakeKeys(await ctx.manager.publishOutboxEvents());
      },
    },
    {
      method: 'GET',
      url: URL,
      access: 'read',
      async handler(request) {
        const filters = listFilters(request.query, ctx);
        requireOutbox(ctx);
        const inspector = outboxInspector(ctx);
        // Previews, not payloads: the full payload is read when one event is opened (GET /outbox/events/:id).
        const [page, backlog] = await Promise.all([
          inspector.list({ ...filters, payload: 'preview' }),
          inspector.backlog(),
        ]);
        const { events, nextCursor } = capPage(page.events.map(outboxEventJson), page.nextCursor);
        return { events, next_cursor: nextCursor, backlog: backlogJson(backlog) };
      },
    },
    {
      method: 'POST',
      url: `${URL}/retry`,
      access: 'write',
      async handler(request) {
        noQuery(request.query);
        const b = new Fields(request.body, 'body', ['ids', 'all_failed', 'error']);
        const hasIds = b.has('ids');
        const allFailed = b.raw('all_failed');
        if (allFailed !== undefined && allFailed !== true)
          throw new InvalidParameterError('all_failed', 'must be true');
        // `error` names a group of GET /outbox/failed/groups: its exact text, or null for the events without one.
        const hasError = b.raw('error') !== undefined;
        if ([hasIds, allFailed === true, hasError].filter(Boolean).length !== 1) {
          throw new InvalidParameterError(
            'ids',
            "give one of ids (an array of event ids), all_failed: true, or error (a failed group's error text)",
          );
        }
        requireOutbox(ctx);
        if (hasError) {
          const error = b.raw('error');
          if (error !== null) b.optionalString('error');
          return snakeKeys(await outboxInspector(ctx).retry({ error: error as string | null }));
        }
        if (!hasIds) return snakeKeys(await outboxInspector(ctx).retry({ allFailed: true }));
        const ids = b.raw('ids') as string[];
        const result = await outboxInspector(ctx).retry({ ids });
        const retried = new Set(result.ids);
        const notRetried = [...new Set(ids.map((id) => id.toLowerCase()))].filter((id) => !retried.has(id));
        return { retried: result.retried, ids: result.ids, not_retried: notRetried };
      },
    },
  ];
}
