import { availableParallelism } from "node:os";
import { extname } from "node:path";
import { fileURLToPath } from "node:url";
import { Worker } from "node:worker_threads";
import {
  type AdjustResult,
  type AdjustStock,
  ErrorCode,
  type Failure,
  Fifo,
  type FulfilHold,
  type FulfilResult,
  fail,
  type HoldView,
  limits,
  type PositionView,
  type PrepareHold,
  partitionOf,
  partitionOfHold,
  type ReceiveResult,
  type ReceiveStock,
  type ReleaseHold,
  type ReleaseResult,
  type ReserveResult,
  type ReserveStock,
  validateAdjust,
  validateFulfil,
  validateReceive,
  validateRelease,
  validateReserve,
} from "../engine/index.ts";
import {
  type CoordinatorReplica,
  CorruptionError,
  DataDirError,
  type Durability,
  Store,
  type StoreMeta,
  UnavailableError,
} from "../persistence/index.ts";
import { bootHost } from "./boot.ts";
import { Coordinator } from "./coordinator.ts";
import type { PartitionHost } from "./partition_host.ts";
import {
  emptyStats,
  type FromWorker,
  type HostStats,
  type LoopLag,
  Op,
  type PublishItem,
  type RecoveryReport,
  type SerializedError,
  type SnapshotJob,
  type SnapshotReport,
  type ToWorker,
  type WorkerConfig,
} from "./protocol.ts";
import {
  type Answers,
  decodeResult,
  encodeCommand,
  type Flat,
  FlatWriter,
  forPost,
} from "./transport.ts";

export interface EngineOptions {
  dataDir: string;
  /** Only for a new data directory; afterwards it is read from the directory. */
  partitionCount?: number;
  /** How long request ids and ended holds are remembered. Fixed per data
   * directory like the partition count (replay must forget exactly what the
   * live engine forgot): only for a new one. */
  idempotencyWindowMs?: number;
  /** Worker threads; 0 runs the partitions on the calling thread (tests,
   * tools). Default: the machine's cores. */
  workerCount?: number;
  /** Cores the default worker count leaves to the calling thread (a server's
   * gateway): workers = cores - spare, at least 1. */
  spareCoreCount?: number;
  durability?: Durability;
  holdDurationMs?: number;
  wheelTickMs?: number;
  /** Start even on a damaged journal by deleting the damaged record and
   * everything after it in that partition. */
  truncateDamagedTail?: boolean;
  /** The clock, for `workerCount: 0` only (workers use the system clock). */
  now?: () => number;
  /** Disable the expiry pulse timer (`workerCount: 0`; call `pulse()`). */
  manualPulse?: boolean;
  /** Take snapshots in the background when this many events were journaled
   * since the last one (0: never; `snapshot()` still works). */
  snapshotEveryEvents?: number;
  /** How often to check whether a background snapshot is due. */
  snapshotCheckMs?: number;
  /** Commands queued for one worker before new ones are refused OVERLOADED
   * (default limits.workerQueueCountMax). */
  queueCountMax?: number;
  /** Told once when the engine breaks down while running (the journal
   * failed, a worker died): from then on every command is UNAVAILABLE. */
  onBroken?: (why: string) => void;
  /** A cluster follower: applies the leader's batches (`apply`), writes
   * nothing, runs no expiry. */
  follower?: boolean;
  /** The writer's epoch per partition (a cluster leader's lease epochs). */
  epochs?: number[];
  /** Replicates every journal batch before its commands are answered. */
  replicate?: (items: PublishItem[]) => Promise<void>;
  /** Replicates the coordinator's records (given the coordinator's store). */
  coordinatorReplica?: (store: Store) => CoordinatorReplica;
  /** The window over which workers report their event-loop lag
   * (default 10 s; shorter in tests). */
  loopLagWindowMs?: number;
}

export interface EngineStats extends Omit<HostStats, "loopLag"> {
  queueDepths: number[];
  /** Per worker, the messages that carried commands to it (the commands of
   * one event-loop turn travel together). */
  messagesSent: number[];
  /** Per worker (null in-process, or before its first window ends). */
  loopLags: (LoopLag | null)[];
}

