import { outboxEventJson } from '../../admin/serialize.js';
import { InvalidParameterError } from '../../errors.js';
import { LIST_MAX_LIMIT, OUTBOX_STATUSES } from '../../outbox/inspect.js';
import type { OutboxEvent, OutboxStatus } from '../../outbox/types.js';
import { type Command, parseFlags, UsageError } from '../command.js';
import { operatorContext, output } from './operator-context.js';

const USAGE = `Usage: exactly-once outbox <list|retry> [options] [--config FILE]

  outbox list [--status pending|published|failed] [--limit N] [--cursor C] [--json]
      Events in write order, oldest first (default: 50 of every status). Prints the cursor of the
      next page when there is one.

  outbox retry <event-id>... | --all-failed
      Replay failed (dead) events: back to pending, retry count 0, due now; relays are woken at once.
      Events that are not failed are left alone and reported.`;

export const outboxCommand: Command = {
  name: 'outbox',
  usage: USAGE,
  async run(argv) {
    const [action, ...rest] = argv;
    if (action === '--help' || action === '-h') {
      console.log(USAGE);
      return 0;
    }
    if (action === undefined) {
      // A usage error like any other: on stderr, so `outbox > file` never writes the usage into the file.
      console.error(USAGE);
      return 2;
    }
    if (action === 'list') return list(rest);
    if (action === 'retry') return retry(rest);
    throw new UsageError(`unknown outbox action "${action}"`, { showUsage: true });
  },
};

async function list(argv: string[]): Promise<number> {
  const { values } = parseFlags(argv, {
    status: { type: 'string', short: 's' },
    limit: { type: 'string', short: 'n' },
    cursor: { type: 'string' },
    json: { type: 'boolean' },
  });
  if (values.help) {
    console.log(USAGE);
    return 0;
  }
  const status = values.status as string | undefined;
  if (status !== undefined && !(OUTBOX_STATUSES as readonly string[]).includes(status)) {
    throw new UsageError(`--status must be one of ${OUTBOX_STATUSES.join(', ')}`);
  }
  let limit: number | undefined;
  if (values.limit !== undefined) {
    limit = Number(values.limit);
    if (!Number.isInteger(limit) || limit < 1 || limit > LIST_MAX_LIMIT) {
      throw new UsageError(`--limit must be an integer from 1 to ${LIST_MAX_LIMIT}`);
    }
  }
  const ctx = operatorContext(values);
  try {
    const page = await ctx
      .outbox()
      .list({
        ...(status ? { status: status as OutboxStatus } : {}),
        ...(limit ? { limit } : {}),
        ...(typeof values.cursor === 'string' ? { cursor: values.cursor } : {}),
      })
      .catch((err) => {
        if (err instanceof InvalidParameterError) throw new UsageError(`--${err.field}: ${err.problem}`);
        throw err;
      });
    const json = { events: page.events.map(outboxEventJson), next_cursor: page.nextCursor };
    output(values.json === true, json, () => table(page.events, page.nextCursor));
    return 0;
  } finally {
    await ctx.close();
  }
}

async function retry(argv: string[]): Promise<number> {
  const { values, positionals } = parseFlags(
    argv,
    { 'all-failed': { type: 'boolean' }, json: { type: 'boolean' } },
    true,
  );
  if (values.help) {
    console.log(USAGE);
    return 0;
  }
  const all = values['all-failed'] === true;
  if (!all && positionals.length === 0) {
    throw new UsageError('give the ids of the events to replay, or --all-failed', { showUsage: true });
  }
  if (all && positionals.length > 0)
    throw new UsageError('give event ids or --all-failed, not both', { showUsage: true });
  const ctx = operatorContext(values);
  try {
    const result = await ctx
      .outbox()
      .retry(all ? { allFailed: true } : { ids: positionals })
      .catch((err) => {
        if (err instanceof InvalidParameterError) throw new UsageError(`${err.message} (event ids are UUIDs)`);
        throw err;
      });
    const replayed = new Set(result.ids ?? []);
    const skipped = all ? [] : positionals.filter((id) => !replayed.has(id.toLowerCase()));
    output(values.json === true, { retried: result.retried, ids: result.ids, not_retried: skipped }, () =>
      [
        `replayed ${result.retried} failed event${result.retried === 1 ? '' : 's'}`,
        ...skipped.map((id) => `not failed (left alone): ${id}`),
      ].join('\n'),
    );
    return skipped.length > 0 && result.retried === 0 ? 1 : 0;
  } finally {
    await ctx.close();
  }
}

function table(events: OutboxEvent[], nextCursor: string | null): string {
  if (events.length === 0) return 'no events';
  const rows = events.map((e) => [
    e.id,
    e.status,
    String(e.retryCount),
    `${e.aggregateType ? `${e.aggregateType}/` : ''}${e.aggregateId}`,
    e.eventType,
    e.createdAt.toISOString(),
    (e.lastError ?? '').replace(/\s+/g, ' ').slice(0, 60),
  ]);
  const header = ['ID', 'STATUS', 'RETRIES', 'AGGREGATE', 'EVENT', 'CREATED', 'LAST ERROR'];
  const widths = header.map((h, i) => Math.max(h.length, ...rows.map((r) => (r[i] as string).length)));
  const line = (cells: string[]) =>
    cells
      .map((c, i) => c.padEnd(widths[i] as number))
      .join('  ')
      .trimEnd();
  const out = [line(header), ...rows.map(line)];
  if (nextCursor) out.push('', `more: exactly-once outbox list --cursor ${nextCursor}`);
  return out.join('\n');
}
