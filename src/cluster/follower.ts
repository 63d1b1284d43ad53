import { type Consumer, type ConsumerMessages, DeliverPolicy, type JsMsg } from "nats";
import type { Logger } from "pino";
import type { Engine } from "../host/index.ts";
import type { FramedBatch, RecordStore, RecordWrite, Store } from "../persistence/index.ts";
import type { ClusterLink } from "./connection.ts";
import { followerPullCountMax, followerPullExpiresMs, followerQueueCountMax } from "./limits.ts";
import { Header, partitionOfSubject } from "./names.ts";

/** Meta keys of a node's stream positions (what it has applied). */
export const positionKey = {
  partition: (p: number) => `pos:${p}`,
  records: "pos:records",
  coordinator: "pos:coordinator",
} as const;

/** A place in the stream: a message's stream sequence number and, for a
 * partition's journal, the last journal seq in it (0 for other subjects). */
export interface PartitionPosition {
  streamSeq: number;
  journalSeq: number;
}

export interface FollowerTarget {
  link: ClusterLink;
  engine: Engine;
  /** The node's journal and coordinator store (main thread's handle). */
  store: Store;
  records: RecordStore;
  /** Each partition's seq as recovered. */
  seqs: number[];
  logger: Logger;
  /** Told of record writes applied (the catalog learns new entries). */
  onRecords: (writes: RecordWrite[]) => void;
  /** Told when following cannot go on (a gap, a failed write): the node
   * must resynchronise. */
  onFail: (err: Error) => void;
}

/**
 * Applies the leader's writes as they reach the stream: journal batches
 * into this node's LMDB and its partitions' memory, records and the
 * coordinator's decisions into their stores, each with the stream position
 * in the same transaction so that a restart resumes where it stopped.
 * Messages that arrive while a write is in flight go into the next one.
 */
export class Follower {
  private consumer: Consumer | null = null;
  private messages: ConsumerMessages | null = null;
  private queue: JsMsg[] = [];
  private draining: Promise<void> | null = null;
  private stopped = false;
  /** The last stream sequence number applied and durable. */
  appliedStreamSeq = 0;
  /** When the last applied message was published (its timestamp), ms. */
  appliedPublishMs = 0;
  private recordsPos: number;
  private coordinatorPos: number;
  private waiters: { seq: number; resolve: () => void }[] = [];
  /** When the stream last delivered a message (monotonic ms). */
  private lastMessageMs = performance.now();
  failed: Error | null = null;

  constructor(private readonly t: FollowerTarget) {
    this.recordsPos = t.records.getMeta<number>(positionKey.records) ?? 0;
    this.coordinatorPos = t.store.getMeta<number>(positionKey.coordinator) ?? 0;
  }

  /** The first stream sequence number this node still needs. */
  startSeq(): number {
    let from = Math.min(this.recordsPos, this.coordinatorPos);
    for (let p = 0; p < this.t.seqs.length; p++) {
      const pos = this.t.store.getMeta<PartitionPosition>(positionKey.partition(p));
      from = Math.min(from, pos?.streamSeq ?? 0);
    }
    return from + 1;
  }

  async start(): Promise<void> {
    const from = this.startSeq();
    this.appliedStreamSeq = from - 1;
    const consumer = await this.t.link.js.consumers.get(this.t.link.names.stream, {
      filterSubjects: this.t.link.names.all,
      deliver_policy: DeliverPolicy.StartSequence,
      opt_start_seq: from,
    });
    const messages = await consumer.consume({
      max_messages: followerPullCountMax,
      expires: followerPullExpiresMs,
    });
    this.consumer = consumer;
    if (this.stopped) {
      // Stopped (given up on) while the consumer was being made: stop()
      // found none to delete then.
      messages.stop();
      this.dropConsumer();
      return;
    }
    this.messages = messages;
    void (async () => {
      try {
        for await (const m of messages) {
          if (this.stopped) break;
          this.lastMessageMs = performance.now();
          this.queue.push(m);
          this.draining ??= this.drain();
          // Receiving waits while applying is this far behind.
          if (this.queue.length >= followerQueueCountMax) await this.draining;
        }
        if (!this.stopped) this.fail(new Error("the stream's consumer ended"));
      } catch (err) {
        this.fail(err as Error);
      }
    })();
  }

  /** Resolves once everything up to `streamSeq` is applied; rejects when
   * the stream delivers nothing for `stallMs` meanwhile (a consumer lost
   * with a NATS server), or following fails. */
  caughtUp(streamSeq: number, stallMs: number): Promise<void> {
    if (this.appliedStreamSeq >= streamSeq) return Promise.resolve();
    return new Promise((resolve, reject) => {
      const check = setInterval(() => {
        const why = this.failed?.message ?? this.stalled(streamSeq, stallMs);
        if (why === null) return;
        clearInterval(check);
        reject(new Error(why));
      }, 100);
      this.waiters.push({
        seq: streamSeq,
        resolve: () => {
          clearInterval(check);
          resolve();
        },
      });
    });
  }