/** A journal is damaged and start-up was refused. */
export class StartupError extends Error {
  override name = "StartupError";
  constructor(
    message: string,
    readonly partition?: number,
    readonly seq?: number,
  ) {
    super(message);
  }
}

interface Link {
  /** Copies or consumes the batch before it returns: the caller reuses it. */
  send(ops: Op[], args: Flat): void;
  /** A follower's host becomes the leader's; resolves with the holds it
   * expired at once. */
  promote(epochs: number[]): Promise<number>;
  close(): Promise<void>;
}

interface Outbox {
  ops: Op[];
  args: FlatWriter;
}

/** A command sent and not yet answered. Answers come back in send order. */
interface Waiting {
  op: Op;
  cmd: unknown;
  /** Called with the answer and `index`: a promise's resolve, or one
   * settle function shared by a batch's commands (reserveMany). */
  resolve: Settle;
  index: number;
}

type Settle = (result: unknown, index: number) => void;

/**
 * The engine: partitions hosted on worker threads (or in-process), reached
 * through one async API. Commands of one event-loop turn travel to a worker
 * as one message; answers come back in batches once durable.
 */
export class Engine {
  private readonly waiting: Fifo<Waiting>[];
  private readonly outboxes: Outbox[];
  /** Per worker, the outbox last sent, emptied for the next flush: no new
   * arrays per flush. */
  private readonly spares: Outbox[];
  private readonly depth: number[];
  private readonly messagesSent: number[];
  private flushScheduled = false;
  broken: string | null = null;
  private closed = false;
  private readonly inProcess: PartitionHost[] = [];
  private pulseTimer: NodeJS.Timeout | null = null;
  private snapshotTimer: NodeJS.Timeout | null = null;
  private snapshotRunning: Promise<SnapshotReport[]> | null = null;
  private eventsAtLastSnapshot = 0;
  private snapshotConfig!: SnapshotJob["config"];
  recovered: RecoveryReport[] = [];
  /** What start-up did with reservations spanning partitions. */
  reconciled = { confirmed: 0, aborted: 0, unpinned: 0, settled: 0 };
  private coordinator!: Coordinator;
  private coordinatorStore!: Store;
  private pruneTimer: NodeJS.Timeout | null = null;
  private queueCountMax: number = limits.workerQueueCountMax;
  /** How long request ids are remembered (fixed per data directory). */
  idempotencyWindowMs = 0;
  /** A cluster follower (see EngineOptions.follower). */
  follower = false;
  /** Where journal batches are replicated (a cluster leader's). */
  replicateFn: ((items: PublishItem[]) => Promise<void>) | null = null;
  private manualPulse = false;
  private wheelTickMs = 0;
  /** Breaks the engine down and tells its owner (a journal failed). */
  private journalFailed: (why: string) => void = () => undefined;

  private constructor(
    readonly dataDir: string,
    readonly partitionCount: number,
    private readonly links: Link[],
  ) {
    this.outboxes = links.map(() => ({ ops: [], args: new FlatWriter() }));
    this.spares = links.map(() => ({ ops: [], args: new FlatWriter() }));
    this.waiting = links.map(() => new Fifo<Waiting>());
    this.depth = links.map(() => 0);
    this.messagesSent = links.map(() => 0);
  }

