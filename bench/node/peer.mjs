// Bench-only peer: the official Node BullMQ reading the same queues as the exporter.
// Usage: node peer.mjs REDIS_URL PREFIX NAMES_FILE
// Reads one command per stdin line and answers one JSON line per command:
//   counts  -> Promise.all of Queue.getJobCounts() over every queue
//   export  -> Promise.all of Queue.exportPrometheusMetrics() over every queue
//   quit
// Every Queue shares one ioredis connection, as an application's dashboard would.
import { readFileSync } from 'node:fs';
import { createInterface } from 'node:readline';
import { createRequire } from 'node:module';
import { Queue } from 'bullmq';
import IORedis from 'ioredis';

const [url, prefix, namesFile] = process.argv.slice(2);
const names = JSON.parse(readFileSync(namesFile, 'utf8'));
const connection = new IORedis(url, { maxRetriesPerRequest: null });
const queues = names.map((name) => new Queue(name, { connection, prefix }));
await Promise.all(queues.map((queue) => queue.waitUntilReady()));
const version = createRequire(import.meta.url)('bullmq/package.json').version;

async function timed(action) {
  const started = process.hrtime.bigint();
  const result = await action();
  return { ms: Number(process.hrtime.bigint() - started) / 1e6, result };
}

const actions = {
  counts: async () => {
    const { ms, result } = await timed(() => Promise.all(queues.map((q) => q.getJobCounts())));
    return { ms, counts: Object.fromEntries(names.map((name, i) => [name, result[i]])) };
  },
  export: async () => {
    const { ms, result } = await timed(() =>
      Promise.all(queues.map((q) => q.exportPrometheusMetrics())));
    return { ms, bytes: result.reduce((sum, text) => sum + text.length, 0) };
  },
};

console.log(JSON.stringify({ ready: true, bullmq: version, queues: queues.length }));
for await (const line of createInterface({ input: process.stdin })) {
  const command = line.trim();
  if (command === 'quit') break;
  const action = actions[command];
  console.log(JSON.stringify(action ? await action() : { error: `unknown ${command}` }));
}
await Promise.all(queues.map((queue) => queue.close()));
await connection.quit();
