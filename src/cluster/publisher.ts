import { headers as natsHeaders } from "nats";
import type { PublishItem } from "../host/index.ts";
import { type RecordWrite, UnavailableError } from "../persistence/index.ts";
import { type ClusterLink, refusedAsNotLast } from "./connection.ts";
import type { PartitionPosition } from "./follower.ts";
import { publishAttemptMax, publishRetryMs } from "./limits.ts";
import { Header } from "./names.ts";

/** A leader's write the cluster did not take: another leader wrote first,
 * or this node's lease ran out. The node must step down. */
export class FencedError extends UnavailableError {
  override name = "FencedError";
}

/** Where a subject's last message is, as the leader knows it. */
export type Position = PartitionPosition;

export interface PublisherOptions {
  link: ClusterLink;
  /** Each partition's epoch (lease revision at takeover). */
  epochs: number[];
  /** The epoch of the gateway lease (records and coordinator). */
  gatewayEpoch: number;
  /** Where each subject's last message is (from the takeover's fence). */
  positions: Map<string, Position>;
  /** Null while this node's lease holds, else why it does not. */
  fenced: () => string | null;
  /** Told of each publish's latency (metrics). */
  observe?: (subject: string, ms: number) => void;
  /** Told once, when a write failed: the node must step down. */
  onFail?: (why: string) => void;
}

/**
 * Publishes a leader's writes: journal batches (one subject per partition)
 * and the gateway's and coordinator's records, each with a message id and
 * the expected last sequence number of its subject, so that a leader that
 * was replaced cannot append. A write counts as replicated only when
 * JetStream has stored it and this node's lease still held at that moment.
 */
export class Publisher {
  private readonly queues = new Map<string, RecordQueue>();
  /** Each partition's last journal batch stored in the stream (not fences):
   * the node's restart hints and what its snapshots may cover. */
  readonly batches = new Map<number, Position>();

  /** The first write that failed. After it nothing more is published: the
   * failed message may be stored all the same (its answer lost), so this
   * leader no longer knows what the stream holds, and a later write under
   * the same message id would be dropped as its duplicate. The node steps
   * down and follows the stream again. */
  private failure: Error | null = null;

  constructor(private readonly o: PublisherOptions) {}

  /** Why this publisher stopped publishing, or null. */
  get failed(): Error | null {
    return this.failure;
  }

  private fail(err: Error): Error {
    if (this.failure === null) {
      this.failure = err;
      this.o.onFail?.(err.message);
    }
    return err;
  }

  /** Journal batches of one commit: partitions in parallel, each
   * partition's batches in order. */
  async publishBatches(items: PublishItem[]): Promise<void> {
    const byPartition = new Map<number, PublishItem[]>();
    for (const it of items) {
      const list = byPartition.get(it.partition);
      if (list === undefined) byPartition.set(it.partition, [it]);
      else list.push(it);
    }
    await Promise.all(
      [...byPartition].map(async ([partition, list]) => {
        const subject = this.o.link.names.partition(partition);
        for (const it of list) {
          const h = natsHeaders();
          h.set(Header.Epoch, String(it.epoch));
          h.set(Header.Seq, `${it.firstSeq}-${it.lastSeq}`);
          h.set(Header.Node, this.o.link.node);
          const streamSeq = await this.publish(
            subject,
            it.bytes,
            `p${partition}:${it.lastSeq}:e${it.epoch}`,
            h,
            it.lastSeq,
          );
          this.batches.set(partition, { streamSeq, journalSeq: it.lastSeq });
        }
      }),
    );
  }

  /** The gateway's records: stored in the cluster, then locally by
   * `store` (with the message's stream seq), in publish order. Writes that
   * arrive while one publish is in flight go out together in the next. */
  publishRecords(
    writes: RecordWrite[],
    store: (writes: RecordWrite[], streamSeq: number) => Promise<void>,
  ): Promise<void> {
    return this.queue(this.o.link.names.records, store as StoreFn).add(writes);
  }

  publishCoordinator(
    writes: { key: string; value: unknown }[],
    store: (writes: { key: string; value: unknown }[], streamSeq: number) => Promise<void>,
  ): Promise<void> {
    return this.queue(this.o.link.names.coordinator, store as StoreFn).add(writes);
  }

  private queue(subject: string, store: StoreFn): RecordQueue {
    let q = this.queues.get(subject);
    if (q === undefined) {
      q = new RecordQueue(
        store,
        (err) => this.fail(err),
        (writes) => {
          const h = natsHeaders();
          h.set(Header.Epoch, String(this.o.gatewayEpoch));
          h.set(Header.Node, this.o.link.node);
          const data = new TextEncoder().encode(JSON.stringify(writes));
          const next = (this.o.positions.get(subject)?.streamSeq ?? 0) + 1;
          return this.publish(subject, data, `${subject}:${next}:e${this.o.gatewayEpoch}`, h, 0);
        },
      );
      this.queues.set(subject, q);
    }
    return q;
  }

