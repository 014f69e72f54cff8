import { drainBench } from './drain.js';
import { duplicateBench } from './duplicate.js';
import { freshnessBench } from './freshness.js';
import { growthBench } from './growth.js';
import { heldSnapshotBench } from './held-snapshot.js';
import { importCostBench } from './import-cost.js';
import { formatTable, parseBenchOptions, type Row, writeResults } from './lib/report.js';
import { machineInfo } from './lib/services.js';
import { memoryBench } from './memory.js';
import { producerBench } from './producer.js';
import { scaleBench } from './scale.js';
import { workerBench } from './worker.js';

/**
 * `npm run bench`: every benchmark of issue 5, each figure beside a baseline measured in the same run. Prints a
 * Markdown table and writes everything to bench/results/<date>.json. See docs/performance.md.
 */
const opts = parseBenchOptions(process.argv.slice(2));
const date = new Date();
const machine = await machineInfo();
const started = performance.now();
console.log(`exactly-once bench, ${date.toISOString()}`);
console.log(
  `machine: ${machine.cores} cores (${machine.cpu}), ${machine.memoryGiB} GiB; Node ${machine.node}; ` +
    `Postgres ${machine.postgres}; Redis ${machine.redis}`,
);
console.log(
  `postgres settings: ${Object.entries(machine.postgresSettings)
    .map(([k, v]) => `${k}=${v}`)
    .join(', ')}`,
);
console.log(
  `sizes: drain ${opts.events} events x ${opts.rounds} interleaved rounds (relay at its defaults, batch 500 x 1 and 2 loops, 2 CLI processes; baselines at batch 500); ` +
    `growth batch ${opts.batchSize}; memory ${opts.memoryEvents.toLocaleString('en-US')} events; freshness ${opts.rate}/s for ` +
    `${opts.freshnessSeconds}s per mode; growth history ${opts.history.toLocaleString('en-US')} rows\n`,
);

const rows: Row[] = [];
const results: Record<string, unknown> = {};
const run = async <T extends { rows: Row[] }>(name: string, fn: () => Promise<T>) => {
  if (!opts.only.includes(name)) return;
  const t = performance.now();
  process.stderr.write(`${name}...\n`);
  const out = await fn();
  rows.push(...out.rows);
  const { rows: _, ...rest } = out;
  results[name] = { ...rest, seconds: Math.round((performance.now() - t) / 1000) };
};

await run('drain', () => drainBench(opts));
await run('held', () => heldSnapshotBench(opts));
await run('freshness', () => freshnessBench(opts));
await run('producer', () => producerBench(opts));
await run('duplicate', () => duplicateBench(opts));
await run('growth', () => growthBench(opts));
await run('memory', () => memoryBench(opts));
await run('scale', () => scaleBench(opts));
await run('import', () => importCostBench(opts));
await run('worker', () => workerBench(opts));

const seconds = Math.round((performance.now() - started) / 1000);
console.log(formatTable(rows));
const { progress: _, ...options } = opts;
const file = writeResults({ date: date.toISOString(), machine, options, seconds, results, table: rows }, date);
const missed = rows.filter((r) => r.met === false).length;
console.log(`\n${seconds}s; ${missed === 0 ? 'every target met' : `${missed} target(s) missed`}; JSON: ${file}`);
process.exit(0);
