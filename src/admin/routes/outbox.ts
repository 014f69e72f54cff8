import { InvalidParameterError } from '../../errors.js';
import {
  LIST_MAX_LIMIT,
  listOutboxEvents,
  OUTBOX_STATUSES,
  outboxBacklog,
  retryOutboxEvents,
} from '../../outbox/inspect.js';
import { capPage } from '../page-cap.js';
import { type AdminContext, type AdminRoute, API_PREFIX, requireNoBody, requireOutbox } from '../route.js';
import { backlogJson, outboxEventJson, snakeKeys } from '../serialize.js';
import { Fields, noQuery } from '../validate.js';

const URL = `${API_PREFIX}/outbox`;

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
        const q = new Fields(request.query, 'query', ['status', 'limit', 'cursor']);
        const status = q.oneOf('status', OUTBOX_STATUSES);
        const limit = q.optionalInt('limit', 1, LIST_MAX_LIMIT);
        const cursor = q.optionalString('cursor');
        requireOutbox(ctx);
        const [page, backlog] = await Promise.all([
          listOutboxEvents(ctx.readPool, {
            ...(status ? { status } : {}),
            ...(limit ? { limit } : {}),
            ...(cursor !== undefined ? { cursor } : {}),
          }),
          outboxBacklog(ctx.readPool),
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
        const b = new Fields(request.body, 'body', ['ids', 'all_failed']);
        const hasIds = b.has('ids');
        const allFailed = b.raw('all_failed');
        if (allFailed !== undefined && allFailed !== true)
          throw new InvalidParameterError('all_failed', 'must be true');
        if (hasIds === (allFailed === true)) {
          throw new InvalidParameterError('ids', 'give either ids (an array of event ids) or all_failed: true');
        }
        requireOutbox(ctx);
        if (!hasIds) return snakeKeys(await retryOutboxEvents(ctx.manager.pool, { allFailed: true }));
        const ids = b.raw('ids') as string[];
        const result = await retryOutboxEvents(ctx.manager.pool, { ids });
        const retried = new Set(result.ids);
        const notRetried = [...new Set(ids.map((id) => id.toLowerCase()))].filter((id) => !retried.has(id));
        return { retried: result.retried, ids: result.ids, not_retried: notRetried };
      },
    },
  ];
}