  /** One message, expected to follow the subject's last one; resolves with
   * its stream sequence number. The first failure stops the publisher. */
  private async publish(
    subject: string,
    data: Uint8Array,
    msgID: string,
    headers: ReturnType<typeof natsHeaders>,
    journalSeq: number,
  ): Promise<number> {
    if (this.failure !== null) {
      throw new UnavailableError(`replication stopped: ${this.failure.message}`);
    }
    try {
      return await this.publishOnce(subject, data, msgID, headers, journalSeq);
    } catch (err) {
      throw this.fail(err as Error);
    }
  }

  private async publishOnce(
    subject: string,
    data: Uint8Array,
    msgID: string,
    headers: ReturnType<typeof natsHeaders>,
    journalSeq: number,
  ): Promise<number> {
    const before = this.o.fenced();
    if (before !== null) throw new FencedError(before);
    const last = this.o.positions.get(subject)?.streamSeq ?? 0;
    const started = performance.now();
    let seq: number;
    for (let attempt = 1; ; attempt++) {
      try {
        const ack = await this.o.link.js.publish(subject, data, {
          msgID,
          headers,
          expect: { lastSubjectSequence: last },
        });
        seq = ack.seq;
        break;
      } catch (err) {
        const message = (err as Error).message;
        if (refusedAsNotLast(err)) {
          // An earlier try may have been stored, its answer lost, and its id
          // forgotten (a new stream leader keeps no record of recent ids):
          // if the subject's last message is this one, it is stored.
          const stored = await this.storedAs(subject, msgID);
          if (stored === null) {
            throw new FencedError(`another leader wrote ${subject}: ${message}`);
          }
          seq = stored;
          break;
        }
        // No answer (JetStream electing a stream leader, a NATS server
        // gone): the same message id is stored at most once, so retry
        // while the lease holds.
        const transient = /timeout|503|no responders|disconnect|closed/i.test(message);
        const fenced = this.o.fenced();
        if (!transient || fenced !== null || attempt >= publishAttemptMax) {
          throw new UnavailableError(`the cluster did not store the write: ${message}`);
        }
        await new Promise((r) => setTimeout(r, publishRetryMs));
      }
    }
    this.o.observe?.(subject, performance.now() - started);
    // Stored, but acknowledged only if the lease held all along.
    const after = this.o.fenced();
    if (after !== null) throw new FencedError(after);
    this.o.positions.set(subject, { streamSeq: seq, journalSeq });
    return seq;
  }

  /** The stream seq of the subject's last message when it carries this
   * message id, else null. */
  private async storedAs(subject: string, msgID: string): Promise<number | null> {
    const m = await this.o.link.jsm.streams
      .getMessage(this.o.link.names.stream, { last_by_subj: subject })
      .catch(() => null);
    return m !== null && m.header?.get("Nats-Msg-Id") === msgID ? m.seq : null;
  }
}

type StoreFn = (writes: unknown[], streamSeq: number) => Promise<void>;

/** Group commit for record writes on one subject: one message in flight,
 * stored locally after the cluster took it and before the next is sent. */
class RecordQueue {
  private pending: { writes: unknown[]; waiters: { ok: () => void; no: (e: Error) => void }[] } = {
    writes: [],
    waiters: [],
  };
  private flying = false;

  constructor(
    private readonly store: StoreFn,
    private readonly failed: (err: Error) => void,
    private readonly send: (writes: unknown[]) => Promise<number>,
  ) {}

  add(writes: unknown[]): Promise<void> {
    return new Promise((ok, no) => {
      this.pending.writes.push(...writes);
      this.pending.waiters.push({ ok, no });
      if (!this.flying) void this.run();
    });
  }

  private async run(): Promise<void> {
    this.flying = true;
    while (this.pending.waiters.length > 0) {
      const batch = this.pending;
      this.pending = { writes: [], waiters: [] };
      try {
        const seq = await this.send(batch.writes);
        await this.store(batch.writes, seq);
        for (const w of batch.waiters) w.ok();
      } catch (err) {
        // Stored in the cluster but not here, or not known to be stored:
        // the publisher stops (later sends fail at once).
        this.failed(err as Error);
        for (const w of batch.waiters) w.no(err as Error);
      }
    }
    this.flying = false;
  }
}
