#!/usr/bin/env node
// From a git checkout (src/ beside bin/ and tsx installed) this runs the TypeScript source, so a dist/ left over from
// an earlier `npm run build` can never run instead of the code you are editing or testing. An installed package ships
// no src/ (see "files" in package.json), so it runs the build in dist/.
import { existsSync } from 'node:fs';

const source = new URL('../src/cli/main.ts', import.meta.url);
const built = new URL('../dist/src/cli/main.js', import.meta.url);

let tsx;
if (existsSync(source)) {
  try {
    tsx = await import('tsx/esm/api');
  } catch {
    // A checkout installed without devDependencies: fall back to the build, and say so below.
  }
}

if (tsx) {
  tsx.register();
  await import(source.href);
} else if (existsSync(built)) {
  if (existsSync(source)) {
    process.stderr.write('exactly-once: tsx is not installed, so this runs dist/ (built earlier), not src/\n');
  }
  await import(built.href);
} else {
  process.stderr.write('exactly-once: neither dist/ (npm run build) nor src/ with tsx (npm ci) is present\n');
  process.exit(1);
}
