import { crc32 } from "node:zlib";
import {
  type AdjustmentReason,
  type Event,
  EventType,
  HoldFlag,
  type HoldOutcome,
  type Line,
  limits,
  Partition,
  type PartitionConfig,
  type ReleaseReason,
} from "../engine/index.ts";
import { Reader, WireError, Writer } from "./wire.ts";

// Encoding of journal batches and snapshots (proto/stockd/v1) and the frame
// around each stored record: [format u8][crc32 of payload, u32 LE][payload].

export const recordFormat = 1;
const frameHeaderBytes = 5;

export class ChecksumError extends Error {
  override name = "ChecksumError";
}

/** A record of the payload, given whole or in consecutive parts. */
export function frame(...payload: Uint8Array[]): Buffer {
  let length = 0;
  for (const part of payload) length += part.length;
  const out = Buffer.allocUnsafe(frameHeaderBytes + length);
  out[0] = recordFormat;
  let at = frameHeaderBytes;
  for (const part of payload) {
    out.set(part, at);
    at += part.length;
  }
  out.writeUInt32LE(crc32(out.subarray(frameHeaderBytes)), 1);
  return out;
}

/** Checks a record's frame and checksum; returns its payload. */
export function unframe(record: Uint8Array): Uint8Array {
  if (record.length < frameHeaderBytes) throw new ChecksumError("record shorter than its header");
  if (record[0] !== recordFormat) throw new ChecksumError(`unknown record format ${record[0]}`);
  const payload = record.subarray(frameHeaderBytes);
  const stored = (record[1]! | (record[2]! << 8) | (record[3]! << 16) | (record[4]! << 24)) >>> 0;
  const actual = crc32(payload);
  if (stored !== actual) {
    throw new ChecksumError(`checksum mismatch: stored ${hex(stored)}, computed ${hex(actual)}`);
  }
  return payload;
}

function hex(n: number): string {
  return `0x${n.toString(16).padStart(8, "0")}`;
}

// ---- journal batches --------------------------------------------------------

export interface Batch {
  partition: number;
  firstSeq: number;
  lastSeq: number;
  epoch: number;
  events: Event[];
}

function writeLine(w: Writer, field: number, l: Line): void {
  const m = w.beginLd(field);
  w.stringField(1, l.productId);
  w.stringField(2, l.warehouseId);
  w.uintField(3, l.quantity);
  w.endLd(m);
}

function writeEvent(w: Writer, e: Event): void {
  w.uintField(1, e.seq);
  w.uintField(2, e.timeMs);
  const m = w.beginLd(e.type);
  switch (e.type) {
    case EventType.StockReceived:
      w.stringField(1, e.productId);
      w.stringField(2, e.warehouseId);
      w.uintField(3, e.quantity);
      break;
    case EventType.StockAdjusted:
      w.stringField(1, e.productId);
      w.stringField(2, e.warehouseId);
      w.sintField(3, e.delta);
      w.uintField(4, e.reason);
      break;
    case EventType.StockReserved:
      w.uintField(1, e.holdId);
      w.uintField(2, e.expireTimeMs);
      w.stringField(3, e.requestId);
      for (const l of e.lines) writeLine(w, 4, l);
      w.boolField(5, e.prepared);
      break;
    case EventType.HoldConfirmed:
    case EventType.HoldPinned:
    case EventType.HoldUnpinned:
      w.uintField(1, e.holdId);
      break;
    case EventType.ReservationRefused:
      w.stringField(1, e.requestId);
      w.uintField(2, e.lineIndex);
      w.uintField(3, e.available);
      for (const l of e.lines) writeLine(w, 4, l);
      break;
    case EventType.HoldReleased:
      w.uintField(1, e.holdId);
      w.uintField(2, e.reason);
      break;
    case EventType.HoldFulfilled: {
      w.uintField(1, e.holdId);
      // Packed repeated uint32, as proto3 writes it.
      if (e.quantities.length > 0) {
        const p = w.beginLd(2);
        for (const q of e.quantities) w.varint(q);
        w.endLd(p);
      }
      break;
    }
  }
  w.endLd(m);
}

