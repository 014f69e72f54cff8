import assert from 'node:assert/strict';
import { test } from 'node:test';
import { heldSnapshotRun } from '../bench/lib/held-snapshot-run.js';

// The short form of `npm run bench -- --only held`: on a Postgres cluster of its own with autovacuum on (as in
// production), producers write while the CLI relay moves their events and a REPEATABLE READ transaction holds its
// snapshot for a while. What must hold whatever the machine's speed: no event row is ever updated or deleted, the
// hot path leaves no dead tuples for the held snapshot to keep, and every event arrives once, in order per aggregate.
// (Lag and backlog are the bench's figures: timings are not asserted here.)
test('a held snapshot: events are written once and never updated or deleted; each arrives once, in order', async () => {
  const figure = await heldSnapshotRun({ rate: 400, beforeSeconds: 4, holdSeconds: 12, afterSeconds: 4 });
  assert.equal(figure.phases.length, 3);
  for (const p of figure.phases) {
    assert.equal(p.eventUpdatesAndDeletes, 0, `${p.phase}: no event row updated or deleted`);
    assert.equal(p.deadTuples, 0, `${p.phase}: no dead tuple on the hot path`);
    assert.ok(p.events > 0, `${p.phase}: events flowed (${p.events})`);
  }
  assert.equal(figure.duplicates, 0, 'no event twice');
  assert.equal(figure.reordered, 0, 'per-aggregate order');
  const produced = figure.phases.reduce((n, p) => n + p.events, 0);
  assert.ok(figure.delivered >= produced, `every event arrived (${figure.delivered} of at least ${produced})`);
});
