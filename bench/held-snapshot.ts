import { type HeldSnapshotFigure, heldSnapshotRun } from './lib/held-snapshot-run.js';
import type { BenchOptions, Row } from './lib/report.js';

/**
 * A snapshot held open for `--held-seconds` (default 600) while producers write `--held-rate` events/s (default
 * 5,000) and the relay daemon moves them, on a Postgres cluster of its own with autovacuum on
 * (bench/lib/held-snapshot-run.ts). Targets: p99 lag during the hold within 2x the p99 before it + 50 ms; backlog at
 * the end of the hold under one second of traffic; no dead tuples and no updated or deleted event rows.
 */
export async function heldSnapshotBench(opts: BenchOptions): Promise<{ rows: Row[]; figure: HeldSnapshotFigure }> {
  const figure = await heldSnapshotRun({
    rate: opts.heldRate,
    beforeSeconds: 60,
    holdSeconds: opts.heldSeconds,
    afterSeconds: 60,
    progress: opts.progress,
  });
  const [before, during, after] = figure.phases;
  if (!before || !during || !after) throw new Error('held-snapshot run ended early');
  const lagBound = 2 * before.lagMs.p99 + 50;
  const phaseRow = (p: typeof before): string =>
    `lag p50 ${p.lagMs.p50} / p99 ${p.lagMs.p99} / max ${p.lagMs.max} ms, backlog ${p.backlog}, ` +
    `claim ${p.claimMs} ms / ${p.claimBuffers} buffers, ${p.sizeMB} MB`;
  const label = `held snapshot, ${figure.achievedRate} ev/s (asked ${figure.rate}), ${opts.heldSeconds}s hold`;
  const rows: Row[] = [
    {
      benchmark: `${label}: lag`,
      figure: `during: ${phaseRow(during)}`,
      baseline: `before: ${phaseRow(before)}; after: ${phaseRow(after)}`,
      ratio: `p99 ${during.lagMs.p99} vs bound ${lagBound} ms`,
      target: 'p99 during <= 2x p99 before + 50 ms',
      met: during.lagMs.p99 <= lagBound,
    },
    {
      benchmark: `${label}: backlog at hold end`,
      figure: `${during.backlog} events`,
      baseline: `${figure.rate} events (one second of traffic)`,
      ratio: `${Math.round((during.backlog / Math.max(1, figure.rate)) * 100) / 100} s of traffic`,
      target: '< 1 s of traffic',
      met: during.backlog < figure.rate,
    },
    {
      benchmark: `${label}: hot-path dead tuples`,
      figure: `${during.deadTuples} dead tuples, ${during.eventUpdatesAndDeletes} event rows updated or deleted`,
      baseline: `before: ${before.deadTuples}; after: ${after.deadTuples}`,
      ratio: '-',
      target: '0 from the hot path',
      met: during.eventUpdatesAndDeletes === 0 && during.deadTuples === 0,
    },
    {
      benchmark: `${label}: delivery`,
      figure: `${figure.delivered} delivered, ${figure.duplicates} twice, ${figure.reordered} out of order`,
      baseline: '-',
      ratio: '-',
      target: 'info',
      met: undefined,
    },
  ];
  return { rows, figure };
}