  static async open(options: EngineOptions): Promise<Engine> {
    const store = Store.open(options.dataDir, { durability: options.durability ?? "fsync" });
    let meta: StoreMeta;
    try {
      meta = await store.initMeta(
        {
          partitionCount: options.partitionCount,
          idempotencyWindowMs: options.idempotencyWindowMs,
        },
        Date.now(),
      );
    } finally {
      await store.close();
    }
    const partitionCount = meta.partitionCount;
    const workerCount =
      options.workerCount ??
      Math.min(Math.max(1, availableParallelism() - (options.spareCoreCount ?? 0)), partitionCount);
    if (!(Number.isInteger(workerCount) && workerCount >= 0 && workerCount <= partitionCount)) {
      throw new DataDirError(`worker count must be 0..${partitionCount}`);
    }
    const hostCount = Math.max(workerCount, 1);
    const configs: WorkerConfig[] = [];
    for (let w = 0; w < hostCount; w++) {
      const partitionIds: number[] = [];
      for (let p = w; p < partitionCount; p += hostCount) partitionIds.push(p);
      configs.push({
        dataDir: options.dataDir,
        partitionIds,
        partitionCount,
        durability: options.durability ?? "fsync",
        holdDurationMs: options.holdDurationMs ?? limits.holdDurationMsDefault,
        idempotencyWindowMs: meta.idempotencyWindowMs,
        wheelTickMs: options.wheelTickMs ?? limits.wheelTickMsDefault,
        epochs: options.epochs ?? Array.from({ length: partitionCount }, () => 1),
        truncateDamagedTail: options.truncateDamagedTail ?? false,
        follower: options.follower ?? false,
        replicated: options.replicate !== undefined,
        ...(options.loopLagWindowMs === undefined
          ? {}
          : { loopLagWindowMs: options.loopLagWindowMs }),
      });
    }
    const links: Link[] = [];
    let engine: Engine | null = null;
    // Start-up (expiry of overdue holds) answers nobody: nothing to deliver.
    const deliver = (count: number, results: Answers, w: number) =>
      engine?.deliver(count, results, w);
    const broken = (why: string) => {
      if (engine === null || engine.broken !== null) return;
      engine.breakDown(why);
      options.onBroken?.(why);
    };
    const recovered: RecoveryReport[] = [];
    const hosts: PartitionHost[] = [];
    try {
      if (workerCount === 0) {
        const now = options.now ?? Date.now;
        const replicate = options.replicate;
        const b = await bootHost(
          configs[0]!,
          now,
          (i, r) => deliver(i, r, 0),
          (e) => broken(e.message),
          replicate === undefined ? undefined : (batches) => replicate(batches),
        );
        const host = b.host;
        hosts.push(b.host);
        recovered.push(...b.recovered);
        links.push({
          send: (o, a) => b.host.execute(o, a),
          promote: (epochs) =>
            host.promote(epochs, (batches) => {
              const r = engine?.replicateFn;
              return r === undefined || r === null
                ? Promise.reject(new Error("this engine does not replicate"))
                : r(batches);
            }),
          close: async () => {
            await b.host.close();
            await b.store.close();
          },
        });
      } else {
        const started = await Promise.allSettled(
          configs.map((c, w) =>
            startWorker(
              c,
              (i, r) => deliver(i, r, w),
              broken,
              () => engine?.replicateFn ?? null,
            ),
          ),
        );
        const failure = started.find((s) => s.status === "rejected");
        for (const s of started) if (s.status === "fulfilled") links.push(s.value.link);
        if (failure !== undefined) {
          await Promise.all(links.map((l) => l.close()));
          throw (failure as PromiseRejectedResult).reason;
        }
        for (const s of started) if (s.status === "fulfilled") recovered.push(...s.value.recovered);
      }
    } catch (err) {
      throw toStartupError(err);
    }
    engine = new Engine(options.dataDir, partitionCount, links);
    engine.replicateFn = options.replicate ?? null;
    engine.journalFailed = broken;
    engine.manualPulse = options.manualPulse ?? false;
    engine.wheelTickMs = configs[0]!.wheelTickMs;
    engine.recovered = recovered.sort((a, b) => a.partition - b.partition);
    engine.inProcess.push(...hosts);
    engine.queueCountMax = options.queueCountMax ?? limits.workerQueueCountMax;
    engine.idempotencyWindowMs = meta.idempotencyWindowMs;
    engine.follower = options.follower ?? false;
    engine.startPulse();
    const c = configs[0]!;
    engine.snapshotConfig = {
      partitionCount,
      holdDurationMs: c.holdDurationMs,
      idempotencyWindowMs: c.idempotencyWindowMs,
      wheelTickMs: c.wheelTickMs,
    };
    try {
      await engine.startCoordinator(options, c);
    } catch (err) {
      await engine.close();
      throw err;
    }
    const every = options.snapshotEveryEvents ?? limits.snapshotIntervalEventCountDefault;
    if (every > 0) {
      engine.snapshotTimer = setInterval(
        () => void engine.snapshotIfDue(every).catch(() => undefined),
        options.snapshotCheckMs ?? 10_000,
      );
      engine.snapshotTimer.unref();
    }
    return engine;
  }

