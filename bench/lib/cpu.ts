import { readdirSync, readFileSync } from 'node:fs';
import type { Redis } from 'ioredis';

/** CPU time in ms, by who spent it. */
export interface CpuSplit {
  postgres: number;
  redis: number;
  /** this (the bench's) Node process: the in-process relay or the naive relay */
  node: number;
}

/** Clock ticks per second in /proc/<pid>/stat (USER_HZ: 100 on every Linux this runs on). */
const TICK_MS = 10;

/**
 * CPU used so far by every `postgres` process on this machine (backends, and through the postmaster's cutime/cstime
 * the backends that already exited), by the Redis server (INFO cpu) and by this process. Only meaningful while nothing
 * else uses that Postgres: the bench says so where it prints it. Linux only; elsewhere Postgres counts 0.
 */
export async function cpuNow(redis: Redis): Promise<CpuSplit> {
  let ticks = 0;
  let pids: string[] = [];
  try {
    pids = readdirSync('/proc').filter((p) => /^[0-9]+$/.test(p));
  } catch {
    // not Linux
  }
  for (const pid of pids) {
    let stat: string;
    try {
      stat = readFileSync(`/proc/${pid}/stat`, 'utf8');
    } catch {
      continue; // exited meanwhile
    }
    if (!stat.includes('(postgres)')) continue;
    // After "pid (comm) ": state ppid ... utime(11) stime(12) cutime(13) cstime(14), counted from 0.
    const f = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
    ticks += Number(f[11]) + Number(f[12]) + Number(f[13]) + Number(f[14]);
  }
  const info = await redis.info('cpu');
  const seconds = (name: string) => Number(new RegExp(`${name}:([0-9.]+)`).exec(info)?.[1] ?? 0);
  const usage = process.cpuUsage();
  return {
    postgres: ticks * TICK_MS,
    redis: (seconds('used_cpu_user') + seconds('used_cpu_sys')) * 1000,
    node: (usage.user + usage.system) / 1000,
  };
}

/** Run `work` and return its result with the CPU it cost, per 1,000 of `events`. */
export async function withCpu<T>(
  redis: Redis,
  events: number,
  work: () => Promise<T>,
): Promise<{ result: T; cpuPer1000: CpuSplit }> {
  const before = await cpuNow(redis);
  const result = await work();
  const after = await cpuNow(redis);
  const per = (k: keyof CpuSplit) => Math.round(((after[k] - before[k]) / (events / 1000)) * 10) / 10;
  return { result, cpuPer1000: { postgres: per('postgres'), redis: per('redis'), node: per('node') } };
}

export function cpuText(c: CpuSplit): string {
  return `Postgres ${c.postgres} / Redis ${c.redis} / Node ${c.node} ms (total ${Math.round((c.postgres + c.redis + c.node) * 10) / 10})`;
}
