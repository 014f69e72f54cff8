// tsc compiles .ts only; the Lua scripts the publishers and stores load at run time are copied beside their modules.
import { cpSync, readdirSync } from 'node:fs';
import path from 'node:path';

function walk(dir) {
  for (const entry of readdirSync(dir, { withFileTypes: true })) {
    const from = path.join(dir, entry.name);
    if (entry.isDirectory()) walk(from);
    else if (entry.name.endsWith('.lua')) cpSync(from, path.join('dist', from));
  }
}
walk('src');
