import { parentPort, workerData } from "node:worker_threads";
import { Store, snapshotPartition } from "../persistence/index.ts";
import type { SnapshotJob, SnapshotReport } from "./protocol.ts";

// A snapshot thread: builds each partition's snapshot from the store alone
// (newest snapshot plus the journal after it), so the partitions' own
// threads never stop for it.

const job = workerData as SnapshotJob;
const store = Store.open(job.dataDir, { durability: "fsync" });
const reports: SnapshotReport[] = [];
try {
  for (const id of job.partitionIds) {
    const r = await snapshotPartition(store, id, job.config);
    reports.push({ partition: id, seq: r.seq, bytes: r.bytes, written: r.written });
  }
  parentPort!.postMessage({ ok: true, reports });
} catch (err) {
  parentPort!.postMessage({ ok: false, message: (err as Error).message });
} finally {
  await store.close();
}