const sharedWriter = new Writer(1 << 16);

/** A JournalBatch's fields before its events. */
function writeBatchHead(w: Writer, b: Omit<Batch, "events">): void {
  w.uintField(1, b.partition);
  w.uintField(2, b.firstSeq);
  w.uintField(3, b.lastSeq);
  w.uintField(4, b.epoch);
}

/** One of a JournalBatch's events. */
function writeBatchEvent(w: Writer, e: Event): void {
  const m = w.beginLd(5);
  writeEvent(w, e);
  w.endLd(m);
}

export function encodeBatch(b: Batch): Uint8Array {
  const w = sharedWriter;
  w.reset();
  writeBatchHead(w, b);
  for (const e of b.events) writeBatchEvent(w, e);
  return w.finish();
}

/** A journal batch as stored and as replicated: framed (checksummed) bytes,
 * byte for byte `frame(encodeBatch(batch))`. */
export interface FramedBatch {
  partition: number;
  firstSeq: number;
  lastSeq: number;
  epoch: number;
  bytes: Buffer;
}

/**
 * Encodes one partition's events as they are emitted, into batches of at
 * most `countMax` events, instead of keeping the event objects until the
 * transaction that stores them: under load thousands of events wait for a
 * journal sync, and as objects they would survive young-generation
 * collections and be copied (measured: most of the collector's time on the
 * reserve path). The bytes equal `encodeBatch` of the same events.
 */
export class BatchEncoder {
  private readonly chunks: { firstSeq: number; lastSeq: number; count: number; w: Writer }[] = [];
  private spare: Writer | null = null;
  private countValue = 0;

  constructor(
    readonly partition: number,
    private readonly countMax: number,
  ) {
    if (!(Number.isInteger(countMax) && countMax > 0)) {
      throw new Error(`BatchEncoder: countMax must be a positive integer, got ${countMax}`);
    }
  }

  /** Events added since the last `finish`. */
  get count(): number {
    return this.countValue;
  }

  add(e: Event): void {
    let c = this.chunks[this.chunks.length - 1];
    if (c !== undefined && e.seq !== c.lastSeq + 1) {
      throw new Error(
        `partition ${this.partition}: event ${e.seq} does not follow ${c.lastSeq} in its batch`,
      );
    }
    if (c === undefined || c.count === this.countMax) {
      const w = this.spare ?? new Writer(1 << 14);
      this.spare = null;
      w.reset();
      c = { firstSeq: e.seq, lastSeq: e.seq, count: 0, w };
      this.chunks.push(c);
    }
    writeBatchEvent(c.w, e);
    c.lastSeq = e.seq;
    c.count++;
    this.countValue++;
  }

  /** The framed batches of every event added, in order; starts afresh. */
  finish(epoch: number): FramedBatch[] {
    const out: FramedBatch[] = [];
    const head = sharedWriter;
    for (const c of this.chunks) {
      const batch = { partition: this.partition, firstSeq: c.firstSeq, lastSeq: c.lastSeq, epoch };
      head.reset();
      writeBatchHead(head, batch);
      const bytes = frame(head.buf.subarray(0, head.pos), c.w.buf.subarray(0, c.w.pos));
      out.push({ ...batch, bytes });
    }
    // One writer is kept for the next batch, unless a burst grew it large.
    const first = this.chunks[0];
    if (first !== undefined && first.w.buf.length <= limits.journalEncoderKeptBytesMax) {
      this.spare = first.w;
    }
    this.chunks.length = 0;
    this.countValue = 0;
    return out;
  }
}