  /**
   * Gives following up when it is behind the stream's `streamLastSeq` and
   * nothing was delivered for `stallMs` (its consumer lost with a NATS
   * server, and the client library not remaking it yet): the node then
   * follows again with a new consumer. Returns whether it gave up.
   */
  giveUpIfStalled(streamLastSeq: number, stallMs: number): boolean {
    const why = this.stalled(streamLastSeq, stallMs);
    if (why === null) return false;
    this.fail(new Error(why));
    return true;
  }

  /** Why following is stalled: behind `streamSeq` and nothing delivered,
   * nor being applied (receiving waits for that when far behind), for
   * `stallMs`. Null when it is not. */
  private stalled(streamSeq: number, stallMs: number): string | null {
    const quietMs = this.draining === null ? performance.now() - this.lastMessageMs : 0;
    if (this.appliedStreamSeq >= streamSeq || quietMs <= stallMs) return null;
    return `the stream delivered nothing for ${Math.round(quietMs)} ms at seq ${this.appliedStreamSeq} of ${streamSeq}`;
  }

  async stop(): Promise<void> {
    this.stopped = true;
    this.messages?.stop();
    this.dropConsumer();
    await this.draining;
  }

  /** Deletes the consumer from NATS, which would otherwise keep it for its
   * inactivity threshold (5 min). In the background: its server may be the
   * one that died, and then nothing answers. */
  private dropConsumer(): void {
    const consumer = this.consumer;
    this.consumer = null;
    void consumer?.delete().catch(() => undefined);
  }

  private async drain(): Promise<void> {
    while (this.queue.length > 0 && !this.stopped && this.failed === null) {
      const taken = this.queue;
      this.queue = [];
      try {
        await this.applyAll(taken);
      } catch (err) {
        this.fail(err as Error);
        break;
      }
    }
    this.lastMessageMs = performance.now();
    this.draining = null;
  }

  private async applyAll(msgs: JsMsg[]): Promise<void> {
    const batches: FramedBatch[] = [];
    const meta: [string, unknown][] = [];
    const records: RecordWrite[] = [];
    const coordinator: { key: string; value: unknown }[] = [];
    let recordsPos = this.recordsPos;
    let coordinatorPos = this.coordinatorPos;
    const names = this.t.link.names;
    for (const m of msgs) {
      // A new leader's fence carries nothing to apply.
      if (m.headers?.get(Header.Fence)) continue;
      const p = partitionOfSubject(names, m.subject);
      if (p !== null) {
        if (p >= this.t.seqs.length) continue;
        const [first, last] = (m.headers?.get(Header.Seq) ?? "").split("-").map(Number);
        if (first === undefined || last === undefined || !(last >= first)) {
          throw new Error(`stream message ${m.seq} on ${m.subject} has no journal range`);
        }
        const have = this.t.seqs[p]!;
        if (last <= have) continue;
        if (first !== have + 1) {
          throw new Error(
            `partition ${p}: the stream jumps from seq ${have} to ${first} (message ${m.seq}); ` +
              "this node must resynchronise from a snapshot",
          );
        }
        const epoch = Number(m.headers?.get(Header.Epoch) ?? 0);
        batches.push({
          partition: p,
          firstSeq: first,
          lastSeq: last,
          epoch,
          bytes: Buffer.from(m.data),
        });
        meta.push([positionKey.partition(p), { streamSeq: m.seq, journalSeq: last }]);
        this.t.seqs[p] = last;
      } else if (m.subject === names.records) {
        if (m.seq <= recordsPos) continue;
        records.push(...m.json<RecordWrite[]>());
        recordsPos = m.seq;
      } else if (m.subject === names.coordinator) {
        if (m.seq <= coordinatorPos) continue;
        coordinator.push(...m.json<{ key: string; value: unknown }[]>());
        coordinatorPos = m.seq;
      }
    }
    const writes: Promise<void>[] = [];
    if (batches.length > 0) writes.push(this.t.store.appendFramed(batches, meta));
    if (recordsPos !== this.recordsPos) {
      writes.push(this.t.records.writeLocal(records, [[positionKey.records, recordsPos]]));
    }
    if (coordinatorPos !== this.coordinatorPos) {
      writes.push(
        this.t.store.writeCoordinator(coordinator, false, [
          [positionKey.coordinator, coordinatorPos],
        ]),
      );
    }
    await Promise.all(writes);
    this.recordsPos = recordsPos;
    this.coordinatorPos = coordinatorPos;
    if (records.length > 0) this.t.onRecords(records);
    await Promise.all(batches.map((b) => this.t.engine.apply(b.partition, b.bytes)));
    const last = msgs[msgs.length - 1]!;
    this.appliedStreamSeq = last.seq;
    this.appliedPublishMs = Math.floor(Number(last.info.timestampNanos) / 1e6);
    this.waiters = this.waiters.filter((w) => {
      if (w.seq > this.appliedStreamSeq) return true;
      w.resolve();
      return false;
    });
  }

  private fail(err: Error): void {
    if (this.failed !== null || this.stopped) return;
    this.failed = err;
    this.t.logger.error({ err: err.message }, "following stopped");
    this.t.onFail(err);
  }
}
