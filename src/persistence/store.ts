import { mkdirSync } from "node:fs";
import { join } from "node:path";
import { type Database, open, type RootDatabase } from "lmdb";
import { limits } from "../engine/index.ts";
import {
  type Batch,
  ChecksumError,
  decodeBatch,
  encodeBatch,
  type FramedBatch,
  frame,
  unframe,
} from "./codec.ts";
import { WireError } from "./wire.ts";

/** `fsync`: a caller is answered after its journal transaction is synced to
 * disk. `relaxed`: answered once the transaction is committed (written to the
 * OS); its fsync runs right after, overlapping the next transaction. A process
 * crash loses nothing acknowledged; a power cut or kernel crash can lose the
 * transactions whose fsync had not finished (the last few ms), never more,
 * and LMDB then opens at the last synced transaction, intact. */
export type Durability = "fsync" | "relaxed";

export const storeFormatVersion = 1;

export interface StoreMeta {
  formatVersion: number;
  partitionCount: number;
  /** Fixed per data directory: replay must forget what the engine forgot. */
  idempotencyWindowMs: number;
  createTimeMs: number;
}

/** A journal record or snapshot that failed its checksum or did not decode. */
export class CorruptionError extends Error {
  override name = "CorruptionError";
  constructor(
    readonly partition: number,
    /** The record's last sequence number (journal) or its seq (snapshot). */
    readonly seq: number,
    /** The last good sequence number before it. */
    readonly lastGoodSeq: number,
    readonly what: "journal" | "snapshot",
    /** What was wrong with the record (checksum mismatch, gap, ...). */
    readonly detail: string,
  ) {
    super(
      `corrupted ${what} record in partition ${partition} at seq ${seq} ` +
        `(last good seq ${lastGoodSeq}): ${detail}`,
    );
  }
}

/** Replicates the coordinator's writes: stores them in the cluster, then
 * here (`writeCoordinator(writes, false, meta)`). */
export interface CoordinatorReplica {
  replicateCoordinator(writes: { key: string; value: unknown }[]): Promise<void>;
}

/** A write this node cannot make now (it no longer leads, or its replica
 * did not answer): the caller should retry, here or on the leader. */
export class UnavailableError extends Error {
  override name = "UnavailableError";
}

export class DataDirError extends Error {
  override name = "DataDirError";
}

function framed(b: Batch): FramedBatch {
  return {
    partition: b.partition,
    firstSeq: b.firstSeq,
    lastSeq: b.lastSeq,
    epoch: b.epoch,
    bytes: frame(encodeBatch(b)),
  };
}

export interface JournalRecord {
  batch: Batch;
  /** Size of the stored record in bytes. */
  bytes: number;
}

export interface StoreOptions {
  durability?: Durability;
  readOnly?: boolean;
}

/**
 * The data directory: one LMDB environment holding the journal (key
 * [partition, lastSeq]), snapshots (key [partition, seq]) and metadata.
 * Every worker thread opens its own Store on the same directory.
 */
export class Store {
  private constructor(
    readonly dir: string,
    private readonly root: RootDatabase,
    private readonly journal: Database<Buffer, [number, number]>,
    private readonly snapshots: Database<Buffer, [number, number]>,
    private readonly meta: Database<unknown, string>,
    private readonly coordinator: Database<unknown, string>,
    readonly durability: Durability,
  ) {}

  static open(dir: string, options: StoreOptions = {}): Store {
    const durability = options.durability ?? "fsync";
    if (!options.readOnly) mkdirSync(dir, { recursive: true });
    let root: RootDatabase;
    try {
      root = open({
        path: join(dir, "stockd.mdb"),
        // fsync: a commit's promise resolves once synced. relaxed: once
        // committed, with the sync overlapping the next commit.
        overlappingSync: durability === "relaxed",
        readOnly: options.readOnly ?? false,
        maxDbs: 8,
        mapSize: 1 << 30,
      });
    } catch (err) {
      throw new DataDirError(`cannot open data directory ${dir}: ${(err as Error).message}`);
    }
    const journal = root.openDB<Buffer, [number, number]>("journal", { encoding: "binary" });
    const snapshots = root.openDB<Buffer, [number, number]>("snapshots", { encoding: "binary" });
    const meta = root.openDB<unknown, string>("meta", { encoding: "json" });
    const coordinator = root.openDB<unknown, string>("coordinator", {
      encoding: "json",
    });
    return new Store(dir, root, journal, snapshots, meta, coordinator, durability);
  }

