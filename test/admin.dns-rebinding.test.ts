import assert from 'node:assert/strict';
import http from 'node:http';
import { after, before, describe, test } from 'node:test';
import { type HttpRelay, startHttpRelay } from './helpers/relay-http.js';
import { writeConfigFile } from './helpers/relay-process.js';
import { createTestDatabase, REDIS_URL, redisPrefix, type TestDatabase } from './helpers/services.js';

// DNS rebinding: a page on rebind.attacker.example re-points its own name at 127.0.0.1, so the browser sends the
// relay requests whose Origin and Host both name the attacker: the same-origin check passes, and a relay without a
// token (the loopback default) would act on them. The relay answers only a Host that is an IP address, localhost or
// a name in admin.allowed_hosts; the probes and /metrics answer any Host (scrapers and orchestrators use theirs).

const API = '/api/v1/exactly-once';
let db: TestDatabase;
let relay: HttpRelay;

before(async () => {
  db = await createTestDatabase('dns_rebinding');
  const file = writeConfigFile('dns-rebinding', {
    database: { url: db.url },
    redis: { url: REDIS_URL },
    idempotency: { key_prefix: redisPrefix('dns_rebinding') },
  });
  // No token: the default on loopback. ADMIN_ALLOWED_HOSTS: a compose service name and a domain with subdomains.
  relay = await startHttpRelay(file, [], { ADMIN_ALLOWED_HOSTS: 'relay-1, .svc.internal' });
});
after(async () => {
  await relay?.stop();
  await db?.close();
});

/** A raw HTTP request to the relay with the Host and Origin a browser would send for that page. */
function raw(
  method: string,
  path: string,
  host: string,
  options: { origin?: string; body?: unknown } = {},
): Promise<{ status: number; json: () => { error?: { code: string; message: string } } }> {
  const body = options.body === undefined ? undefined : JSON.stringify(options.body);
  return new Promise((resolve, reject) => {
    const req = http.request(
      {
        host: '127.0.0.1',
        port: relay.port,
        method,
        path,
        headers: {
          host,
          ...(options.origin ? { origin: options.origin } : {}),
          ...(body ? { 'content-type': 'application/json', 'content-length': Buffer.byteLength(body) } : {}),
        },
      },
      (res) => {
        let text = '';
        res.setEncoding('utf8');
        res.on('data', (d: string) => {
          text += d;
        });
        res.on('end', () => resolve({ status: res.statusCode ?? 0, json: () => JSON.parse(text) }));
      },
    );
    req.on('error', reject);
    req.end(body);
  });
}

const markDone = (host: string, key: string) =>
  raw('POST', `${API}/idempotency`, host, {
    origin: `http://${host}`,
    body: { queue_name: 'rebind', key_id: key, value: { done: true } },
  });

describe('a Host that is not this server', () => {
  test('the attacker page cannot write, read or load the dashboard: 403 EO_ADMIN_HOST_NOT_ALLOWED', async () => {
    const attacker = `rebind.attacker.example:${relay.port}`;
    const write = await markDone(attacker, 'forged');
    assert.equal(write.status, 403);
    assert.equal(write.json().error?.code, 'EO_ADMIN_HOST_NOT_ALLOWED');
    assert.match(write.json().error?.message ?? '', /admin\.allowed_hosts/);
    for (const path of [`${API}/outbox`, `${API}/overview`, '/', '/ui/app.js']) {
      const read = await raw('GET', path, attacker);
      assert.equal(read.status, 403, path);
      assert.equal(read.json().error?.code, 'EO_ADMIN_HOST_NOT_ALLOWED', path);
    }
    // The forged write did nothing.
    const key = await raw('GET', `${API}/idempotency?queue=rebind&key=forged`, `127.0.0.1:${relay.port}`);
    assert.equal(key.status, 404);
  });

  test('the probes and /metrics answer any Host: scrapers and orchestrators name the relay their own way', async () => {
    for (const path of ['/metrics', '/healthz', '/readyz']) {
      const res = await raw('GET', path, `rebind.attacker.example:${relay.port}`);
      assert.equal(res.status, 200, path);
    }
  });
});

describe('Hosts this server answers', () => {
  test('its address, localhost (any port: port mappings change it) and the names in ADMIN_ALLOWED_HOSTS', async () => {
    const hosts = [
      `127.0.0.1:${relay.port}`,
      `localhost:${relay.port}`,
      'LOCALHOST:18080',
      `[::1]:${relay.port}`,
      '192.168.1.20:8080',
      'relay-1:8080',
      'svc.internal',
      'Admin.SVC.internal:443',
    ];
    for (const [i, host] of hosts.entries()) {
      const res = await markDone(host, `ok-${i}`);
      assert.equal(res.status, 201, `${host}: ${JSON.stringify(res.json())}`);
    }
    for (const host of [
      'relay-2:8080',
      'notsvc.internal',
      'svc.internal.attacker.example',
      'localhost.attacker.example',
    ]) {
      const res = await raw('GET', `${API}/outbox`, host);
      assert.equal(res.status, 403, host);
    }
  });
});
