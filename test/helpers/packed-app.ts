import { execFile } from 'node:child_process';
import { mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { promisify } from 'node:util';

const exec = promisify(execFile);
export const ROOT = fileURLToPath(new URL('../..', import.meta.url));
const NPM = process.platform === 'win32' ? 'npm.cmd' : 'npm';

interface PackageJson {
  name: string;
  version: string;
  dependencies: Record<string, string>;
  peerDependencies: Record<string, string>;
}
export const PKG = JSON.parse(readFileSync(path.join(ROOT, 'package.json'), 'utf8')) as PackageJson;

/**
 * What a new user has after `npm install exactly-once pg kysely ioredis pg-boss fastify @types/node`: an app
 * (`type: module`) with the packed tarball and the packages its README imports, in the ranges the package itself
 * depends on (pg-boss: its peer range), and `@types/node` of the Node running the test. Not `@types/pg`: the package
 * must bring the types its declarations import.
 */
export const APP_DEPENDENCIES: Record<string, string> = {
  pg: PKG.dependencies.pg as string,
  kysely: PKG.dependencies.kysely as string,
  ioredis: PKG.dependencies.ioredis as string,
  fastify: PKG.dependencies.fastify as string,
  'pg-boss': PKG.peerDependencies['pg-boss'] as string,
  '@types/node': `^${process.versions.node.split('.')[0]}`,
};

export interface PackedApp {
  /** The app's directory (its package.json, node_modules, ...). */
  dir: string;
  /** Where the package is installed: `<dir>/node_modules/exactly-once`. */
  packageDir: string;
  /** Every file of the tarball, as `npm pack` listed it (paths relative to the package root). */
  files: string[];
  /** `npm` in the app's directory. */
  npm(args: string[], env?: Record<string, string>): Promise<{ stdout: string; stderr: string }>;
  /** Remove the app and the tarball. */
  close(): void;
}

/**
 * `npm pack` of this checkout (its `prepack` builds dist/), installed into a fresh app in a temp directory. npm's
 * cache serves the dependencies (`--prefer-offline`): the registry is asked only for what the cache lacks.
 */
export async function installPackedApp(label: string): Promise<PackedApp> {
  const dir = mkdtempSync(path.join(tmpdir(), `eo-${label}-`));
  try {
    const packed = await exec(NPM, ['pack', '--json', '--pack-destination', dir, '--loglevel=error'], {
      cwd: ROOT,
      maxBuffer: 16 * 1024 * 1024,
    });
    const [info] = JSON.parse(packed.stdout) as { filename: string; files: { path: string }[] }[];
    if (!info) throw new Error(`npm pack printed no result: ${packed.stdout}`);
    const appDir = path.join(dir, 'app');
    mkdirSync(appDir);
    writeFileSync(
      path.join(appDir, 'package.json'),
      JSON.stringify(
        {
          name: 'new-user-app',
          private: true,
          type: 'module',
          dependencies: { [PKG.name]: `file:../${info.filename}`, ...APP_DEPENDENCIES },
        },
        null,
        2,
      ),
    );
    const npm = (args: string[], env: Record<string, string> = {}) =>
      exec(NPM, args, { cwd: appDir, env: { ...process.env, ...env }, maxBuffer: 16 * 1024 * 1024 });
    await npm(['install', '--prefer-offline', '--no-audit', '--no-fund', '--loglevel=error']);
    return {
      dir: appDir,
      packageDir: path.join(appDir, 'node_modules', PKG.name),
      files: info.files.map((f) => f.path),
      npm,
      close: () => rmSync(dir, { recursive: true, force: true }),
    };
  } catch (err) {
    rmSync(dir, { recursive: true, force: true });
    throw err;
  }
}