  /** Reads the directory's metadata, creating it on first use. The
   * settings fixed per data directory must match when given. */
  async initMeta(
    wanted: { partitionCount?: number | undefined; idempotencyWindowMs?: number | undefined },
    nowMs: number,
  ): Promise<StoreMeta> {
    const known = this.readMeta();
    if (known !== null) {
      const fixed = [
        ["partitionCount", "partitions", "the partition count"],
        ["idempotencyWindowMs", "ms of idempotency window", "the idempotency window"],
      ] as const;
      for (const [key, unit, name] of fixed) {
        const w = wanted[key];
        if (w !== undefined && w !== known[key]) {
          throw new DataDirError(
            `${this.dir} has ${known[key]} ${unit}; ${name} is fixed per data directory (asked for ${w})`,
          );
        }
      }
      return known;
    }
    const count = wanted.partitionCount ?? limits.partitionCountDefault;
    if (!(Number.isInteger(count) && count >= 1 && count <= limits.partitionCountMax)) {
      throw new DataDirError(`partition count must be 1..${limits.partitionCountMax}`);
    }
    const window = wanted.idempotencyWindowMs ?? limits.idempotencyWindowMsDefault;
    if (!(Number.isSafeInteger(window) && window >= 1)) {
      throw new DataDirError("idempotency window must be a positive number of milliseconds");
    }
    const fresh: StoreMeta = {
      formatVersion: storeFormatVersion,
      partitionCount: count,
      idempotencyWindowMs: window,
      createTimeMs: nowMs,
    };
    await this.meta.put("meta", fresh);
    return fresh;
  }

  readMeta(): StoreMeta | null {
    const m = this.meta.get("meta") as StoreMeta | undefined;
    if (m === undefined) return null;
    if (m.formatVersion !== storeFormatVersion) {
      throw new DataDirError(
        `${this.dir} has format ${m.formatVersion}; this stockd reads ${storeFormatVersion}`,
      );
    }
    return m;
  }

  /** Appends batches in one transaction; resolves once durable (per mode). */
  append(batches: Batch[]): Promise<void> {
    return this.appendFramed(batches.map(framed));
  }

  /** Appends batches already framed (see `framed`) in one transaction,
   * with `meta` entries (a follower's stream positions) in the same one. */
  appendFramed(batches: FramedBatch[], meta: [key: string, value: unknown][] = []): Promise<void> {
    // Plain puts issued in one turn go into one transaction, run entirely on
    // lmdb's write thread (a transaction callback would wait for this thread).
    let last: Promise<boolean> | null = null;
    for (const b of batches) last = this.journal.put([b.partition, b.lastSeq], b.bytes);
    for (const [k, v] of meta) last = this.meta.put(k, v);
    return last === null ? Promise.resolve() : last.then(() => undefined);
  }

  /** The stored (framed) journal record ending at `lastSeq`, unchecked. */
  journalRecord(partition: number, lastSeq: number): Buffer | undefined {
    return this.journal.get([partition, lastSeq]);
  }

  getMeta<T>(key: string): T | undefined {
    return this.meta.get(key) as T | undefined;
  }

  putMeta(entries: [key: string, value: unknown][]): Promise<void> {
    return this.root.transaction(() => {
      for (const [k, v] of entries) this.meta.putSync(k, v);
    }) as Promise<void>;
  }

  /** Deletes a partition's snapshots taken after `seq` (they may hold
   * events the cluster never stored). */
  async dropSnapshotsAfter(partition: number, seq: number): Promise<number> {
    const keys = [
      ...this.snapshots.getKeys({ start: [partition, seq + 1], end: [partition + 1, 0] }),
    ];
    if (keys.length > 0) {
      await this.root.transaction(() => {
        for (const k of keys) this.snapshots.removeSync(k);
      });
    }
    return keys.length;
  }

  /** Deletes everything of one partition: journal and snapshots. */
  async dropPartition(partition: number): Promise<void> {
    const journal = [...this.journal.getKeys({ start: [partition, 0], end: [partition + 1, 0] })];
    const snaps = [...this.snapshots.getKeys({ start: [partition, 0], end: [partition + 1, 0] })];
    await this.root.transaction(() => {
      for (const k of journal) this.journal.removeSync(k);
      for (const k of snaps) this.snapshots.removeSync(k);
    });
  }

  /**
   * The journal of one partition from `fromSeq` on, checked record by record
   * (checksum, decoding, partition, no gap). Throws CorruptionError at the
   * first bad record.
   */
  *readJournal(partition: number, fromSeq = 1): Generator<JournalRecord> {
    let last = fromSeq - 1;
    let first = true;
    const range = this.journal.getRange({ start: [partition, fromSeq], end: [partition + 1, 0] });
    for (const { key, value } of range) {
      const seq = key[1];
      let batch: Batch;
      try {
        batch = decodeBatch(unframe(value));
      } catch (err) {
        if (err instanceof ChecksumError || err instanceof WireError) {
          throw new CorruptionError(partition, seq, last, "journal", err.message);
        }
        throw err;
      }
      if (batch.partition !== partition || batch.lastSeq !== seq) {
        throw new CorruptionError(
          partition,
          seq,
          last,
          "journal",
          "record stored under the wrong key",
        );
      }
      // The first record may start before `fromSeq` (a batch spans it).
      if (first ? batch.firstSeq > fromSeq : batch.firstSeq !== last + 1) {
        throw new CorruptionError(
          partition,
          seq,
          last,
          "journal",
          `gap: record starts at seq ${batch.firstSeq}`,
        );
      }
      first = false;
      last = batch.lastSeq;
      yield { batch, bytes: value.length };
    }
  }