function readLine(r: Reader): Line {
  const outer = r.beginLd();
  let productId = "";
  let warehouseId = "";
  let quantity = 0;
  while (!r.done) {
    const tag = r.varint();
    switch (tag) {
      case (1 << 3) | 2:
        productId = r.string();
        break;
      case (2 << 3) | 2:
        warehouseId = r.string();
        break;
      case 3 << 3:
        quantity = r.varint();
        break;
      default:
        r.skip(tag & 7);
    }
  }
  r.endLd(outer);
  return { productId, warehouseId, quantity };
}

function readQuantities(r: Reader, tag: number, into: number[]): void {
  if ((tag & 7) === 0) {
    into.push(r.varint());
    return;
  }
  const outer = r.beginLd();
  while (!r.done) into.push(r.varint());
  r.endLd(outer);
}

/** The string fields of each event kind; other length-delimited fields
 * (unknown to this reader) are skipped, never read as text. */
const eventStringFields: Record<number, readonly number[]> = {
  [EventType.StockReceived]: [1, 2],
  [EventType.StockAdjusted]: [1, 2],
  [EventType.StockReserved]: [3],
  [EventType.ReservationRefused]: [1],
};

function readEventBody(r: Reader, type: number, seq: number, timeMs: number): Event {
  const outer = r.beginLd();
  const strings = eventStringFields[type] ?? [];
  const hasLines = type === EventType.StockReserved || type === EventType.ReservationRefused;
  let s1 = "";
  let s2 = "";
  // Varint fields by number; each kind reads only its own below, so an
  // unknown field from a newer writer cannot overwrite a known one.
  const n = [0, 0, 0, 0, 0, 0];
  const lines: Line[] = [];
  const quantities: number[] = [];
  while (!r.done) {
    const tag = r.varint();
    const field = tag >>> 3;
    const wt = tag & 7;
    if (type === EventType.HoldFulfilled && field === 2 && (wt === 0 || wt === 2)) {
      readQuantities(r, tag, quantities);
    } else if (wt === 2 && hasLines && field === 4) {
      lines.push(readLine(r));
    } else if (wt === 2 && strings.includes(field)) {
      if (field === strings[0]) s1 = r.string();
      else s2 = r.string();
    } else if (wt === 0 && field <= 5) {
      n[field] = type === EventType.StockAdjusted && field === 3 ? r.sint() : r.int();
    } else r.skip(wt);
  }
  const [, n1, n2, n3, n4, n5] = n as [number, number, number, number, number, number];
  r.endLd(outer);
  switch (type) {
    case EventType.StockReceived:
      return { type, seq, timeMs, productId: s1, warehouseId: s2, quantity: n3 };
    case EventType.StockAdjusted:
      return {
        type,
        seq,
        timeMs,
        productId: s1,
        warehouseId: s2,
        delta: n3,
        reason: n4 as AdjustmentReason,
      };
    case EventType.StockReserved:
      return {
        type,
        seq,
        timeMs,
        holdId: n1,
        expireTimeMs: n2,
        requestId: s1,
        lines,
        prepared: n5 === 1,
      };
    case EventType.HoldConfirmed:
    case EventType.HoldPinned:
    case EventType.HoldUnpinned:
      return { type, seq, timeMs, holdId: n1 };
    case EventType.ReservationRefused:
      return { type, seq, timeMs, requestId: s1, lineIndex: n2, available: n3, lines };
    case EventType.HoldReleased:
      return { type, seq, timeMs, holdId: n1, reason: n2 as ReleaseReason };
    case EventType.HoldFulfilled:
      return { type, seq, timeMs, holdId: n1, quantities };
    default:
      throw new WireError(`unknown event type ${type}`);
  }
}

function readEvent(r: Reader): Event {
  const outer = r.beginLd();
  let seq = 0;
  let timeMs = 0;
  let event: Event | null = null;
  while (!r.done) {
    const tag = r.varint();
    const field = tag >>> 3;
    if (tag === 1 << 3) seq = r.varint();
    else if (tag === 2 << 3) timeMs = r.int();
    else if (
      field >= EventType.StockReceived &&
      field <= EventType.HoldUnpinned &&
      (tag & 7) === 2
    ) {
      event = readEventBody(r, field, 0, 0);
    } else r.skip(tag & 7);
  }
  r.endLd(outer);
  if (event === null) throw new WireError(`event ${seq} has no known kind`);
  event.seq = seq;
  event.timeMs = timeMs;
  return event;
}

