// Drives one PartitionHost the way a worker thread is driven: batches of
// flat-encoded commands in, batches of answers out, with a bounded number of
// commands in flight, no client library and no promise per command. It
// measures what one worker can do with the journal, apart from the cost of
// whoever calls it (the gateway's clients are measured in their own bench).

import { limits } from "../../src/engine/index.ts";
import { bootHost } from "../../src/host/boot.ts";
import { Op } from "../../src/host/protocol.ts";
import { type Answers, decodeResult, encodeCommand, FlatWriter } from "../../src/host/transport.ts";
import { Store } from "../../src/persistence/index.ts";
import { LatencyHistogram, type LatencySummary, round } from "./stats.ts";

export interface HostRun {
  /** "reserve": holds stay open (a flash sale before payment); "reserve+release":
   * each hold is released once acknowledged, so both are journaled. */
  workload: "reserve" | "reserve+release";
  durability: "fsync" | "relaxed";
  inFlight: number;
  reservationsPerS: number;
  opsPerS: number;
  /** Time from a command's batch being handed to the host to its answer. */
  latency: LatencySummary;
  commitsPerS: number;
  eventsPerCommit: number;
  cpuUsPerOp: number;
}

export interface HostOptions {
  workload: HostRun["workload"];
  dataDir: string;
  durability: "fsync" | "relaxed";
  partitionCount: number;
  skuCount: number;
  inFlight: number;
  warmupMs: number;
  durationMs: number;
}

export async function runHost(o: HostOptions): Promise<HostRun> {
  // lmdb's pending writes do not keep the process alive by themselves.
  const keepAlive = setInterval(() => {}, 1000);
  try {
    return await run(o);
  } finally {
    clearInterval(keepAlive);
  }
}

async function run(o: HostOptions): Promise<HostRun> {
  const store = Store.open(o.dataDir, { durability: o.durability });
  await store.initMeta({ partitionCount: o.partitionCount }, Date.now());
  await store.close();
  let onReplies: (count: number, results: Answers) => void = () => {};
  const { host, store: hostStore } = await bootHost(
    {
      dataDir: o.dataDir,
      partitionIds: Array.from({ length: o.partitionCount }, (_, i) => i),
      partitionCount: o.partitionCount,
      durability: o.durability,
      holdDurationMs: 3_600_000,
      idempotencyWindowMs: limits.idempotencyWindowMsDefault,
      wheelTickMs: limits.wheelTickMsDefault,
      epochs: Array.from({ length: o.partitionCount }, () => 1),
      truncateDamagedTail: false,
      follower: false,
      replicated: false,
    },
    Date.now,
    (count, results) => onReplies(count, results),
    (err) => {
      throw err;
    },
  );
  const products = Array.from({ length: o.skuCount }, (_, i) => `sku-${i}`);
  // Stock every SKU.
  await new Promise<void>((resolve) => {
    let left = products.length;
    onReplies = (count) => {
      left -= count;
      if (left === 0) resolve();
    };
    const ops: Op[] = [];
    const args = new FlatWriter();
    for (const p of products) {
      ops.push(Op.Receive);
      encodeCommand(Op.Receive, { productId: p, warehouseId: "w1", quantity: 1_000_000_000 }, args);
    }
    host.execute(ops, args.finish());
  });

  // Reserve a random SKU; when held, release it. `sent` mirrors what is in
  // flight, in order, so the answers can be read.
  const sent: { op: Op; cmd: unknown; t: number }[] = [];
  let sentHead = 0;
  const toRelease: number[] = [];
  let inFlight = 0;
  let measuring = false;
  let reservations = 0;
  let ops = 0;
  const histogram = new LatencyHistogram();
  let seed = 12345;
  const random = () => {
    seed ^= seed << 13;
    seed ^= seed >>> 17;
    seed ^= seed << 5;
    return (seed >>> 0) / 4294967296;
  };
  let refillScheduled = false;
  let stopped = false;
  const refill = () => {
    refillScheduled = false;
    if (stopped) return;
    const n = o.inFlight - inFlight;
    if (n <= 0) return;
    const batchOps: Op[] = [];
    const batchArgs = new FlatWriter();
    const t = performance.now();
    for (let i = 0; i < n; i++) {
      const holdId = toRelease.pop();
      const op = holdId === undefined ? Op.Reserve : Op.Release;
      const cmd =
        holdId === undefined
          ? {
              lines: [
                {
                  productId: products[Math.floor(random() * products.length)]!,
                  warehouseId: "w1",
                  quantity: 1,
                },
              ],
            }
          : { holdId };
      batchOps.push(op);
      encodeCommand(op, cmd, batchArgs);
      sent.push({ op, cmd, t });
    }
    inFlight += n;
    host.execute(batchOps, batchArgs.finish());
  };
  onReplies = (count, results) => {
    const now = performance.now();
    const cursor = { i: 0, j: 0 };
    for (let k = 0; k < count; k++) {
      const s = sent[sentHead++]!;
      const r = decodeResult(s.op, s.cmd, results, cursor) as {
        ok: boolean;
        reservation?: { holdId: number };
      };
      if (!r.ok) throw new Error(`host refused a command: ${JSON.stringify(r)}`);
      if (s.op === Op.Reserve) {
        if (o.workload === "reserve+release") toRelease.push(r.reservation!.holdId);
        if (measuring) reservations++;
      }
      if (measuring) {
        ops++;
        histogram.recordMs(now - s.t);
      }
    }
    inFlight -= count;
    if (sentHead > 65536) {
      sent.splice(0, sentHead);
      sentHead = 0;
    }
    if (!refillScheduled) {
      refillScheduled = true;
      setImmediate(refill);
    }
  };
  refill();
  await new Promise((r) => setTimeout(r, o.warmupMs));
  const statsBefore = { ...host.stats };
  const cpuBefore = process.cpuUsage();
  const t0 = performance.now();
  measuring = true;
  await new Promise((r) => setTimeout(r, o.durationMs));
  measuring = false;
  const seconds = (performance.now() - t0) / 1000;
  const cpu = process.cpuUsage(cpuBefore);
  const commits = host.stats.commits - statsBefore.commits;
  const events = host.stats.eventsJournaled - statsBefore.eventsJournaled;
  // Stop sending, let what is in flight finish.
  stopped = true;
  await host.drain();
  onReplies = () => {};
  await host.close();
  await hostStore.close();
  return {
    workload: o.workload,
    durability: o.durability,
    inFlight: o.inFlight,
    reservationsPerS: Math.round(reservations / seconds),
    opsPerS: Math.round(ops / seconds),
    latency: histogram.summaryMs(),
    commitsPerS: Math.round(commits / seconds),
    eventsPerCommit: commits === 0 ? 0 : round(events / commits, 1),
    cpuUsPerOp: ops === 0 ? 0 : round((cpu.user + cpu.system) / ops, 2),
  };
}