  /** The last sequence number journaled for a partition (0 if none). */
  lastSeq(partition: number): number {
    for (const key of this.journal.getKeys({
      start: [partition + 1, 0],
      end: [partition, 0],
      reverse: true,
      limit: 1,
    })) {
      return key[1];
    }
    return 0;
  }

  /** Deletes journal records of a partition whose last seq is >= `fromSeq`. */
  async truncateFrom(partition: number, fromSeq: number): Promise<number> {
    const keys = [
      ...this.journal.getKeys({ start: [partition, fromSeq], end: [partition + 1, 0] }),
    ];
    await this.root.transaction(() => {
      for (const k of keys) this.journal.removeSync(k);
    });
    return keys.length;
  }

  async putSnapshot(partition: number, seq: number, payload: Uint8Array): Promise<void> {
    await this.snapshots.put([partition, seq], frame(payload));
    // Keep the two newest: the older one is the fallback if the newest is damaged.
    const keys = [
      ...this.snapshots.getKeys({ start: [partition, seq], end: [partition, 0], reverse: true }),
    ];
    const old = keys.slice(2);
    if (old.length > 0) {
      await this.root.transaction(() => {
        for (const k of old) this.snapshots.removeSync(k);
      });
    }
  }

  /** Snapshots of a partition, newest first, each checked: either its
   * payload or the corruption found in it. */
  *snapshotsNewestFirst(
    partition: number,
  ): Generator<{ seq: number; payload: Uint8Array } | CorruptionError> {
    for (const { key, value } of this.snapshots.getRange({
      start: [partition + 1, 0],
      end: [partition, 0],
      reverse: true,
    })) {
      try {
        yield { seq: key[1], payload: unframe(value) };
      } catch (err) {
        yield new CorruptionError(partition, key[1], 0, "snapshot", (err as Error).message);
      }
    }
  }

  // Raw access to stored records, for the corruption tests.

  rawJournalKeys(partition: number): [number, number][] {
    return [...this.journal.getKeys({ start: [partition, 0], end: [partition + 1, 0] })];
  }

  rawGetJournal(key: [number, number]): Buffer | undefined {
    return this.journal.get(key);
  }

  async rawPutJournal(key: [number, number], value: Buffer): Promise<void> {
    await this.journal.put(key, value);
  }

  async rawPutSnapshot(key: [number, number], value: Buffer): Promise<void> {
    await this.snapshots.put(key, value);
  }

  rawSnapshotKeys(partition: number): [number, number][] {
    return [...this.snapshots.getKeys({ start: [partition, 0], end: [partition + 1, 0] })];
  }

  rawGetSnapshot(key: [number, number]): Buffer | undefined {
    return this.snapshots.get(key);
  }

  /** The coordinator's records (reservations spanning partitions and their
   * decisions), written durably per mode. */
  putCoordinatorRecords(records: [key: string, value: unknown][]): Promise<void> {
    return this.writeCoordinator(records.map(([key, value]) => ({ key, value })));
  }

  removeCoordinatorRecords(keys: string[]): Promise<void> {
    return this.writeCoordinator(keys.map((key) => ({ key, value: null })));
  }

  /** Where the coordinator's writes are replicated (a cluster node's). */
  replica: CoordinatorReplica | null = null;

  /** Writes (null removes) coordinator records in one transaction; with a
   * replica, resolves once both the transaction and the replica hold them. */
  writeCoordinator(
    writes: { key: string; value: unknown }[],
    replicate = true,
    meta: [key: string, value: unknown][] = [],
  ): Promise<void> {
    if (this.replica !== null && replicate) return this.replica.replicateCoordinator(writes);
    return this.root.transaction(() => {
      for (const w of writes) {
        if (w.value === null) this.coordinator.removeSync(w.key);
        else this.coordinator.putSync(w.key, w.value);
      }
      for (const [k, v] of meta) this.meta.putSync(k, v);
    }) as Promise<void>;
  }

  /** Every coordinator record (a snapshot of them). */
  *allCoordinatorRecords(): Generator<{ key: string; value: unknown }> {
    for (const { key, value } of this.coordinator.getRange()) yield { key, value };
  }

  async clearCoordinator(): Promise<void> {
    await this.root.transaction(() => {
      for (const k of this.coordinator.getKeys()) this.coordinator.removeSync(k);
    });
  }

  /** Records whose key starts with `prefix` (e.g. "g:"), in key order. */
  *coordinatorRecords(prefix: string): Generator<{ key: string; value: unknown }> {
    const end = prefix.slice(0, -1) + String.fromCharCode(prefix.charCodeAt(prefix.length - 1) + 1);
    for (const { key, value } of this.coordinator.getRange({ start: prefix, end })) {
      yield { key, value };
    }
  }

  async close(): Promise<void> {
    await this.root.close();
  }
}
