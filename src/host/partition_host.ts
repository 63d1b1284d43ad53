import {
  digestPartition,
  ErrorCode,
  fail,
  limits,
  type Partition,
  partitionOf,
  partitionOfHold,
} from "../engine/index.ts";
import {
  BatchEncoder,
  decodeBatch,
  type FramedBatch,
  type Store,
  unframe,
} from "../persistence/index.ts";
import {
  countCommit,
  emptyStats,
  type HostStats,
  type LoopLag,
  Op,
  type Op as OpCode,
  type Stats,
} from "./protocol.ts";
import {
  type Answers,
  type AnswerWriter,
  decodeCommand,
  encodeFailure,
  encodeResult,
  type Flat,
  newAnswers,
} from "./transport.ts";

export interface HostOptions {
  /** The writer's epoch per partition (index = partition id). */
  epochs: number[];
  /** A follower: applies the leader's batches, writes nothing itself. */
  follower?: boolean;
  /** Replicates journal batches; a command is answered once its batch is
   * both in the local store and replicated. A rejection is fatal. */
  replicate?: (batches: FramedBatch[]) => Promise<void>;
  partitionCount: number;
  now: () => number;
  /** Receives `count` answers in command order, flat-encoded. */
  onReplies: (count: number, results: Answers) => void;
  /** Told when the journal cannot be written: the host then stops. */
  onFatal: (err: Error) => void;
}

/**
 * Runs a set of partitions against one store with group commit: every
 * command that arrives while a journal transaction is in flight goes into
 * the next one, and a command's answer leaves only once the transaction
 * holding its events (and every one before it) is durable. Used inside a
 * worker thread, or in-process for tests and tools.
 */
export class PartitionHost {
  readonly partitions = new Map<number, Partition>();
  /** Events waiting for the next transaction, per partition, encoded as
   * they are emitted (see BatchEncoder). */
  private readonly pendingEvents = new Map<number, BatchEncoder>();
  private pendingEventCount = 0;
  /** Answers (flat-encoded) waiting for the next transaction to be durable. */
  private pendingCount = 0;
  private pendingResults: AnswerWriter = newAnswers();
  private inFlight: Promise<void> | null = null;
  /** The partition the running command was routed to. */
  private touched: Partition | null = null;
  private failed: Error | null = null;
  private closing = false;
  readonly stats: Stats = emptyStats();
  /** The hosting worker's event-loop lag (null in-process: the main
   * thread's is the process's own metric). */
  loopLag: (() => LoopLag | null) | null = null;

  constructor(
    private readonly store: Store,
    partitions: Partition[],
    private options: HostOptions,
  ) {
    for (const p of partitions) this.partitions.set(p.id, p);
  }

  /** Executes commands in order (flat-encoded, see transport.ts); their
   * answers follow, in the same order, once durable. */
  execute(ops: OpCode[], args: Flat): void {
    const ready = newAnswers();
    let readyCount = 0;
    const now = this.options.now();
    const cursor = { i: 0, j: 0 };
    for (let k = 0; k < ops.length; k++) {
      const op = ops[k]!;
      const cmd = decodeCommand(op, args, cursor);
      const result =
        this.failed !== null
          ? fail(ErrorCode.Unavailable, `journal failed: ${this.failed.message}`)
          : this.options.follower === true && writes(op)
            ? fail(ErrorCode.Unavailable, "this node follows: writes go to the leader")
            : this.run(op, cmd, now);
      this.stats.commands++;
      // A command touches at most the partition it was routed to.
      const touched = this.touched;
      if (touched !== null && touched.outbox.length > 0) this.collectFrom(touched);
      this.touched = null;
      if (this.inFlight === null && this.pendingEventCount === 0 && this.pendingCount === 0) {
        // Nothing is waiting to be durable: the answer can leave now.
        encodeResult(op, result, ready);
        readyCount++;
      } else {
        encodeResult(op, result, this.pendingResults);
        this.pendingCount++;
        // Start the transaction early when none is in flight, so that its
        // sync overlaps the rest of this batch.
        if (this.inFlight === null && this.pendingEventCount >= limits.commitEarlyEventCount) {
          this.maybeCommit();
        }
      }
    }
    if (readyCount > 0) this.options.onReplies(readyCount, ready.finish());
    this.maybeCommit();
  }

  /** The expiry pulse: bounded per partition per call. */
  pulse(): void {
    if (this.failed !== null || this.closing || this.options.follower === true) return;
    const now = this.options.now();
    for (const p of this.partitions.values()) {
      if (p.wheel.count === 0) continue;
      this.stats.expired += p.expire(now, limits.expireCountMaxPerPulse);
    }
    this.collectEvents();
    this.maybeCommit();
  }

