import type { DestinationRule } from './inspect.js';

/**
 * The Redis key an event goes to: its own `queue`, else `queue_pattern` with `{priority}` replaced by its `priority`
 * header when that is `high` or `low`, else by the default priority. The SQL form, for queries that group by
 * destination, is `destinationSql` (src/outbox/postgres/queries.ts).
 *
 * @example destinationOf({ queue: null, priority: 'high' }, { queuePattern: 'jobqueue:{priority}_priority', defaultPriority: 'low' })
 * // 'jobqueue:high_priority'
 */
export function destinationOf(event: { queue: string | null; priority: string | null }, rule: DestinationRule): string {
  if (event.queue !== null) return event.queue;
  const priority = event.priority === 'high' || event.priority === 'low' ? event.priority : rule.defaultPriority;
  return rule.queuePattern.replaceAll('{priority}', priority);
}
