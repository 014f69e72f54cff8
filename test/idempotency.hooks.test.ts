import assert from 'node:assert/strict';
import { Writable } from 'node:stream';
import { test } from 'node:test';
import { pino } from 'pino';
import { generateIdempotencyKey, type IdempotencyMetrics } from '../src/idempotency/index.js';
import { testService } from './helpers/idempotency-env.js';

function setup() {
  const logs: Array<{ msg: string; hook?: string }> = [];
  const logger = pino(
    { level: 'warn' },
    new Writable({
      write(chunk, _enc, cb) {
        logs.push(JSON.parse(chunk.toString()));
        cb();
      },
    }),
  );
  const counts: Record<string, number> = {};
  const bump = (name: string) => () => {
    counts[name] = (counts[name] ?? 0) + 1;
  };
  const metrics: IdempotencyMetrics = {
    check: (_q, outcome) => bump(`check:${outcome}`)(),
    duplicateAvoided: bump('duplicateAvoided'),
    success: bump('success'),
    failure: bump('failure'),
  };
  const service = testService(
    { databaseUrl: 'postgres://unused', keyPrefix: 'unused:', variant: 'memory' },
    { logger, metrics },
  );
  return { service, logs, counts };
}

test('hooks run in registration order around the processor, and on duplicates', async () => {
  const { service } = setup();
  const calls: string[] = [];
  for (const name of ['A', 'B']) {
    service.registerHook({
      beforeProcessing: (jobId, key) => {
        calls.push(`${name}.before ${jobId} ${key.queueName}`);
      },
      afterProcessing: async (jobId, result, error) => {
        calls.push(`${name}.after ${jobId} ${JSON.stringify(result)} ${error ? (error as Error).message : '-'}`);
      },
      onDuplicate: (jobId, existing) => {
        calls.push(`${name}.duplicate ${jobId} ${JSON.stringify(existing)}`);
      },
    });
  }
  const key = generateIdempotencyKey('q', '', 'j');
  await service.processWithIdempotency(key, () => {
    calls.push('processor');
    return 7;
  });
  await service.processWithIdempotency(key, () => 8);
  await assert.rejects(
    service.processWithIdempotency(generateIdempotencyKey('q', '', 'bad'), () => {
      throw new Error('nope');
    }),
    /^Error: nope$/,
  );
  assert.deepEqual(calls, [
    'A.before q::j q',
    'B.before q::j q',
    'processor',
    'A.after q::j 7 -',
    'B.after q::j 7 -',
    'A.duplicate q::j 7',
    'B.duplicate q::j 7',
    'A.before q::bad q',
    'B.before q::bad q',
    'A.after q::bad undefined nope',
    'B.after q::bad undefined nope',
  ]);
  await service.close();
});

test('a throwing afterProcessing or rejecting onDuplicate hook is logged and changes nothing; hooks can be removed', async () => {
  const { service, logs, counts } = setup();
  const seen: string[] = [];
  service.registerHook({
    afterProcessing: () => {
      throw new Error('hook bug');
    },
    onDuplicate: async () => {
      throw new Error('async hook bug');
    },
  });
  const remove = service.registerHook({ afterProcessing: () => seen.push('after') });
  const key = generateIdempotencyKey('q', '', 'j');
  assert.deepEqual(await service.processWithIdempotency(key, () => 1), { duplicate: false, result: 1 });
  assert.deepEqual(await service.processWithIdempotency(key, () => 2), { duplicate: true, result: 1 });
  remove();
  await service.processWithIdempotency(generateIdempotencyKey('q', '', 'k'), () => 3);
  assert.deepEqual(seen, ['after']);
  assert.deepEqual(
    logs.map((l) => l.hook),
    ['afterProcessing', 'onDuplicate', 'afterProcessing'],
  );
  assert.deepEqual(counts, { 'check:first': 2, 'check:duplicate': 1, duplicateAvoided: 1, success: 2 });
  await service.close();
});
