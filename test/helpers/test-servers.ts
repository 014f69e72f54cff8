import { type ChildProcess, spawn } from 'node:child_process';
import { mkdtempSync, rmSync } from 'node:fs';
import net from 'node:net';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { freePort, waitForRedisPing } from './services.js';

export interface TestRedis {
  port: number;
  url: string;
  /** SIGKILL it and remove its directory. */
  stop(): Promise<void>;
}

/**
 * A test-owned redis-server with arguments of the test's choosing (`--appendonly yes`, `--maxmemory 1mb`,
 * `--rename-command CONFIG ""`), on `port` (default: a free one). Resolves once it answers PING.
 */
export async function spawnRedisServer(args: string[] = [], port?: number): Promise<TestRedis> {
  const p = port ?? (await freePort());
  const dir = mkdtempSync(path.join(tmpdir(), 'eo-redis-'));
  const child: ChildProcess = spawn(
    'redis-server',
    ['--port', String(p), '--bind', '127.0.0.1', '--save', '', '--dir', dir, ...args],
    { stdio: 'ignore' },
  );
  const stop = async () => {
    if (child.exitCode === null && child.signalCode === null) {
      await new Promise<void>((resolve) => {
        child.once('exit', () => resolve());
        child.kill('SIGKILL');
      });
    }
    rmSync(dir, { recursive: true, force: true });
  };
  try {
    await waitForRedisPing(p, `redis-server on port ${p}`);
  } catch (err) {
    await stop();
    throw err;
  }
  return { port: p, url: `redis://127.0.0.1:${p}`, stop };
}

export interface TestTcpServer {
  port: number;
  close(): Promise<void>;
}

/** Accepts TCP connections and never says a word: a Postgres or Redis address that hangs. */
export async function silentServer(): Promise<TestTcpServer> {
  const sockets = new Set<net.Socket>();
  const server = net.createServer((socket) => {
    sockets.add(socket);
    socket.on('error', () => {});
    socket.on('close', () => sockets.delete(socket));
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  return {
    port: (server.address() as net.AddressInfo).port,
    async close() {
      for (const s of sockets) s.destroy();
      await new Promise<void>((resolve) => server.close(() => resolve()));
    },
  };
}

/** Forwards `port` to `127.0.0.1:targetPort` once `listen()` is called: a service that comes up late. */
export function lateProxy(port: number, targetPort: number): { listen(): Promise<void>; close(): Promise<void> } {
  const sockets = new Set<net.Socket>();
  const server = net.createServer((client) => {
    const upstream = net.connect(targetPort, '127.0.0.1');
    for (const s of [client, upstream]) {
      sockets.add(s);
      s.on('error', () => {
        client.destroy();
        upstream.destroy();
      });
      s.on('close', () => sockets.delete(s));
    }
    client.pipe(upstream).pipe(client);
  });
  return {
    listen: () => new Promise<void>((resolve) => server.listen(port, '127.0.0.1', resolve)),
    async close() {
      for (const s of sockets) s.destroy();
      if (server.listening) await new Promise<void>((resolve) => server.close(() => resolve()));
    },
  };
}
