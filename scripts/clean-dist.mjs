// `npm run build` starts from an empty dist/: a module deleted or renamed in src/ must not linger in the package.
import { rmSync } from 'node:fs';

rmSync('dist', { recursive: true, force: true });