  private async startCoordinator(options: EngineOptions, c: WorkerConfig): Promise<void> {
    this.coordinatorStore = Store.open(this.dataDir, { durability: c.durability });
    this.coordinatorStore.replica = options.coordinatorReplica?.(this.coordinatorStore) ?? null;
    this.coordinator = new Coordinator(
      this.coordinatorStore,
      (op, arg) => this.route(op, arg),
      options.now ?? Date.now,
      { holdDurationMs: c.holdDurationMs, idempotencyWindowMs: c.idempotencyWindowMs },
      (why) => this.journalFailed(why),
    );
    // A follower leaves the decisions to its leader; it reads them.
    if (this.follower) return;
    await this.settleCoordinator();
  }

  /** The expiry pulse of partitions hosted in-process (workers run their
   * own); none on a follower, or where the caller pulses (`manualPulse`). */
  private startPulse(): void {
    const host = this.inProcess[0];
    if (host === undefined || this.manualPulse || this.follower) return;
    this.pulseTimer = setInterval(() => host.pulse(), this.wheelTickMs);
  }

  /** Presumed abort at start-up (or takeover), then pruning. */
  private async settleCoordinator(): Promise<void> {
    const pending = (await this.everyWorker(Op.Pending)).flatMap(
      (r) => (r as { holds: { holdId: number; prepared: boolean; pinned: boolean }[] }).holds,
    );
    this.reconciled = await this.coordinator.reconcile(pending);
    await this.coordinator.prune();
    this.pruneTimer = setInterval(
      () => void this.coordinator.prune().catch(() => undefined),
      60_000,
    );
    this.pruneTimer.unref();
  }

  // ---- commands ------------------------------------------------------------

  receiveStock(cmd: ReceiveStock): Promise<ReceiveResult> {
    const invalid = validateReceive(cmd);
    if (invalid !== null) return Promise.resolve(invalid);
    return this.toProduct(cmd.productId, Op.Receive, cmd) as Promise<ReceiveResult>;
  }

  adjustStock(cmd: AdjustStock): Promise<AdjustResult> {
    const invalid = validateAdjust(cmd);
    if (invalid !== null) return Promise.resolve(invalid);
    return this.toProduct(cmd.productId, Op.Adjust, cmd) as Promise<AdjustResult>;
  }

  /**
   * Reserves every line or none. Lines in one partition (every warehouse of
   * one product is in one) are one command and one journal write; lines in
   * several partitions go through the coordinator (prepare, durable
   * decision, confirm) and answer with one hold id for the whole.
   */
  reserve(cmd: ReserveStock): Promise<ReserveResult> {
    const invalid = validateReserve(cmd);
    if (invalid !== null) return Promise.resolve(invalid);
    const routed = this.routeReserve(cmd);
    if (typeof routed === "number") {
      return this.call(this.workerOf(routed), Op.Reserve, cmd) as Promise<ReserveResult>;
    }
    if (this.broken !== null) return Promise.resolve(fail(ErrorCode.Unavailable, this.broken));
    return this.coordinator.reserve(cmd, routed);
  }

  /**
   * Many reservations at once (a batch call): each validated and routed as
   * by reserve(), the answers in order, and one promise for them all, not
   * one per reservation.
   */
  reserveMany(cmds: ReserveStock[]): Promise<ReserveResult[]> {
    const results = new Array<ReserveResult>(cmds.length);
    if (cmds.length === 0) return Promise.resolve(results);
    return new Promise((resolve) => {
      let left = cmds.length;
      const settle: Settle = (r, i) => {
        results[i] = r as ReserveResult;
        if (--left === 0) resolve(results);
      };
      for (let i = 0; i < cmds.length; i++) {
        const cmd = cmds[i]!;
        const invalid = validateReserve(cmd);
        if (invalid !== null) {
          settle(invalid, i);
          continue;
        }
        const routed = this.routeReserve(cmd);
        if (typeof routed === "number")
          this.enqueue(this.workerOf(routed), Op.Reserve, cmd, settle, i);
        else if (this.broken !== null) settle(fail(ErrorCode.Unavailable, this.broken), i);
        else void this.coordinator.reserve(cmd, routed).then((r) => settle(r, i));
      }
    });
  }

