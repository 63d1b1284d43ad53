import type { FramedBatch } from "../persistence/index.ts";
import type { Answers, Flat } from "./transport.ts";

// Messages between the engine (main thread) and its worker threads.

export const Op = {
  Receive: 1,
  Adjust: 2,
  Reserve: 3,
  Release: 4,
  Fulfil: 5,
  Position: 6,
  Digest: 7,
  Stats: 8,
  CheckInvariants: 9,
  Hold: 10,
  Prepare: 11,
  Confirm: 12,
  Abort: 13,
  Pin: 14,
  Unpin: 15,
  Pending: 16,
  /** A follower applies a batch the leader journaled (already in its store). */
  Apply: 17,
} as const;
export type Op = (typeof Op)[keyof typeof Op];

/** Upper bounds (ms) of the journal commit-time histogram's buckets; the
 * last count is of commits above them all. A commit's time is what its
 * callers wait: the transaction, its sync and, replicated, its publishes. */
export const commitMsBounds = [0.5, 1, 2, 5, 10, 20, 50, 100, 250, 500, 1000] as const;

/** How late a worker's event loop ran, over its last whole window. */
export interface LoopLag {
  p99Ms: number;
  maxMs: number;
}

/** A worker samples its event loop this often, and keeps the figures of
 * the last window of `loopLagWindowMs` (its own clock: what any caller of
 * stats reads, however often it calls). */
export const loopSamplingMs = 10;
export const loopLagWindowMs = 10_000;

export interface Stats {
  commands: number;
  commits: number;
  eventsJournaled: number;
  commitBatchEventsMax: number;
  commitMsTotal: number;
  /** Commits per bucket of `commitMsBounds` (not cumulative), and above. */
  commitMsCounts: number[];
  expired: number;
}

export function emptyStats(): Stats {
  return {
    commands: 0,
    commits: 0,
    eventsJournaled: 0,
    commitBatchEventsMax: 0,
    commitMsTotal: 0,
    commitMsCounts: new Array<number>(commitMsBounds.length + 1).fill(0),
    expired: 0,
  };
}

/** What a partition host answers to Op.Stats. */
export interface HostStats extends Stats {
  /** Last applied seq, by partition. */
  seqs: Record<number, number>;
  holds: number;
  positions: number;
  /** Its worker's event-loop lag (null in-process, or before a window ends). */
  loopLag: LoopLag | null;
}

/** Counts one commit of `ms` into its bucket. */
export function countCommit(stats: Stats, ms: number): void {
  let i = 0;
  while (i < commitMsBounds.length && ms > commitMsBounds[i]!) i++;
  stats.commitMsCounts[i]!++;
}

export interface WorkerConfig {
  dataDir: string;
  partitionIds: number[];
  partitionCount: number;
  durability: "fsync" | "relaxed";
  holdDurationMs: number;
  idempotencyWindowMs: number;
  wheelTickMs: number;
  /** The writer's epoch per partition (index = partition id). */
  epochs: number[];
  truncateDamagedTail: boolean;
  /** A follower applies the leader's batches and never writes its own:
   * no expiry pulse, no expiry at start-up, commands that write refused. */
  follower: boolean;
  /** Journal batches are replicated (sent to the main thread to publish)
   * before their commands are answered. */
  replicated: boolean;
  /** The window of the event-loop lag a worker reports (loopLagWindowMs). */
  loopLagWindowMs?: number;
}

/** A framed journal batch on its way to be replicated (its Buffer arrives
 * from a worker as a plain Uint8Array). */
export type PublishItem = Omit<FramedBatch, "bytes"> & { bytes: Uint8Array };

/** Main thread to worker. Commands of one event-loop turn travel together. */
export type ToWorker =
  | { t: "cmds"; ops: Op[]; args: Flat }
  | { t: "published"; id: number; error?: string }
  | { t: "promote"; epochs: number[] }
  | { t: "close" };

export interface RecoveryReport {
  partition: number;
  snapshotSeq: number;
  eventsReplayed: number;
  seq: number;
  expiredAtStart: number;
  truncatedRecords: number;
  skippedSnapshots: string[];
}

/** Worker to main thread. */
export type FromWorker =
  | { t: "ready"; recovered: RecoveryReport[] }
  | { t: "replies"; count: number; results: Answers }
  | { t: "fatal"; error: SerializedError }
  | { t: "publish"; id: number; items: PublishItem[] }
  | { t: "promoted"; expired: number }
  | { t: "closed" };

export interface SerializedError {
  name: string;
  message: string;
  partition?: number;
  seq?: number;
  lastGoodSeq?: number;
}

export interface SnapshotJob {
  dataDir: string;
  partitionIds: number[];
  config: {
    partitionCount: number;
    holdDurationMs: number;
    idempotencyWindowMs: number;
    wheelTickMs: number;
  };
}

export interface SnapshotReport {
  partition: number;
  seq: number;
  bytes: number;
  written: boolean;
}
