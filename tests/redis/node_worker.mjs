// A Node BullMQ Worker for tests/redis (the official npm package from .cache/node-bullmq,
// see scripts/test-setup.d/node-bullmq.sh). Usage: node node_worker.mjs DIR URL PREFIX QUEUE [NAME]
// Prints {"workers": Queue.getWorkers().length} once the worker is listed, then runs until
// stdin closes, and closes the worker.
import { createRequire } from 'node:module';

const [dir, url, prefix, queueName, workerName] = process.argv.slice(2);
const require = createRequire(`${dir}/package.json`);
const { Queue, Worker } = require('bullmq');
const IORedis = require('ioredis');

const opts = { connection: new IORedis(url, { maxRetriesPerRequest: null }), prefix };
const worker = new Worker(queueName, async () => null,
  { connection: new IORedis(url, { maxRetriesPerRequest: null }), prefix,
    ...(workerName ? { name: workerName } : {}) });
const queue = new Queue(queueName, opts);
await worker.waitUntilReady();
let workers = [];
for (let i = 0; i < 600 && workers.length === 0; i++) {
  workers = await queue.getWorkers();
  if (workers.length === 0) await new Promise((resolve) => setTimeout(resolve, 50));
}
console.log(JSON.stringify({ workers: workers.length, names: workers.map((w) => w.name) }));
process.stdin.resume();
await new Promise((resolve) => process.stdin.on('end', resolve));
await worker.close(true);
await queue.close();
process.exit(0);