  /** The partition of a reservation whose lines all sit in one (the common
   * case), else its line indexes by partition (for the coordinator). */
  private routeReserve(cmd: ReserveStock): number | Map<number, number[]> {
    const partition = partitionOf(cmd.lines[0]!.productId, this.partitionCount);
    let byPartition: Map<number, number[]> | null = null;
    for (let i = 1; i < cmd.lines.length; i++) {
      const other = partitionOf(cmd.lines[i]!.productId, this.partitionCount);
      if (other !== partition && byPartition === null) {
        byPartition = new Map([[partition, Array.from({ length: i }, (_, k) => k)]]);
      }
      if (byPartition !== null) {
        const list = byPartition.get(other);
        if (list === undefined) byPartition.set(other, [i]);
        else list.push(i);
      }
    }
    return byPartition ?? partition;
  }

  release(cmd: ReleaseHold): Promise<ReleaseResult> {
    const invalid = validateRelease(cmd);
    if (invalid !== null) return Promise.resolve(invalid);
    if (this.coordinator.isGroup(cmd.holdId)) return this.coordinator.release(cmd.holdId);
    return this.toHold(cmd.holdId, Op.Release, cmd) as Promise<ReleaseResult>;
  }

  fulfil(cmd: FulfilHold): Promise<FulfilResult> {
    const invalid = validateFulfil(cmd);
    if (invalid !== null) return Promise.resolve(invalid);
    if (this.coordinator.isGroup(cmd.holdId)) return this.coordinator.fulfil(cmd);
    return this.toHold(cmd.holdId, Op.Fulfil, cmd) as Promise<FulfilResult>;
  }

  /** The product's positions in the given warehouses (those that exist). */
  async positions(productId: string, warehouseIds: string[]): Promise<PositionView[]> {
    const r = (await this.toProduct(productId, Op.Position, { productId, warehouseIds })) as
      | { ok: true; positions: PositionView[] }
      | Failure;
    if (!r.ok) throw failure(r);
    return r.positions;
  }

  async position(productId: string, warehouseId: string): Promise<PositionView | null> {
    return (await this.positions(productId, [warehouseId]))[0] ?? null;
  }

  /** An open hold, or how a recently ended one ended; null if unknown. */
  async hold(holdId: number): Promise<HoldView | null> {
    if (this.coordinator.isGroup(holdId)) return this.coordinator.hold(holdId);
    const r = (await this.toHold(holdId, Op.Hold, { holdId })) as
      | { ok: true; hold: HoldView | null }
      | Failure;
    if (!r.ok) {
      if (r.code === ErrorCode.HoldNotFound) return null;
      throw failure(r);
    }
    return r.hold;
  }

  /** The parts of a hold: one view per partition it spans (one for a hold
   * in a single partition). */
  async holdParts(holdId: number): Promise<(HoldView | null)[]> {
    if (this.coordinator.isGroup(holdId)) return this.coordinator.parts(holdId);
    return [await this.hold(holdId)];
  }

  /**
   * A follower becomes the leader in place (its memory, journal and the
   * stream agree: it applied everything first): its partitions write with
   * the new epochs and replicate, holds past their deadline expire at once,
   * and the coordinator settles what its old leader left undecided.
   */
  async promote(o: {
    epochs: number[];
    replicate: (items: PublishItem[]) => Promise<void>;
    coordinatorReplica: (store: Store) => CoordinatorReplica;
  }): Promise<{ expired: number }> {
    if (!this.follower) throw new Error("only a follower is promoted");
    this.replicateFn = o.replicate;
    this.coordinatorStore.replica = o.coordinatorReplica(this.coordinatorStore);
    const expired = await Promise.all(this.links.map((l) => l.promote(o.epochs)));
    this.follower = false;
    this.startPulse();
    await this.settleCoordinator();
    return { expired: expired.reduce((a, b) => a + b, 0) };
  }

  /** A follower applies a framed batch its leader journaled (already in
   * this node's store); resolves with the partition's seq after it. */
  async apply(partition: number, bytes: Uint8Array): Promise<number> {
    const r = (await this.call(this.workerOf(partition), Op.Apply, { partition, bytes }, true)) as
      | { ok: true; seq: number }
      | Failure;
    if (!r.ok) throw failure(r);
    return r.seq;
  }

