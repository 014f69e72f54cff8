import assert from 'node:assert/strict';
import { type ChildProcess, spawn, spawnSync } from 'node:child_process';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { Cluster } from 'ioredis';
import { freePort, waitFor } from './services.js';

export interface TestCluster {
  client: Cluster;
  ports: number[];
  /** `CLUSTER KEYSLOT key` as the server answers it. */
  keyslot(key: string): Promise<number>;
  close(): Promise<void>;
}

/**
 * A real three-master Redis Cluster on free loopback ports, owned by one test file (its data dies with it).
 * `replicas: 1` adds a replica per master (six nodes), for failover tests.
 */
export async function startTestCluster(options: { replicas?: number } = {}): Promise<TestCluster> {
  const replicas = options.replicas ?? 0;
  const dir = mkdtempSync(path.join(tmpdir(), 'eo-cluster-'));
  const nodes: ChildProcess[] = [];
  const ports: number[] = [];
  for (let i = 0; i < 3 * (1 + replicas); i++) {
    const port = await freePort();
    ports.push(port);
    nodes.push(
      spawn(
        'redis-server',
        [
          ...['--port', String(port), '--bind', '127.0.0.1', '--cluster-enabled', 'yes'],
          ...['--cluster-config-file', `nodes-${port}.conf`, '--save', '', '--appendonly', 'no', '--dir', dir],
        ],
        { stdio: 'ignore' },
      ),
    );
  }
  // Whatever the test did, its nodes and their files go with the test process: no orphan redis-server, no temp dir.
  const killAll = () => {
    for (const n of nodes) if (n.exitCode === null && n.signalCode === null) n.kill('SIGKILL');
    rmSync(dir, { recursive: true, force: true });
  };
  process.once('exit', killAll);
  const cli = (port: number, ...args: string[]) =>
    spawnSync('redis-cli', ['-p', String(port), ...args], { encoding: 'utf8', timeout: 10_000 }).stdout ?? '';
  await waitFor(() => ports.every((p) => cli(p, 'ping').trim() === 'PONG'), 10_000, 'cluster nodes to start');
  const create = spawnSync(
    'redis-cli',
    [
      ...['--cluster', 'create', ...ports.map((p) => `127.0.0.1:${p}`)],
      ...['--cluster-replicas', String(replicas), '--cluster-yes'],
    ],
    { encoding: 'utf8', timeout: 30_000 },
  );
  assert.equal(create.status, 0, create.stdout + create.stderr);
  await waitFor(
    () => ports.every((p) => cli(p, 'cluster', 'info').includes('cluster_state:ok')),
    20_000,
    'cluster_state:ok on every node',
  );
  const client = new Cluster(ports.map((port) => ({ host: '127.0.0.1', port })));
  await waitFor(() => client.status === 'ready', 10_000, 'the cluster client to connect');
  return {
    client,
    ports,
    async keyslot(key) {
      const node = client.nodes('master')[0];
      assert.ok(node, 'a master node');
      return Number(await node.call('CLUSTER', 'KEYSLOT', key));
    },
    async close() {
      client.disconnect();
      await Promise.all(
        nodes.map(
          (n) =>
            new Promise<void>((resolve) => {
              if (n.exitCode !== null || n.signalCode !== null) return resolve();
              n.once('exit', () => resolve());
              n.kill('SIGKILL');
            }),
        ),
      );
      rmSync(dir, { recursive: true, force: true });
      process.off('exit', killAll);
    },
  };
}
