import { randomBytes } from "node:crypto";
import type { Partition } from "../engine/index.ts";
import {
  CorruptionError,
  type FramedBatch,
  recoverPartition,
  Store,
} from "../persistence/index.ts";
import { PartitionHost } from "./partition_host.ts";
import type { RecoveryReport, WorkerConfig } from "./protocol.ts";
import type { Answers } from "./transport.ts";

/** A seed for the partitions' request-id hash, random per process so that
 * clients cannot choose ids that collide (see RequestTable). */
export function randomHashSeed(): number {
  return randomBytes(4).readInt32LE(0);
}

export interface Booted {
  host: PartitionHost;
  store: Store;
  recovered: RecoveryReport[];
}

/**
 * Opens the store, recovers each partition (newest valid snapshot, then the
 * journal), expires at once the holds whose deadline passed while the node
 * was down (journaled), and returns a host ready to take commands.
 */
export async function bootHost(
  config: WorkerConfig,
  now: () => number,
  onReplies: (count: number, results: Answers) => void,
  onFatal: (err: Error) => void,
  replicate?: (batches: FramedBatch[]) => Promise<void>,
): Promise<Booted> {
  const store = Store.open(config.dataDir, { durability: config.durability });
  const partitionConfig = {
    partitionCount: config.partitionCount,
    holdDurationMs: config.holdDurationMs,
    idempotencyWindowMs: config.idempotencyWindowMs,
    wheelTickMs: config.wheelTickMs,
    requestHashSeed: randomHashSeed(),
  };
  const partitions: Partition[] = [];
  const recovered: RecoveryReport[] = [];
  for (const id of config.partitionIds) {
    const skippedSnapshots: string[] = [];
    let truncatedRecords = 0;
    for (;;) {
      try {
        const r = recoverPartition(store, id, partitionConfig, {
          onSkippedSnapshot: (e) => skippedSnapshots.push(e.message),
        });
        partitions.push(r.partition);
        recovered.push({
          partition: id,
          snapshotSeq: r.snapshotSeq,
          eventsReplayed: r.eventsReplayed,
          seq: r.partition.seq,
          expiredAtStart: 0,
          truncatedRecords,
          skippedSnapshots,
        });
        break;
      } catch (err) {
        if (
          !(err instanceof CorruptionError) ||
          !config.truncateDamagedTail ||
          truncatedRecords > 0
        ) {
          await store.close();
          throw err;
        }
        // The operator asked for it: drop the damaged record and all after it.
        truncatedRecords = await store.truncateFrom(id, err.seq);
      }
    }
  }
  const host = new PartitionHost(store, partitions, {
    epochs: config.epochs,
    partitionCount: config.partitionCount,
    follower: config.follower,
    ...(replicate === undefined ? {} : { replicate }),
    now,
    onReplies,
    onFatal,
  });
  // A follower writes nothing: the leader expires holds and journals it.
  if (config.follower) return { host, store, recovered };
  // Holds whose deadline passed while the node was down expire now, journaled.
  const holdsBefore = partitions.map((p) => p.holdCount);
  for (;;) {
    const before = host.stats.expired;
    host.pulse();
    await host.drain();
    if (host.stats.expired === before) break;
  }
  recovered.forEach((r, i) => {
    r.expiredAtStart = holdsBefore[i]! - partitions[i]!.holdCount;
  });
  return { host, store, recovered };
}