export function decodeBatch(payload: Uint8Array): Batch {
  const r = new Reader(payload);
  const b: Batch = { partition: 0, firstSeq: 0, lastSeq: 0, epoch: 0, events: [] };
  while (!r.done) {
    const tag = r.varint();
    switch (tag) {
      case 1 << 3:
        b.partition = r.varint();
        break;
      case 2 << 3:
        b.firstSeq = r.varint();
        break;
      case 3 << 3:
        b.lastSeq = r.varint();
        break;
      case 4 << 3:
        b.epoch = r.varint();
        break;
      case (5 << 3) | 2:
        b.events.push(readEvent(r));
        break;
      default:
        r.skip(tag & 7);
    }
  }
  checkBatch(b);
  return b;
}

/** A batch's events run first..last with no gap. */
export function checkBatch(b: Batch): void {
  const n = b.events.length;
  if (n === 0) throw new WireError("batch has no event");
  if (b.lastSeq - b.firstSeq + 1 !== n)
    throw new WireError("batch range does not match its events");
  for (let i = 0; i < n; i++) {
    if (b.events[i]!.seq !== b.firstSeq + i) throw new WireError("batch events out of sequence");
  }
}

// ---- snapshots ----------------------------------------------------------------

export function encodeSnapshot(p: Partition): Uint8Array {
  const w = new Writer(1 << 20);
  w.uintField(1, p.id);
  w.uintField(2, p.partitionCount);
  w.uintField(3, p.seq);
  w.uintField(4, p.timeMs);
  for (const x of p.positionsInOrder()) {
    const m = w.beginLd(5);
    w.stringField(1, x.productId);
    w.stringField(2, x.warehouseId);
    w.uintField(3, x.available);
    w.uintField(4, x.reserved);
    w.uintField(5, x.received);
    w.sintField(6, x.adjusted);
    w.uintField(7, x.fulfilled);
    w.endLd(m);
  }
  for (const h of p.holdsInOrder()) {
    const m = w.beginLd(6);
    w.uintField(1, h.id);
    w.uintField(2, h.expireTimeMs);
    w.stringField(3, h.requestId);
    for (const l of h.lines) writeLine(w, 4, l);
    w.boolField(5, (h.flags & HoldFlag.Prepared) !== 0);
    w.boolField(6, (h.flags & HoldFlag.Pinned) !== 0);
    w.endLd(m);
  }
  for (const c of p.closedInOrder()) {
    const m = w.beginLd(7);
    w.uintField(1, c.holdId);
    w.uintField(2, c.outcome);
    w.uintField(3, c.closeTimeMs);
    w.endLd(m);
  }
  for (const q of p.requestsInOrder()) {
    const m = w.beginLd(8);
    w.stringField(1, q.requestId);
    w.uintField(2, q.timeMs);
    w.uintField(3, q.holdId);
    w.uintField(4, q.expireTimeMs);
    for (const l of q.lines) writeLine(w, 5, l);
    w.uintField(6, q.lineIndex);
    w.uintField(7, q.available);
    w.endLd(m);
  }
  return w.finish();
}

