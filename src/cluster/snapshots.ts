import type { Logger } from "pino";
import type { PartitionConfig } from "../engine/index.ts";
import {
  decodeSnapshot,
  encodeSnapshot,
  RecordKind,
  type RecordStore,
  type RecordWrite,
  recoverPartition,
  type Store,
} from "../persistence/index.ts";
import type { ClusterLink } from "./connection.ts";
import { type PartitionPosition, positionKey } from "./follower.ts";

// Snapshots in the cluster's object store, so that a new node (or one that
// fell behind what the stream keeps) starts from them. Each object says
// which stream position it covers; the leader purges the stream below it.

/** What a snapshot covers: the stream position of the last message in it. */
export type SnapshotInfo = PartitionPosition;

const objectName = {
  partition: (p: number) => `p.${p}`,
  records: "records",
  coordinator: "coordinator",
} as const;

async function putObject(
  link: ClusterLink,
  name: string,
  info: SnapshotInfo,
  data: Uint8Array,
): Promise<void> {
  await link.objects.putBlob({ name, description: JSON.stringify(info) }, data);
}

export async function snapshotInfo(link: ClusterLink, name: string): Promise<SnapshotInfo | null> {
  const info = await link.objects.info(name);
  if (info === null || info.deleted) return null;
  return JSON.parse(info.description ?? "null") as SnapshotInfo | null;
}

export interface PublishedSnapshots {
  partitions: { partition: number; journalSeq: number; streamSeq: number; bytes: number }[];
  records: SnapshotInfo | null;
  coordinator: SnapshotInfo | null;
  purgedMessages: number;
}

/**
 * The leader's snapshots: each partition up to its last batch in the
 * stream (never past it: a batch not yet stored by the cluster must not
 * reach a snapshot), the records and the coordinator's decisions as of
 * their stream positions; then the stream is purged below each.
 */
export async function publishSnapshots(o: {
  link: ClusterLink;
  store: Store;
  records: RecordStore;
  config: PartitionConfig;
  /** Each partition's last batch in the stream. */
  batches: Map<number, PartitionPosition>;
  logger: Logger;
}): Promise<PublishedSnapshots> {
  const out: PublishedSnapshots = {
    partitions: [],
    records: null,
    coordinator: null,
    purgedMessages: 0,
  };
  const purges: [subject: string, streamSeq: number][] = [];
  for (const [p, pos] of [...o.batches].sort((a, b) => a[0] - b[0])) {
    const { partition } = recoverPartition(o.store, p, o.config, { untilSeq: pos.journalSeq });
    if (partition.seq !== pos.journalSeq) {
      throw new Error(`partition ${p}: journal ends at ${partition.seq}, before ${pos.journalSeq}`);
    }
    const payload = encodeSnapshot(partition);
    await putObject(o.link, objectName.partition(p), pos, payload);
    out.partitions.push({ partition: p, ...pos, bytes: payload.length });
    purges.push([o.link.names.partition(p), pos.streamSeq]);
  }
  // Records and decisions with their positions, read in one synchronous
  // pass (one read transaction each).
  const records = dumpRecords(o.records);
  if (records.streamSeq > 0) {
    await putObject(
      o.link,
      objectName.records,
      { streamSeq: records.streamSeq, journalSeq: 0 },
      encodeJson(records.writes),
    );
    out.records = { streamSeq: records.streamSeq, journalSeq: 0 };
    purges.push([o.link.names.records, records.streamSeq]);
  }
  const coordinatorSeq = o.store.getMeta<number>(positionKey.coordinator) ?? 0;
  const decisions = [...o.store.allCoordinatorRecords()];
  if (coordinatorSeq > 0) {
    await putObject(
      o.link,
      objectName.coordinator,
      { streamSeq: coordinatorSeq, journalSeq: 0 },
      encodeJson(decisions),
    );
    out.coordinator = { streamSeq: coordinatorSeq, journalSeq: 0 };
    purges.push([o.link.names.coordinator, coordinatorSeq]);
  }
  // Keep the message at each position: a node proves its journal against it.
  for (const [subject, seq] of purges) {
    const r = await o.link.jsm.streams.purge(o.link.names.stream, { filter: subject, seq });
    out.purgedMessages += r.purged;
  }
  o.logger.info(
    { partitions: out.partitions.length, purged: out.purgedMessages },
    "snapshots published to the object store",
  );
  return out;
}

function dumpRecords(records: RecordStore): { streamSeq: number; writes: RecordWrite[] } {
  const streamSeq = records.getMeta<number>(positionKey.records) ?? 0;
  const writes: RecordWrite[] = [];
  for (const kind of Object.values(RecordKind)) {
    for (const { key, value } of records.all(kind)) writes.push({ kind, key, value });
  }
  return { streamSeq, writes };
}

function encodeJson(v: unknown): Uint8Array {
  return new TextEncoder().encode(JSON.stringify(v));
}

async function getJson<T>(link: ClusterLink, name: string): Promise<T> {
  const data = await link.objects.getBlob(name);
  if (data === null) throw new Error(`snapshot ${name} vanished from the object store`);
  return JSON.parse(new TextDecoder().decode(data)) as T;
}

/** Replaces a partition's journal and snapshots with the cluster's
 * snapshot; returns false when the cluster has none. */
export async function restorePartition(
  link: ClusterLink,
  store: Store,
  p: number,
  config: PartitionConfig,
): Promise<boolean> {
  const info = await snapshotInfo(link, objectName.partition(p));
  await store.dropPartition(p);
  if (info === null) {
    await store.putMeta([[positionKey.partition(p), { streamSeq: 0, journalSeq: 0 }]]);
    return false;
  }
  const data = await link.objects.getBlob(objectName.partition(p));
  if (data === null) throw new Error(`snapshot of partition ${p} vanished from the object store`);
  const partition = decodeSnapshot(data, config); // checks it before it replaces anything
  if (partition.seq !== info.journalSeq || partition.id !== p) {
    throw new Error(`snapshot of partition ${p} does not match its description`);
  }
  await store.putSnapshot(p, info.journalSeq, data);
  await store.putMeta([[positionKey.partition(p), info]]);
  return true;
}

/** Replaces the gateway's records with the cluster's snapshot of them. */
export async function restoreRecords(link: ClusterLink, records: RecordStore): Promise<boolean> {
  const info = await snapshotInfo(link, objectName.records);
  await records.clear();
  if (info === null) {
    await records.writeLocal([], [[positionKey.records, 0]]);
    return false;
  }
  const writes = await getJson<RecordWrite[]>(link, objectName.records);
  await records.writeLocal(writes, [[positionKey.records, info.streamSeq]]);
  return true;
}

export async function restoreCoordinator(link: ClusterLink, store: Store): Promise<boolean> {
  const info = await snapshotInfo(link, objectName.coordinator);
  await store.clearCoordinator();
  if (info === null) {
    await store.writeCoordinator([], false, [[positionKey.coordinator, 0]]);
    return false;
  }
  const writes = await getJson<{ key: string; value: unknown }[]>(link, objectName.coordinator);
  await store.writeCoordinator(writes, false, [[positionKey.coordinator, info.streamSeq]]);
  return true;
}

export { objectName };