  /**
   * A follower becomes the leader, in place: its memory is its journal is
   * the stream (it applied everything before), so nothing is reloaded. From
   * now on it writes with the new epochs, replicates, and expires holds;
   * those whose deadline passed expire at once (journaled). Resolves with
   * how many expired so.
   */
  async promote(
    epochs: number[],
    replicate: (batches: FramedBatch[]) => Promise<void>,
  ): Promise<number> {
    if (this.pendingEventCount !== 0) throw new Error("promote: a follower has events to journal");
    this.options = { ...this.options, follower: false, epochs, replicate };
    // Replicated batches have their own size bound (see collectFrom).
    this.pendingEvents.clear();
    const before = this.stats.expired;
    for (;;) {
      const round = this.stats.expired;
      this.pulse();
      await this.drain();
      if (this.stats.expired === round || this.failed !== null) break;
    }
    return this.stats.expired - before;
  }

  /** Waits until everything executed so far is durable and answered. */
  async drain(): Promise<void> {
    while (this.inFlight !== null) await this.inFlight;
  }

  async close(): Promise<void> {
    this.closing = true;
    await this.drain();
  }

  private run(op: OpCode, arg: unknown, now: number): unknown {
    // biome-ignore lint/suspicious/noExplicitAny: arguments are validated by the partition
    const a = arg as any;
    switch (op) {
      case Op.Receive:
        return this.byProduct(a?.productId)?.receiveStock(a, now) ?? badProduct();
      case Op.Adjust:
        return this.byProduct(a?.productId)?.adjustStock(a, now) ?? badProduct();
      case Op.Reserve:
        // Validated and routed by the engine, decoded for this call alone.
        return this.byProduct(a?.lines?.[0]?.productId)?.reserve(a, now, true) ?? badLines(a);
      case Op.Release:
        return this.byHold(a?.holdId)?.release(a, now) ?? holdNotFound(a?.holdId);
      case Op.Fulfil:
        return this.byHold(a?.holdId)?.fulfil(a, now) ?? holdNotFound(a?.holdId);
      case Op.Position: {
        const p = this.byProduct(a?.productId);
        if (p === null) return badProduct();
        const views = [];
        for (const w of a.warehouseIds as string[]) {
          const v = p.position(a.productId, w);
          if (v !== null) views.push(v);
        }
        return { ok: true, positions: views };
      }
      case Op.Prepare:
        return this.byProduct(a?.lines?.[0]?.productId)?.prepare(a, now) ?? badLines(a);
      case Op.Confirm:
        return this.byHold(a?.holdId)?.confirm(a, now) ?? holdNotFound(a?.holdId);
      case Op.Abort:
        return this.byHold(a?.holdId)?.abort(a, now) ?? holdNotFound(a?.holdId);
      case Op.Pin:
        return this.byHold(a?.holdId)?.pin(a, now) ?? holdNotFound(a?.holdId);
      case Op.Unpin:
        return this.byHold(a?.holdId)?.unpin(a, now) ?? holdNotFound(a?.holdId);
      case Op.Pending: {
        const holds = [];
        for (const p of this.partitions.values()) holds.push(...p.pendingHolds());
        return { ok: true, holds };
      }
      case Op.Hold: {
        const p = this.byHold(a?.holdId);
        return { ok: true, hold: p?.hold(a.holdId) ?? null };
      }
      case Op.Digest: {
        const out: Record<number, string> = {};
        for (const p of this.partitions.values()) out[p.id] = digestPartition(p);
        return { ok: true, digests: out };
      }
      case Op.Stats: {
        const seqs: Record<number, number> = {};
        let holds = 0;
        let positions = 0;
        for (const p of this.partitions.values()) {
          seqs[p.id] = p.seq;
          holds += p.holdCount;
          positions += p.positions.size;
        }
        const stats: HostStats = {
          ...this.stats,
          seqs,
          holds,
          positions,
          loopLag: this.loopLag?.() ?? null,
        };
        return { ok: true, stats };
      }
      case Op.Apply:
        return this.apply(a as { partition: number; bytes: Uint8Array });
      case Op.CheckInvariants:
        for (const p of this.partitions.values()) p.checkInvariants();
        return { ok: true };
      default:
        return fail(ErrorCode.InvalidArgument, `unknown operation ${op}`);
    }
  }

  /** A follower applies a batch the leader journaled (its main thread has
   * stored it): events it already has are skipped, a gap is a bug. */
  private apply(a: { partition: number; bytes: Uint8Array }): unknown {
    const p = this.partitions.get(a.partition);
    if (p === undefined || this.options.follower !== true) {
      return fail(ErrorCode.InvalidArgument, `partition ${a.partition} is not followed here`);
    }
    const batch = decodeBatch(unframe(a.bytes));
    for (const event of batch.events) {
      if (event.seq <= p.seq) continue;
      if (event.seq !== p.seq + 1) {
        return fail(ErrorCode.Unavailable, `partition ${p.id}: gap before seq ${event.seq}`);
      }
      p.apply(event);
      this.stats.eventsJournaled++;
    }
    return { ok: true, seq: p.seq };
  }