  /** The coordinator's store (a follower writes its leader's records there). */
  get coordinatorRecords(): Store {
    return this.coordinatorStore;
  }

  /** Digest of each partition's state, by partition. */
  async digests(): Promise<Record<number, string>> {
    const all = await this.everyWorker(Op.Digest);
    return Object.assign({}, ...all.map((r) => (r as { digests: Record<number, string> }).digests));
  }

  async stats(): Promise<EngineStats> {
    const answers = (await this.everyWorker(Op.Stats)) as (
      | { ok: true; stats: HostStats }
      | Failure
    )[];
    const all: HostStats[] = [];
    for (const r of answers) {
      if (!r.ok) throw failure(r);
      all.push(r.stats);
    }
    const loopLags = all.map((s) => s.loopLag);
    const sum: EngineStats = {
      ...emptyStats(),
      seqs: {},
      holds: 0,
      positions: 0,
      queueDepths: [...this.depth],
      messagesSent: [...this.messagesSent],
      loopLags,
    };
    for (const s of all) {
      sum.commands += s.commands;
      sum.commits += s.commits;
      sum.eventsJournaled += s.eventsJournaled;
      sum.commitMsTotal += s.commitMsTotal;
      s.commitMsCounts.forEach((n, i) => {
        sum.commitMsCounts[i]! += n;
      });
      sum.expired += s.expired;
      sum.holds += s.holds;
      sum.positions += s.positions;
      sum.commitBatchEventsMax = Math.max(sum.commitBatchEventsMax, s.commitBatchEventsMax);
      Object.assign(sum.seqs, s.seqs);
    }
    return sum;
  }

  /** Asserts every invariant in every partition (throws on a violation). */
  async checkInvariants(): Promise<void> {
    const all = await this.everyWorker(Op.CheckInvariants);
    for (const r of all) if (!(r as { ok: boolean }).ok) throw failure(r as Failure);
  }

  /**
   * Snapshots every partition now, on a separate thread that reads the
   * store (never the live partitions): reservations go on meanwhile.
   */
  snapshot(): Promise<SnapshotReport[]> {
    if (this.snapshotRunning !== null) return this.snapshotRunning;
    const job: SnapshotJob = {
      dataDir: this.dataDir,
      partitionIds: Array.from({ length: this.partitionCount }, (_, i) => i),
      config: this.snapshotConfig,
    };
    const run = runSnapshotWorker(job).finally(() => {
      this.snapshotRunning = null;
    });
    this.snapshotRunning = run;
    return run;
  }

  private async snapshotIfDue(every: number): Promise<void> {
    if (this.closed || this.snapshotRunning !== null) return;
    const s = await this.stats();
    if (s.eventsJournaled - this.eventsAtLastSnapshot < every) return;
    this.eventsAtLastSnapshot = s.eventsJournaled;
    await this.snapshot().catch(() => undefined);
  }

  /** Runs the expiry pulse now (in-process engines). */
  pulse(): void {
    for (const h of this.inProcess) h.pulse();
  }

  /** Waits until everything sent is durable and answered (in-process). */
  async drain(): Promise<void> {
    this.flush();
    for (const h of this.inProcess) await h.drain();
  }

  async close(): Promise<void> {
    if (this.closed) return;
    this.closed = true;
    if (this.pulseTimer !== null) clearInterval(this.pulseTimer);
    if (this.snapshotTimer !== null) clearInterval(this.snapshotTimer);
    if (this.pruneTimer !== null) clearInterval(this.pruneTimer);
    await this.snapshotRunning?.catch(() => undefined);
    this.flush();
    await Promise.all(this.links.map((l) => l.close()));
    await this.coordinatorStore?.close();
  }

  // ---- plumbing ----------------------------------------------------------------

  private workerOf(partition: number): number {
    return partition % this.links.length;
  }

  /** Sends a command to the partition that owns it (the coordinator's way in). */
  private route(op: Op, arg: unknown): Promise<unknown> {
    if (op === Op.Prepare) {
      return this.toProduct((arg as PrepareHold).lines[0]!.productId, op, arg);
    }
    return this.toHold((arg as { holdId: number }).holdId, op, arg);
  }

