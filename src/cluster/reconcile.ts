import type { Logger } from "pino";
import type { PartitionConfig } from "../engine/index.ts";
import type { RecordStore, Store } from "../persistence/index.ts";
import { ClusterConfigError, type ClusterLink } from "./connection.ts";
import { type PartitionPosition, positionKey } from "./follower.ts";
import { Header } from "./names.ts";
import {
  objectName,
  restoreCoordinator,
  restorePartition,
  restoreRecords,
  snapshotInfo,
} from "./snapshots.ts";

export interface Reconciled {
  /** Partitions whose local tail (never stored by the cluster) was cut. */
  truncated: { partition: number; records: number }[];
  /** What was rebuilt from the cluster's snapshots. */
  restored: string[];
  /** Partitions whose local journal could not be proven, and why. */
  unproven: { partition: number; why: string }[];
}

/**
 * Makes a node's data directory a prefix of the cluster's stream before it
 * follows: each partition's journal is cut after the last batch the node
 * can prove the stream holds (its position hint, compared byte for byte
 * with the stream's message), snapshots past that point are dropped, and
 * what cannot be proven (a hint the stream no longer holds, a new node) is
 * rebuilt from the cluster's snapshots.
 */
export async function reconcile(o: {
  link: ClusterLink;
  store: Store;
  records: RecordStore;
  partitionCount: number;
  config: PartitionConfig;
  logger: Logger;
}): Promise<Reconciled> {
  const out: Reconciled = { truncated: [], restored: [], unproven: [] };
  const member = o.store.getMeta<string>("cluster");
  if (member !== undefined && member !== o.link.names.cluster) {
    throw new ClusterConfigError(
      `${o.store.dir} belongs to cluster ${member}, not ${o.link.names.cluster}`,
    );
  }
  for (let p = 0; p < o.partitionCount; p++) {
    const hint = o.store.getMeta<PartitionPosition>(positionKey.partition(p)) ?? null;
    const why =
      hint === null || hint.streamSeq === 0 ? "no position" : await provePrefix(o, p, hint);
    if (why === null && hint !== null) {
      const cut = await o.store.truncateFrom(p, hint.journalSeq + 1);
      await o.store.dropSnapshotsAfter(p, hint.journalSeq);
      if (cut > 0) out.truncated.push({ partition: p, records: cut });
      continue;
    }
    const local = o.store.lastSeq(p) > 0 || o.store.rawSnapshotKeys(p).length > 0;
    if (local) out.unproven.push({ partition: p, why: why ?? "no position" });
    if (hint === null && local) {
      throw new ClusterConfigError(
        `${o.store.dir} holds partition ${p} data that was never replicated to cluster ` +
          `${o.link.names.cluster}: start a cluster node on an empty data directory`,
      );
    }
    const snapshot = await snapshotInfo(o.link, objectName.partition(p));
    if (snapshot !== null || local || (hint !== null && hint.streamSeq > 0)) {
      if (await restorePartition(o.link, o.store, p, o.config)) out.restored.push(`p.${p}`);
    }
  }
  const recordsPos = o.records.getMeta<number>(positionKey.records) ?? 0;
  if (
    !(await streamHolds(o.link, recordsPos)) ||
    (recordsPos === 0 && (await hasSnapshot(o.link, objectName.records)))
  ) {
    if (await restoreRecords(o.link, o.records)) out.restored.push("records");
  }
  const coordinatorPos = o.store.getMeta<number>(positionKey.coordinator) ?? 0;
  if (
    !(await streamHolds(o.link, coordinatorPos)) ||
    (coordinatorPos === 0 && (await hasSnapshot(o.link, objectName.coordinator)))
  ) {
    if (await restoreCoordinator(o.link, o.store)) out.restored.push("coordinator");
  }
  // From now on every partition has a hint: local data without one is
  // data from before this directory joined the cluster.
  const missing: [string, unknown][] = [["cluster", o.link.names.cluster]];
  for (let p = 0; p < o.partitionCount; p++) {
    if (o.store.getMeta(positionKey.partition(p)) === undefined) {
      missing.push([positionKey.partition(p), { streamSeq: 0, journalSeq: 0 }]);
    }
  }
  await o.store.putMeta(missing);
  if (out.truncated.length > 0 || out.restored.length > 0 || out.unproven.length > 0) {
    o.logger.info(out, "data directory reconciled with the cluster");
  }
  return out;
}

async function hasSnapshot(link: ClusterLink, name: string): Promise<boolean> {
  return (await snapshotInfo(link, name)) !== null;
}

/** Whether the stream still holds the message at `seq` (0: nothing to hold). */
async function streamHolds(link: ClusterLink, seq: number): Promise<boolean> {
  if (seq === 0) return true;
  try {
    await link.jsm.streams.getMessage(link.names.stream, { seq });
    return true;
  } catch (err) {
    if (!notFound(err)) throw err;
    return false;
  }
}

/** The node's journal up to `hint.journalSeq` is the stream's: the stream's
 * message at the hint is the batch the node stored there. Null when proven,
 * else why not. */
async function provePrefix(
  o: { link: ClusterLink; store: Store },
  p: number,
  hint: PartitionPosition,
): Promise<string | null> {
  let m: Awaited<ReturnType<ClusterLink["jsm"]["streams"]["getMessage"]>>;
  try {
    m = await o.link.jsm.streams.getMessage(o.link.names.stream, { seq: hint.streamSeq });
  } catch (err) {
    // Purged below a snapshot: rebuild from it. Any other failure (NATS not
    // answering) proves nothing either way: give up, and try again later.
    if (!notFound(err)) throw err;
    return `stream message ${hint.streamSeq} is no longer in the stream`;
  }
  if (m.subject !== o.link.names.partition(p))
    return `stream message ${hint.streamSeq} is on ${m.subject}`;
  const last = Number((m.header.get(Header.Seq) ?? "").split("-")[1]);
  if (last !== hint.journalSeq)
    return `stream message ${hint.streamSeq} ends at seq ${last}, not ${hint.journalSeq}`;
  const local = o.store.journalRecord(p, hint.journalSeq);
  if (local !== undefined) {
    return Buffer.compare(local, Buffer.from(m.data)) === 0
      ? null
      : "the local batch differs from the stream's";
  }
  // Restored from the cluster's snapshot at exactly this point.
  return o.store.rawSnapshotKeys(p).some(([, seq]) => seq === hint.journalSeq)
    ? null
    : `no local batch or snapshot at seq ${hint.journalSeq}`;
}

/** JetStream's "no message found" (as opposed to no answer at all). */
function notFound(err: unknown): boolean {
  return /no message found/i.test((err as Error).message);
}
