// `npm run soak`: the relay soak (main.ts); `npm run soak -- --worker`: the worker soak (worker-soak.ts).
const worker = process.argv.indexOf('--worker');
if (worker >= 0) {
  process.argv.splice(worker, 1);
  await import('./worker-soak.js');
} else {
  await import('./main.js');
}
