// The freshness bench's consumer, in a process of its own so the producers' event loop cannot delay it: takes
// whatever is in the list in one round trip (RPOP count), blocks (BRPOP) only when it is empty, and prints one line
// per job: `<event id> <arrival, ms since the epoch with sub-ms precision> <jobs in that pop>`. Ends on stdin's end.
// Usage: node bench/lib/fresh-consumer.mjs <redis url> <list>
import { Redis } from 'ioredis';

const [url, list] = process.argv.slice(2);
const redis = new Redis(url);
let running = true;
process.stdin.on('end', () => {
  running = false;
});
process.stdin.resume();
const now = () => performance.timeOrigin + performance.now();
const idOf = (job) => JSON.parse(job).id;
while (running) {
  const batch = await redis.rpop(list, 1000);
  if (batch && batch.length > 0) {
    const t = now();
    process.stdout.write(batch.map((job) => `${idOf(job)} ${t} ${batch.length}\n`).join(''));
    continue;
  }
  const popped = await redis.brpop(list, 0.2);
  if (popped) process.stdout.write(`${idOf(popped[1])} ${now()} 1\n`);
}
redis.disconnect();