  private toProduct(productId: unknown, op: Op, arg: unknown): Promise<unknown> {
    if (typeof productId !== "string") {
      return Promise.resolve(
        fail(ErrorCode.InvalidArgument, "productId must be a non-empty string"),
      );
    }
    return this.call(this.workerOf(partitionOf(productId, this.partitionCount)), op, arg);
  }

  private toHold(holdId: unknown, op: Op, arg: unknown): Promise<unknown> {
    if (
      typeof holdId !== "number" ||
      !Number.isSafeInteger(holdId) ||
      holdId < limits.partitionCountMax
    ) {
      return Promise.resolve(fail(ErrorCode.InvalidArgument, "holdId must be a hold id"));
    }
    const partition = partitionOfHold(holdId);
    if (partition >= this.partitionCount) {
      return Promise.resolve(fail(ErrorCode.HoldNotFound, `hold ${holdId} not found`));
    }
    return this.call(this.workerOf(partition), op, arg);
  }

  private everyWorker(op: Op): Promise<unknown[]> {
    return Promise.all(this.links.map((_, w) => this.call(w, op, null, true)));
  }

  private call(worker: number, op: Op, arg: unknown, control = false): Promise<unknown> {
    return new Promise<unknown>((resolve) => this.enqueue(worker, op, arg, resolve, 0, control));
  }

  /** Queues a command for its worker; `settle(answer, index)` is called
   * once it is answered (at once when refused here). */
  private enqueue(
    worker: number,
    op: Op,
    arg: unknown,
    settle: Settle,
    index: number,
    control = false,
  ): void {
    let refused: Failure | null = null;
    if (this.broken !== null) refused = fail(ErrorCode.Unavailable, this.broken);
    else if (this.closed) refused = fail(ErrorCode.Unavailable, "engine is closed");
    else if (!control && this.depth[worker]! >= this.queueCountMax) {
      refused = fail(
        ErrorCode.Overloaded,
        `worker ${worker} has ${this.queueCountMax} commands queued`,
      );
    }
    if (refused !== null) {
      settle(refused, index);
      return;
    }
    const box = this.outboxes[worker]!;
    box.ops.push(op);
    encodeCommand(op, arg, box.args);
    this.depth[worker]!++;
    this.waiting[worker]!.push({ op, cmd: arg, resolve: settle, index });
    if (box.ops.length >= limits.workerBatchCountMax) this.flushOne(worker);
    else if (!this.flushScheduled) {
      this.flushScheduled = true;
      setImmediate(() => this.flush());
    }
  }

  private flush(): void {
    this.flushScheduled = false;
    for (let w = 0; w < this.outboxes.length; w++) this.flushOne(w);
  }

  private flushOne(w: number): void {
    const box = this.outboxes[w]!;
    if (box.ops.length === 0) return;
    this.messagesSent[w]!++;
    this.outboxes[w] = this.spares[w]!;
    // A worker's link copies the batch (postMessage) and an in-process host
    // reads it before send returns: either way it may be reused after.
    this.links[w]!.send(box.ops, box.args.finish());
    box.ops.length = 0;
    box.args.reset();
    this.spares[w] = box;
  }

  private deliver(count: number, results: Answers, worker: number): void {
    // Once broken, every command was answered (breakDown): what a worker
    // still answers, such as commands it got just before its failure
    // reached this thread, is dropped.
    if (this.broken !== null) return;
    this.depth[worker]! -= count;
    const waiting = this.waiting[worker]!;
    const cursor = { i: 0, j: 0 };
    for (let k = 0; k < count; k++) {
      const w = waiting.shift();
      if (w === undefined) throw new Error(`worker ${worker} answered more than it was asked`);
      w.resolve(decodeResult(w.op, w.cmd, results, cursor), w.index);
    }
  }

  private breakDown(why: string): void {
    this.broken = why;
    const unavailable = fail(ErrorCode.Unavailable, why);
    for (let k = 0; k < this.waiting.length; k++) {
      const waiting = this.waiting[k]!;
      for (let w = waiting.shift(); w !== undefined; w = waiting.shift()) {
        w.resolve(unavailable, w.index);
      }
      // Commands not sent yet are answered too: they are not sent.
      const box = this.outboxes[k]!;
      box.ops.length = 0;
      box.args.reset();
      this.depth[k] = 0;
    }
  }
}

