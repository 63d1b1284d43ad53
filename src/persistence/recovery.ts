import { Partition, type PartitionConfig } from "../engine/index.ts";
import { decodeSnapshot, encodeSnapshot } from "./codec.ts";
import { CorruptionError, type Store } from "./store.ts";
import { WireError } from "./wire.ts";

export interface RecoverOptions {
  /** Stop after this sequence number (inclusive). */
  untilSeq?: number;
  /** Stop before the first event later than this time. */
  untilTimeMs?: number;
  /** Ignore snapshots and replay the journal from empty. */
  fromEmpty?: boolean;
  /** Told of each damaged snapshot that recovery skipped. */
  onSkippedSnapshot?: (err: CorruptionError) => void;
  /** Told of progress every `progressEvery` events. */
  onProgress?: (eventsReplayed: number) => void;
}

export interface Recovered {
  partition: Partition;
  snapshotSeq: number;
  eventsReplayed: number;
}

/**
 * Rebuilds a partition: the newest valid snapshot (at or before the limit),
 * then the journal after it. A damaged snapshot is reported and skipped (the
 * journal is complete, so an older snapshot or empty still recovers); a
 * damaged journal record throws CorruptionError.
 */
export function recoverPartition(
  store: Store,
  id: number,
  config: PartitionConfig,
  options: RecoverOptions = {},
): Recovered {
  let partition: Partition | null = null;
  let snapshotSeq = 0;
  if (!options.fromEmpty) {
    for (const s of store.snapshotsNewestFirst(id)) {
      if (s instanceof CorruptionError) {
        options.onSkippedSnapshot?.(s);
        continue;
      }
      if (options.untilSeq !== undefined && s.seq > options.untilSeq) continue;
      try {
        const p = decodeSnapshot(s.payload, config);
        if (options.untilTimeMs !== undefined && p.timeMs > options.untilTimeMs) continue;
        if (p.id !== id || p.seq !== s.seq)
          throw new WireError("snapshot stored under the wrong key");
        partition = p;
        snapshotSeq = s.seq;
        break;
      } catch (err) {
        options.onSkippedSnapshot?.(
          new CorruptionError(id, s.seq, 0, "snapshot", (err as Error).message),
        );
      }
    }
  }
  const p = partition ?? new Partition(id, config);
  let eventsReplayed = 0;
  const done = () => options.untilSeq !== undefined && p.seq >= options.untilSeq;
  // Stop before reading the next record once the limit is reached: a damaged
  // record after the requested point must not stop a replay up to it.
  const records = done() ? [] : store.readJournal(id, p.seq + 1);
  outer: for (const { batch } of records) {
    for (const event of batch.events) {
      if (event.seq <= p.seq) continue;
      if (options.untilSeq !== undefined && event.seq > options.untilSeq) break outer;
      if (options.untilTimeMs !== undefined && event.timeMs > options.untilTimeMs) break outer;
      try {
        p.apply(event);
      } catch (err) {
        throw new CorruptionError(id, event.seq, event.seq - 1, "journal", (err as Error).message);
      }
      eventsReplayed++;
    }
    if (options.onProgress !== undefined && eventsReplayed % 65536 < batch.events.length) {
      options.onProgress(eventsReplayed);
    }
    if (done()) break;
  }
  return { partition: p, snapshotSeq, eventsReplayed };
}

/**
 * Takes a snapshot of a partition from the store alone (newest snapshot plus
 * the journal after it), never from a live partition: so it runs on its own
 * thread or process while reservations go on. Returns the new snapshot's seq
 * (or the old one's when nothing was journaled since).
 */
export async function snapshotPartition(
  store: Store,
  id: number,
  config: PartitionConfig,
  options: Pick<RecoverOptions, "onSkippedSnapshot" | "onProgress"> = {},
): Promise<{ seq: number; bytes: number; written: boolean }> {
  const { partition, snapshotSeq } = recoverPartition(store, id, config, options);
  if (partition.seq === snapshotSeq && snapshotSeq > 0) {
    return { seq: snapshotSeq, bytes: 0, written: false };
  }
  if (partition.seq === 0) return { seq: 0, bytes: 0, written: false };
  const payload = encodeSnapshot(partition);
  await store.putSnapshot(id, partition.seq, payload);
  return { seq: partition.seq, bytes: payload.length, written: true };
}
