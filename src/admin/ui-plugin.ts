import { createHash } from 'node:crypto';
import { readdirSync, readFileSync } from 'node:fs';
import { createRequire } from 'node:module';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import type { FastifyInstance, FastifyReply } from 'fastify';
import { hostCheck } from './auth.js';
import { HttpErrorCode, toHttpError } from './http-errors.js';

/**
 * Served with the page and every asset. The page's script and styles come from this server only, so a payload that
 * reached the DOM as markup still could not run (the page renders data with `textContent`, so it never does);
 * `frame-ancestors 'none'` and `X-Frame-Options` stop clickjacking of the replay and delete buttons.
 */
export const UI_SECURITY_HEADERS: Readonly<Record<string, string>> = Object.freeze({
  'content-security-policy':
    "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; frame-ancestors 'none'; base-uri 'none'; form-action 'self'",
  'x-frame-options': 'DENY',
  'x-content-type-options': 'nosniff',
  'referrer-policy': 'no-referrer',
});

const TYPES: Record<string, string> = {
  '.html': 'text/html; charset=utf-8',
  '.js': 'text/javascript; charset=utf-8',
  '.css': 'text/css; charset=utf-8',
  '.svg': 'image/svg+xml',
};

interface Asset {
  body: Buffer;
  type: string;
  etag: string;
}

/** `src/admin/ui/` in a checkout, `dist/src/admin/ui/` in the package (scripts/copy-assets.mjs puts it there). */
const UI_DIR = fileURLToPath(new URL('./ui/', import.meta.url));

export interface UiOptions {
  /**
   * Host names the page is served under besides IP addresses and `localhost`: pass `admin.allowed_hosts`, as the
   * admin API it calls checks them (see `hostCheck`). @defaultValue [] (IP addresses and localhost only)
   */
  allowedHosts?: readonly string[] | undefined;
  /**
   * Where the page finds the admin API (`exactlyOnceAdmin`): a path relative to the page, or absolute. The default
   * suits the admin plugin registered under the same prefix as this one (`/ops/` and `/ops/api/v1/exactly-once`).
   * @defaultValue "api/v1/exactly-once"
   */
  api?: string;
}

/** The `api` option: a URL path (absolute or relative), nothing that could leave the attribute or the origin. */
const API_PATH = /^(?:\/(?!\/)|[\w.-])[\w./~-]*$/;

/**
 * The operator dashboard: `GET /` is the page, `GET /ui/<file>` its scripts and styles, and the chart library
 * (uPlot) is served from its npm package at `/ui/vendor/`. Everything is read once, at registration, from files that
 * ship inside the package: no build step, no CDN, nothing fetched at run time. The page only reads and writes
 * through the admin API, so it has the API's auth and nothing more.
 *
 * Register it under a prefix to keep your app's own `/`: every URL of the page is relative, so it works under any
 * prefix, and `/ops` redirects to `/ops/`. Register the admin plugin under the same prefix, or say where it is (`api`).
 *
 * @example
 * await app.register(exactlyOnceAdmin, { prefix: '/ops', manager, probes: false });
 * await app.register(exactlyOnceUi, { prefix: '/ops' }); // the page at /ops/
 */
export async function exactlyOnceUi(app: FastifyInstance, options: UiOptions = {}): Promise<void> {
  if (options.api !== undefined && !API_PATH.test(options.api)) {
    throw new TypeError(
      `exactlyOnceUi: api must be a URL path such as /api/v1/exactly-once (got ${JSON.stringify(options.api)})`,
    );
  }
  const assets = loadAssets(options.api);
  const index = assets.get('index.html');
  if (!index) throw new Error(`the dashboard's index.html is missing from ${UI_DIR}`);
  // The page under a name of another site (DNS rebinding) is refused like the API it would call.
  const checkHost = hostCheck(options.allowedHosts);
  app.addHook('onRequest', async (request, reply) => {
    try {
      checkHost(request.headers.host);
    } catch (err) {
      const { status, body } = toHttpError(err);
      return reply.status(status).send(body);
    }
  });

  app.addHook('onSend', async (_request, reply, payload) => {
    for (const [name, value] of Object.entries(UI_SECURITY_HEADERS)) reply.header(name, value);
    return payload;
  });

  const send = (asset: Asset, ifNoneMatch: string | undefined, reply: FastifyReply) => {
    // `no-cache` revalidates on every load: after an upgrade the page never runs a stale script against a new API.
    void reply.header('cache-control', 'no-cache').header('etag', asset.etag);
    if (ifNoneMatch === asset.etag) return reply.status(304).send();
    return reply.type(asset.type).send(asset.body);
  };

  app.get('/', (request, reply) => {
    // Under a prefix the page must be at `/ops/`, not `/ops`: its relative URLs resolve against the last slash.
    const [path = '', query] = request.url.split('?');
    if (!path.endsWith('/')) return reply.redirect(`${path}/${query === undefined ? '' : `?${query}`}`, 308);
    return send(index, request.headers['if-none-match'], reply);
  });
  app.get<{ Params: { '*': string } }>('/ui/*', (request, reply) => {
    const asset = assets.get(request.params['*']);
    if (!asset || request.params['*'] === 'index.html') {
      return reply
        .status(404)
        .send({ error: { code: HttpErrorCode.notFound, message: `no dashboard file ${request.url}` } });
    }
    return send(asset, request.headers['if-none-match'], reply);
  });
}

Object.defineProperty(exactlyOnceUi, Symbol.for('fastify.display-name'), { value: 'exactly-once-ui' });

/**
 * Only files that exist at start are served, by exact name: a request can never reach another path on disk. The
 * page gets the admin API's location (`api`) in its `<meta name="exactly-once-api">`.
 */
function loadAssets(api: string | undefined): Map<string, Asset> {
  const assets = new Map<string, Asset>();
  const add = (name: string, file: string) => {
    const type = TYPES[path.extname(file)];
    if (!type) return;
    let body = readFileSync(file);
    if (name === 'index.html' && api !== undefined) {
      body = Buffer.from(body.toString('utf8').replace('content="api/v1/exactly-once"', `content="${api}"`), 'utf8');
    }
    assets.set(name, { body, type, etag: `"${createHash('sha256').update(body).digest('base64url').slice(0, 22)}"` });
  };
  const walk = (dir: string, prefix: string) => {
    for (const entry of readdirSync(dir, { withFileTypes: true })) {
      if (entry.isDirectory()) walk(path.join(dir, entry.name), `${prefix}${entry.name}/`);
      else add(`${prefix}${entry.name}`, path.join(dir, entry.name));
    }
  };
  walk(UI_DIR, '');
  // The minified classic build (~50 KB): it defines the global `uPlot` the overview's module reads.
  const require = createRequire(import.meta.url);
  const uplotDist = path.dirname(require.resolve('uplot/dist/uPlot.iife.min.js'));
  add('vendor/uplot.js', path.join(uplotDist, 'uPlot.iife.min.js'));
  add('vendor/uplot.css', path.join(uplotDist, 'uPlot.min.css'));
  return assets;
}