function startWorker(
  config: WorkerConfig,
  deliver: (count: number, results: Answers) => void,
  broken: (why: string) => void,
  replicateFn: () => ((items: PublishItem[]) => Promise<void>) | null,
): Promise<{ link: Link; recovered: RecoveryReport[] }> {
  const target = new URL(`./worker${extname(fileURLToPath(import.meta.url))}`, import.meta.url);
  const worker = new Worker(new URL("./worker_entry.mjs", import.meta.url), {
    workerData: { ...config, __module: target.href },
  });
  return new Promise((resolve, reject) => {
    let ready = false;
    let closed: (() => void) | null = null;
    let promoted: ((expired: number) => void) | null = null;
    worker.on("message", (msg: FromWorker) => {
      switch (msg.t) {
        case "replies":
          deliver(msg.count, msg.results);
          return;
        case "ready":
          ready = true;
          resolve({
            recovered: msg.recovered,
            link: {
              send: (ops, args) => {
                const { flat, transfer } = forPost(args);
                worker.postMessage({ t: "cmds", ops, args: flat } satisfies ToWorker, transfer);
              },
              promote: (epochs) =>
                new Promise<number>((done) => {
                  promoted = done;
                  worker.postMessage({ t: "promote", epochs } satisfies ToWorker);
                }),
              close: () =>
                new Promise<void>((done) => {
                  closed = done;
                  worker.postMessage({ t: "close" } satisfies ToWorker);
                }),
            },
          });
          return;
        case "fatal":
          if (!ready) reject(deserialize(msg.error));
          else broken(`worker failed: ${msg.error.message}`);
          return;
        case "publish": {
          const answer = (error?: string) =>
            worker.postMessage({
              t: "published",
              id: msg.id,
              ...(error === undefined ? {} : { error }),
            } satisfies ToWorker);
          const replicate = replicateFn();
          if (replicate === null) answer("this engine does not replicate");
          else
            replicate(msg.items).then(
              () => answer(),
              (err: Error) => answer(err.message),
            );
          return;
        }
        case "promoted":
          promoted?.(msg.expired);
          promoted = null;
          return;
        case "closed":
          closed?.();
          return;
      }
    });
    worker.on("error", (err) => {
      if (!ready) reject(err);
      else broken(`worker crashed: ${err.message}`);
    });
    worker.on("exit", (code) => {
      if (closed !== null) {
        (closed as () => void)();
        return;
      }
      if (!ready) reject(new Error(`worker exited with code ${code} during start-up`));
      else broken(`worker exited with code ${code}`);
    });
  });
}

function runSnapshotWorker(job: SnapshotJob): Promise<SnapshotReport[]> {
  const target = new URL(
    `./snapshot_worker${extname(fileURLToPath(import.meta.url))}`,
    import.meta.url,
  );
  const worker = new Worker(new URL("./worker_entry.mjs", import.meta.url), {
    workerData: { ...job, __module: target.href },
  });
  return new Promise((resolve, reject) => {
    worker.once(
      "message",
      (m: { ok: true; reports: SnapshotReport[] } | { ok: false; message: string }) => {
        if (m.ok) resolve(m.reports);
        else reject(new Error(`snapshot failed: ${m.message}`));
      },
    );
    worker.once("error", reject);
    worker.once("exit", (code) => {
      if (code !== 0) reject(new Error(`snapshot thread exited with code ${code}`));
    });
  });
}

/** A refusal as an exception: UNAVAILABLE (a broken or closed engine, a
 * follower) stays recognisable as such, so callers answer 503, not 500. */
function failure(r: Failure): Error {
  return r.code === ErrorCode.Unavailable ? new UnavailableError(r.message) : new Error(r.message);
}

function deserialize(e: SerializedError): Error {
  if (e.name === "CorruptionError" && e.partition !== undefined && e.seq !== undefined) {
    return new StartupError(e.message, e.partition, e.seq);
  }
  const err = new Error(e.message);
  err.name = e.name;
  return err;
}

function toStartupError(err: unknown): Error {
  if (err instanceof CorruptionError) return new StartupError(err.message, err.partition, err.seq);
  return err as Error;
}
