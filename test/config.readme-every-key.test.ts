// README "Configuration" shows "Every key, with its default" as one YAML block. That block must be a config file that
// loads, that sets every key the schema has (optional ones may be commented out), and whose values are the defaults.
import assert from 'node:assert/strict';
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { test } from 'node:test';
import { fileURLToPath } from 'node:url';
import { parse } from 'yaml';
import { defaultConfig, loadConfig } from '../src/config/load-config.js';
import { exactlyOnceSchema } from '../src/config/schema.js';
import { codeBlocks } from './helpers/markdown.js';

const README = fileURLToPath(new URL('../README.md', import.meta.url));

/** The YAML block right after the README's "Every key, with its default" sentence. */
function everyKeyBlock(): { code: string; line: number } {
  const text = readFileSync(README, 'utf8');
  const at = text.indexOf('Every key, with its default');
  assert.ok(at >= 0, 'README names the block "Every key, with its default"');
  const sentenceLine = text.slice(0, at).split('\n').length;
  const block = codeBlocks(README, text).find((b) => b.lang === 'yaml' && b.line > sentenceLine);
  assert.ok(block, 'a YAML block follows it');
  return block;
}

/** Dotted paths of every leaf of a YAML tree (arrays and scalars are leaves). */
function leafPaths(tree: unknown, prefix = ''): string[] {
  if (tree === null || typeof tree !== 'object' || Array.isArray(tree)) return [prefix];
  return Object.entries(tree).flatMap(([k, v]) => leafPaths(v, prefix ? `${prefix}.${k}` : k));
}

test('the README "Every key" block loads as a config file and its values are the defaults', () => {
  const { code, line } = everyKeyBlock();
  const dir = mkdtempSync(path.join(tmpdir(), 'eo-every-key-'));
  try {
    const file = path.join(dir, 'exactly-once.yaml');
    writeFileSync(file, code);
    const loaded = loadConfig(file, { env: {} });
    assert.deepEqual(loaded, defaultConfig(), `README.md:${line}: a value differs from its default`);
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});

test('the README "Every key" block names every key of the schema', () => {
  const { code, line } = everyKeyBlock();
  const shown = new Set(leafPaths((parse(code) as { exactly_once: unknown }).exactly_once));
  // Keys with a default: the schema fills each one in when the tree is empty.
  const schemaKeys = leafPaths(exactlyOnceSchema.parse({}));
  const missing = schemaKeys.filter((k) => !shown.has(k) && ![...shown].some((s) => s.startsWith(`${k}.`)));
  assert.deepEqual(missing, [], `README.md:${line}: keys the block leaves out`);
  // Optional keys without a default (a pg-boss queue name, a stream's maxlen, Redis Cluster nodes, the admin token)
  // are shown commented out: each must still be named in the block's text.
  for (const optional of ['queue:', 'maxlen:', 'cluster:', 'nodes:', 'token:']) {
    assert.ok(code.includes(optional), `README.md:${line}: the optional key ${optional} is named`);
  }
});
