import { type ChildProcess, execFile, spawn } from 'node:child_process';
import { existsSync, mkdirSync, readdirSync, readFileSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import { promisify } from 'node:util';
import { type CodeBlock, codeBlocks } from './markdown.js';
import { ROOT } from './packed-app.js';

const exec = promisify(execFile);
/** test/snippets/: one prelude per file (its README says what a prelude may hold). */
export const PRELUDE_DIR = path.join(ROOT, 'test', 'snippets');
const TSC = path.join(ROOT, 'node_modules', 'typescript', 'bin', 'tsc');

export type SnippetMode = 'check' | 'run' | 'daemon';

/** A TypeScript block of the docs, with what its `<!-- snippet ... -->` comment asks for. */
export interface Snippet {
  block: CodeBlock;
  /** `README_md_110`: the module's file name in the app, from the block's file and line. */
  id: string;
  prelude: string | undefined;
  mode: SnippetMode;
}

/** The Markdown files whose blocks are checked: README.md and every docs/*.md. */
export function documentedFiles(): string[] {
  const docs = readdirSync(path.join(ROOT, 'docs'))
    .filter((f) => f.endsWith('.md'))
    .sort()
    .map((f) => path.join('docs', f));
  return ['README.md', ...docs];
}

/** Every `ts` / `typescript` block of those files; an unknown word in a snippet comment throws. */
export function collectSnippets(files: string[]): Snippet[] {
  const snippets: Snippet[] = [];
  for (const file of files) {
    for (const block of codeBlocks(file, readFileSync(path.join(ROOT, file), 'utf8'))) {
      if (block.lang !== 'ts' && block.lang !== 'typescript') continue;
      let prelude: string | undefined;
      let mode: SnippetMode = 'check';
      for (const word of block.annotation ?? []) {
        if (word.startsWith('prelude=')) prelude = word.slice('prelude='.length);
        else if (word === 'run' || word === 'daemon') mode = word;
        else throw new Error(`${file}:${block.line - 1}: unknown word "${word}" in the snippet comment`);
      }
      if (prelude !== undefined && !existsSync(path.join(PRELUDE_DIR, `${prelude}.ts`))) {
        throw new Error(`${file}:${block.line - 1}: no prelude test/snippets/${prelude}.ts`);
      }
      snippets.push({ block, id: `${file.replace(/\W+/g, '_')}_${block.line}`, prelude, mode });
    }
  }
  return snippets;
}

/** Where a line of a generated module came from, for messages that point at the Markdown. */
interface Origin {
  snippet: Snippet;
  /** The block's first line within the module (1-based). */
  blockStart: number;
}

export interface CheckResult {
  /** `tsc` diagnostics, each pointed at its Markdown line (or prelude file line); empty when all type-check. */
  errors: string[];
  /** The compiled module of a snippet, to run. */
  compiled(snippet: Snippet): string;
}

/**
 * Write each snippet as a module of the app (its prelude, then the block) and run the project's TypeScript compiler
 * over them, and over `extraFiles` (relative to the app), with a user's settings: `strict`, `module` /
 * `moduleResolution` `nodenext`, ES2022, Node's types, the app's node_modules, and `skipLibCheck` off, so every
 * declaration file they reach is checked too. The compiled modules land in `<app>/snippets-out/`.
 */
export async function typeCheckSnippets(
  appDir: string,
  snippets: Snippet[],
  extraFiles: string[] = [],
): Promise<CheckResult> {
  const srcDir = path.join(appDir, 'snippets');
  const outDir = path.join(appDir, 'snippets-out');
  mkdirSync(srcDir, { recursive: true });
  const origins = new Map<string, Origin>();
  for (const snippet of snippets) {
    const prelude = snippet.prelude ? readFileSync(path.join(PRELUDE_DIR, `${snippet.prelude}.ts`), 'utf8') : '';
    const head = `${prelude}${prelude.endsWith('\n') || prelude === '' ? '' : '\n'}// --- ${snippet.block.file}:${snippet.block.line}\n`;
    writeFileSync(path.join(srcDir, `${snippet.id}.ts`), `${head}${snippet.block.code}\nexport {};\n`);
    origins.set(`${snippet.id}.ts`, { snippet, blockStart: head.split('\n').length });
  }
  writeFileSync(
    path.join(appDir, 'tsconfig.json'),
    JSON.stringify({
      compilerOptions: {
        target: 'ES2022',
        module: 'nodenext',
        moduleResolution: 'nodenext',
        strict: true,
        skipLibCheck: false,
        types: ['node'],
        outDir,
        rootDir: '.',
      },
      include: ['snippets'],
      files: extraFiles,
    }),
  );
  const errors = await tsc(appDir, 'tsconfig.json');
  return {
    errors: errors.map((e) => pointAtMarkdown(e, origins)),
    compiled: (snippet) => path.join(outDir, 'snippets', `${snippet.id}.js`),
  };
}

/** `tsc -p <config>` in `dir`; its error lines (nothing when it compiles). */
export async function tsc(dir: string, config: string): Promise<string[]> {
  try {
    await exec(process.execPath, [TSC, '-p', config, '--pretty', 'false'], { cwd: dir, maxBuffer: 16 * 1024 * 1024 });
    return [];
  } catch (err) {
    const out = `${(err as { stdout?: string }).stdout ?? ''}${(err as { stderr?: string }).stderr ?? ''}`;
    const lines = out.split('\n').filter((l) => /error TS\d+/.test(l));
    return lines.length > 0 ? lines : [out || String(err)];
  }
}

function pointAtMarkdown(error: string, origins: Map<string, Origin>): string {
  const m = /^snippets\/([^(]+)\((\d+),(\d+)\): (.*)$/.exec(error);
  const origin = m ? origins.get(m[1] as string) : undefined;
  if (!m || !origin) return error;
  const line = Number(m[2]);
  const { snippet, blockStart } = origin;
  const where =
    line >= blockStart
      ? `${snippet.block.file}:${snippet.block.line + line - blockStart}`
      : `test/snippets/${snippet.prelude}.ts:${line} (prelude of ${snippet.block.file}:${snippet.block.line})`;
  return `${where}:${m[3]}: ${m[4]}`;
}

export interface RunOutcome {
  code: number | null;
  signal: NodeJS.Signals | null;
  output: string;
  /** Still running when the check ended (then stopped by the test). */
  alive: boolean;
}

/**
 * Run a compiled snippet in the app, as `node <module>`. `run`: until its module has finished (then the process is
 * ended: a snippet need not close its pools), within `timeoutMs`. `daemon`: for `aliveMs`, then SIGTERM.
 */
export function runSnippet(
  appDir: string,
  file: string,
  mode: 'run' | 'daemon',
  env: Record<string, string>,
  ms: number,
): Promise<RunOutcome> {
  const { ADMIN_TOKEN: _t, EXACTLY_ONCE_CONFIG: _c, ...inherited } = process.env;
  const args =
    mode === 'run' ? ['--input-type=module', '-e', `await import(${JSON.stringify(file)}); process.exit(0);`] : [file];
  const child: ChildProcess = spawn(process.execPath, args, {
    cwd: appDir,
    env: { ...inherited, LOG_LEVEL: 'warn', ...env },
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  let output = '';
  child.stdout?.on('data', (d: Buffer) => {
    output += d.toString();
  });
  child.stderr?.on('data', (d: Buffer) => {
    output += d.toString();
  });
  return new Promise((resolve) => {
    let alive = false;
    const timer = setTimeout(() => {
      alive = true;
      child.kill('SIGTERM');
      setTimeout(() => child.kill('SIGKILL'), 3000).unref();
    }, ms);
    child.once('exit', (code, signal) => {
      clearTimeout(timer);
      resolve({ code, signal, output, alive });
    });
  });
}