/** Loads a snapshot into a new partition. Checks its invariants. */
export function decodeSnapshot(payload: Uint8Array, config: PartitionConfig): Partition {
  const r = new Reader(payload);
  let id = 0;
  let partitionCount = 0;
  let seq = 0;
  let timeMs = 0;
  const positions: [string, string, number[]][] = [];
  const holds: ReturnType<typeof readHold>[] = [];
  const closed: [number, HoldOutcome, number][] = [];
  const requests: Parameters<Partition["remember"]>[0][] = [];
  while (!r.done) {
    const tag = r.varint();
    switch (tag) {
      case 1 << 3:
        id = r.varint();
        break;
      case 2 << 3:
        partitionCount = r.varint();
        break;
      case 3 << 3:
        seq = r.varint();
        break;
      case 4 << 3:
        timeMs = r.int();
        break;
      case (5 << 3) | 2:
        positions.push(readPosition(r));
        break;
      case (6 << 3) | 2:
        holds.push(readHold(r));
        break;
      case (7 << 3) | 2: {
        const f = readFields(r, []);
        closed.push([f.n[1] ?? 0, (f.n[2] ?? 0) as HoldOutcome, f.n[3] ?? 0]);
        break;
      }
      case (8 << 3) | 2: {
        const f = readFields(r, [1], 5);
        requests.push({
          requestId: f.s[1] ?? "",
          timeMs: f.n[2] ?? 0,
          holdId: f.n[3] ?? 0,
          expireTimeMs: f.n[4] ?? 0,
          lines: f.lines,
          lineIndex: f.n[6] ?? 0,
          available: f.n[7] ?? 0,
        });
        break;
      }
      default:
        r.skip(tag & 7);
    }
  }
  if (partitionCount !== config.partitionCount) {
    throw new WireError(
      `snapshot of ${partitionCount} partitions, expected ${config.partitionCount}`,
    );
  }
  const p = new Partition(id, config);
  for (const [productId, warehouseId, n] of positions) {
    const x = p.positionForRestore(productId, warehouseId);
    // Holds are restored below and move their own units to reserved.
    x.available = n[0]! + n[1]!;
    x.received = n[2]!;
    x.adjusted = n[3]!;
    x.fulfilled = n[4]!;
  }
  for (const h of holds) {
    p.restoreHold(
      {
        type: EventType.StockReserved,
        seq: 0,
        timeMs: 0,
        holdId: h.holdId,
        expireTimeMs: h.expireTimeMs,
        requestId: h.requestId,
        lines: h.lines,
        prepared: h.prepared,
      },
      h.pinned,
    );
  }
  for (const [productId, warehouseId, n] of positions) {
    const x = p.positionForRestore(productId, warehouseId);
    if (x.available !== n[0] || x.reserved !== n[1]) {
      throw new WireError(`snapshot: ${productId}@${warehouseId} disagrees with its holds`);
    }
  }
  for (const [holdId, outcome, t] of closed) p.rememberClosed(holdId, outcome, t);
  for (const q of requests) p.remember(q);
  p.seq = seq;
  p.timeMs = timeMs;
  p.checkInvariants();
  return p;
}

function readPosition(r: Reader): [string, string, number[]] {
  const f = readFields(r, [1, 2], -1, 6);
  return [f.s[1] ?? "", f.s[2] ?? "", [3, 4, 5, 6, 7].map((i) => f.n[i] ?? 0)];
}

function readHold(r: Reader) {
  const f = readFields(r, [3], 4);
  return {
    holdId: f.n[1] ?? 0,
    expireTimeMs: f.n[2] ?? 0,
    requestId: f.s[3] ?? "",
    lines: f.lines,
    prepared: f.n[5] === 1,
    pinned: f.n[6] === 1,
  };
}

/** Reads a flat message: numbers by field, the named string fields, and
 * lines; unknown length-delimited fields are skipped. */
function readFields(r: Reader, stringFields: readonly number[], linesField = -1, sintField = -1) {
  const outer = r.beginLd();
  const n: number[] = [];
  const s: string[] = [];
  const lines: Line[] = [];
  while (!r.done) {
    const tag = r.varint();
    const field = tag >>> 3;
    const wt = tag & 7;
    if (field === linesField && wt === 2) lines.push(readLine(r));
    else if (wt === 2 && stringFields.includes(field)) s[field] = r.string();
    else if (wt === 0) n[field] = field === sintField ? r.sint() : r.int();
    else r.skip(wt);
  }
  r.endLd(outer);
  return { n, s, lines };
}