  private byProduct(productId: unknown): Partition | null {
    if (typeof productId !== "string") return null;
    const p = this.partitions.get(partitionOf(productId, this.options.partitionCount)) ?? null;
    this.touched = p;
    return p;
  }

  private byHold(holdId: unknown): Partition | null {
    if (typeof holdId !== "number" || !Number.isSafeInteger(holdId) || holdId < 0) return null;
    const p = this.partitions.get(partitionOfHold(holdId)) ?? null;
    this.touched = p;
    return p;
  }

  private collectEvents(): void {
    for (const p of this.partitions.values()) if (p.outbox.length > 0) this.collectFrom(p);
  }

  private collectFrom(p: Partition): void {
    const events = p.takeOutbox();
    let pending = this.pendingEvents.get(p.id);
    if (pending === undefined) {
      // A replicated batch is one message: keep it well under NATS's payload limit.
      const countMax =
        this.options.replicate === undefined
          ? limits.journalBatchEventCountMax
          : limits.replicatedBatchEventCountMax;
      pending = new BatchEncoder(p.id, countMax);
      this.pendingEvents.set(p.id, pending);
    }
    for (const e of events) pending.add(e);
    this.pendingEventCount += events.length;
  }

  private maybeCommit(): void {
    if (this.inFlight !== null || this.failed !== null) return;
    if (this.pendingEventCount === 0) {
      if (this.pendingCount > 0) {
        this.options.onReplies(this.pendingCount, this.pendingResults.finish());
      }
      this.pendingCount = 0;
      this.pendingResults = newAnswers();
      return;
    }
    const eventCount = this.pendingEventCount;
    const records = this.takeBatches();
    const count = this.pendingCount;
    const results = this.pendingResults;
    this.pendingCount = 0;
    this.pendingResults = newAnswers();
    const started = performance.now();
    const replicate = this.options.replicate;
    const written =
      replicate === undefined
        ? this.store.appendFramed(records)
        : Promise.all([this.store.appendFramed(records), replicate(records)]);
    this.inFlight = written.then(
      () => {
        this.stats.commits++;
        this.stats.eventsJournaled += eventCount;
        const ms = performance.now() - started;
        this.stats.commitMsTotal += ms;
        countCommit(this.stats, ms);
        if (eventCount > this.stats.commitBatchEventsMax)
          this.stats.commitBatchEventsMax = eventCount;
        this.inFlight = null;
        if (count > 0) this.options.onReplies(count, results.finish());
        this.maybeCommit();
      },
      (err: Error) => this.fatal(err, count),
    );
  }

  private takeBatches(): FramedBatch[] {
    const batches: FramedBatch[] = [];
    for (const [partition, pending] of this.pendingEvents) {
      if (pending.count === 0) continue;
      for (const b of pending.finish(this.options.epochs[partition] ?? 0)) batches.push(b);
    }
    this.pendingEventCount = 0;
    return batches;
  }

  /** The journal failed: memory now holds events that may not be durable,
   * so nothing more is answered ok. The process must restart and recover. */
  private fatal(err: Error, inFlightCount: number): void {
    this.failed = err;
    this.inFlight = null;
    const unavailable = fail(ErrorCode.Unavailable, `journal write failed: ${err.message}`);
    const count = inFlightCount + this.pendingCount;
    const results = newAnswers();
    for (let i = 0; i < count; i++) encodeFailure(unavailable, results);
    this.pendingCount = 0;
    this.pendingResults = newAnswers();
    // Events waiting for the next transaction will never be journaled: with
    // them gone, later commands are answered (Unavailable) at once instead
    // of waiting for a transaction that never comes.
    this.pendingEvents.clear();
    this.pendingEventCount = 0;
    this.options.onReplies(count, results.finish());
    this.options.onFatal(err);
  }
}

/** Commands that change state (refused on a follower). */
function writes(op: OpCode): boolean {
  switch (op) {
    case Op.Receive:
    case Op.Adjust:
    case Op.Reserve:
    case Op.Release:
    case Op.Fulfil:
    case Op.Prepare:
    case Op.Confirm:
    case Op.Abort:
    case Op.Pin:
    case Op.Unpin:
      return true;
    default:
      return false;
  }
}

function badProduct() {
  return fail(ErrorCode.InvalidArgument, "productId must be a non-empty string");
}

function badLines(a: unknown) {
  const lines = (a as { lines?: unknown } | null)?.lines;
  if (!Array.isArray(lines) || lines.length === 0) {
    return fail(ErrorCode.InvalidArgument, "lines must not be empty");
  }
  return fail(ErrorCode.InvalidArgument, "lines[0]: productId must be a non-empty string");
}

function holdNotFound(holdId: unknown) {
  if (
    typeof holdId !== "number" ||
    !Number.isSafeInteger(holdId) ||
    holdId < limits.partitionCountMax
  ) {
    return fail(ErrorCode.InvalidArgument, "holdId must be a hold id");
  }
  return fail(ErrorCode.HoldNotFound, `hold ${holdId} not found`);
}
