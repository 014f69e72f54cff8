// tsc compiles .ts only. Copied beside their modules into dist/: the Lua scripts the publishers and stores load at run
// time, and the dashboard's files (src/admin/ui/: HTML, CSS and browser JS, served as they are, with no build step).
import { cpSync, mkdirSync, readdirSync } from 'node:fs';
import path from 'node:path';

const UI_DIR = path.join('src', 'admin', 'ui');

function walk(dir) {
  for (const entry of readdirSync(dir, { withFileTypes: true })) {
    const from = path.join(dir, entry.name);
    if (entry.isDirectory()) walk(from);
    else if (entry.name.endsWith('.lua') || from.startsWith(UI_DIR + path.sep)) {
      mkdirSync(path.dirname(path.join('dist', from)), { recursive: true });
      cpSync(from, path.join('dist', from));
    }
  }
}
walk('src');
