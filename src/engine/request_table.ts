import type { Position } from "./position.ts";
import type { PositionIndex } from "./positions.ts";
import { cellInsert, cellRemove } from "./slot_index.ts";
import type { Line } from "./types.ts";

/** The first answer to a request id, remembered for the idempotency window. */
export interface RequestRecord {
  requestId: string;
  timeMs: number;
  /** 0 when the request was refused. */
  holdId: number;
  expireTimeMs: number;
  lines: Line[];
  lineIndex: number;
  available: number;
}

/** FNV-1a over UTF-16 code units, seeded. Ids are at most idLengthMax long. */
export function requestHash(requestId: string, seed: number): number {
  let h = 0x811c9dc5 ^ seed;
  for (let i = 0; i < requestId.length; i++) h = Math.imul(h ^ requestId.charCodeAt(i), 0x01000193);
  return h | 0;
}

/**
 * The remembered request ids of a partition, oldest first, in a ring of
 * parallel typed arrays: they are remembered in time order and forgotten
 * from the oldest, so a ring fits exactly. A request that placed a hold of
 * one line (the common case) keeps the hold's id, deadline, position index
 * and quantity inline, ~50 bytes besides the id string (which the open hold
 * shares); a refusal or a hold of several lines keeps its whole record in a
 * side map. Ids are found through an open-addressing index on a seeded
 * string hash: the seed is the caller's (random per process), so that ids
 * chosen by clients cannot be made to collide; it changes no state.
 */
export class RequestTable {
  // Set by allocate() (constructor, grow).
  private ids!: string[];
  private timeMs!: Float64Array;
  private holdId!: Float64Array;
  private expireTimeMs!: Float64Array;
  /** Index of the position held; -1: the record is in `records`. */
  private position!: Int32Array;
  private quantity!: Int32Array;
  private hash!: Int32Array;
  /** Whole records (refusals, holds of several lines) by ring slot. */
  private readonly records = new Map<number, RequestRecord>();
  private head = 0;
  private count = 0;
  /** slot + 1 by hash; 0: empty. Load kept at most one half. */
  private index: Int32Array;
  private indexShift: number;

  constructor(
    private readonly positions: PositionIndex,
    private readonly hashSeed: number,
    capacity = 1024,
  ) {
    if (capacity < 2 || (capacity & (capacity - 1)) !== 0) {
      throw new Error("RequestTable: capacity must be a power of 2");
    }
    this.allocate(capacity);
    this.index = new Int32Array(capacity * 2);
    this.indexShift = 32 - Math.log2(capacity * 2);
  }

  get size(): number {
    return this.count;
  }

  /** The slot of the newest record of `requestId`; -1 when none. */
  find(requestId: string): number {
    const index = this.index;
    const mask = index.length - 1;
    const h = this.hashOf(requestId);
    for (let i = this.home(h); ; i = (i + 1) & mask) {
      const e = index[i]!;
      if (e === 0) return -1;
      if (this.hash[e - 1] === h && this.ids[e - 1] === requestId) return e - 1;
    }
  }

  timeAt(slot: number): number {
    return this.timeMs[slot]!;
  }

  /** The time of the oldest record; NaN when empty. */
  oldestTimeMs(): number {
    return this.count === 0 ? Number.NaN : this.timeMs[this.head]!;
  }

  /** Remembers a request that placed a hold of one line. An older record
   * of the same id (past its window) stays in the ring until it is the
   * oldest, but is no longer found. */
  addHeld(
    requestId: string,
    timeMs: number,
    holdId: number,
    expireTimeMs: number,
    position: Position,
    quantity: number,
  ): void {
    const slot = this.add(requestId, timeMs);
    this.holdId[slot] = holdId;
    this.expireTimeMs[slot] = expireTimeMs;
    this.position[slot] = position.index;
    this.quantity[slot] = quantity;
  }

  /** Remembers a request by its whole record. */
  addRecord(record: RequestRecord): void {
    const slot = this.add(record.requestId, record.timeMs);
    this.holdId[slot] = record.holdId;
    this.expireTimeMs[slot] = record.expireTimeMs;
    this.position[slot] = -1;
    this.quantity[slot] = 0;
    this.records.set(slot, record);
  }

  /** Forgets the oldest record. */
  dropOldest(): void {
    if (this.count === 0) throw new Error("RequestTable: empty");
    const slot = this.head;
    // The id may since have been reused (after its window) by a newer record.
    if (this.find(this.ids[slot]!) === slot) this.unindex(slot);
    if (this.position[slot] === -1) this.records.delete(slot);
    this.ids[slot] = "";
    this.head = (this.head + 1) & (this.ids.length - 1);
    this.count--;
  }

  /** The record in `slot`, as snapshots, digests and replayed answers see it. */
  recordAt(slot: number): RequestRecord {
    const p = this.position[slot]!;
    if (p === -1) return this.records.get(slot)!;
    const position = this.positions.at(p);
    return {
      requestId: this.ids[slot]!,
      timeMs: this.timeMs[slot]!,
      holdId: this.holdId[slot]!,
      expireTimeMs: this.expireTimeMs[slot]!,
      lines: [
        {
          productId: position.productId,
          warehouseId: position.warehouseId,
          quantity: this.quantity[slot]!,
        },
      ],
      lineIndex: 0,
      available: 0,
    };
  }

  /** Every record, oldest first. */
  toArray(): RequestRecord[] {
    const out: RequestRecord[] = [];
    const mask = this.ids.length - 1;
    for (let i = 0; i < this.count; i++) out.push(this.recordAt((this.head + i) & mask));
    return out;
  }

  // ---- internals -------------------------------------------------------------

  private hashOf(s: string): number {
    return requestHash(s, this.hashSeed);
  }

  private home(hash: number): number {
    return Math.imul(hash, 0x9e3779b1) >>> this.indexShift;
  }

  private add(requestId: string, timeMs: number): number {
    if (requestId === "") throw new Error("RequestTable: empty request id");
    if (this.count === this.ids.length) this.grow();
    const known = this.find(requestId);
    if (known !== -1) this.unindex(known);
    const slot = (this.head + this.count) & (this.ids.length - 1);
    this.ids[slot] = requestId;
    this.timeMs[slot] = timeMs;
    this.hash[slot] = this.hashOf(requestId);
    this.count++;
    if (this.count * 2 > this.index.length) this.reindex(this.index.length * 2);
    else this.insertIndex(slot);
    return slot;
  }

  private insertIndex(slot: number): void {
    cellInsert(this.index, this.home(this.hash[slot]!), slot + 1);
  }

  private readonly homeOfEntry = (entry: number): number => this.home(this.hash[entry - 1]!);

  private unindex(slot: number): void {
    const index = this.index;
    const mask = index.length - 1;
    let i = this.home(this.hash[slot]!);
    while (index[i] !== slot + 1) {
      if (index[i] === 0) throw new Error(`RequestTable: slot ${slot} not indexed`);
      i = (i + 1) & mask;
    }
    cellRemove(index, i, this.homeOfEntry);
  }

  /** Rebuilds the index from the ring; only the newest record of an id is
   * found, as before. */
  private reindex(length: number): void {
    this.index = new Int32Array(length);
    this.indexShift = 32 - Math.log2(length);
    const mask = this.ids.length - 1;
    const seen = new Set<string>();
    for (let i = this.count - 1; i >= 0; i--) {
      const slot = (this.head + i) & mask;
      const id = this.ids[slot]!;
      if (seen.has(id)) continue;
      seen.add(id);
      this.insertIndex(slot);
    }
  }

  /** Doubles the ring, oldest record first at slot 0; re-slots the side
   * records and the index. */
  private grow(): void {
    const mask = this.ids.length - 1;
    const old = {
      ids: this.ids,
      timeMs: this.timeMs,
      holdId: this.holdId,
      expireTimeMs: this.expireTimeMs,
      position: this.position,
      quantity: this.quantity,
      hash: this.hash,
    };
    const records = new Map(this.records);
    this.records.clear();
    this.allocate(this.ids.length * 2);
    for (let i = 0; i < this.count; i++) {
      const from = (this.head + i) & mask;
      this.ids[i] = old.ids[from]!;
      this.timeMs[i] = old.timeMs[from]!;
      this.holdId[i] = old.holdId[from]!;
      this.expireTimeMs[i] = old.expireTimeMs[from]!;
      this.position[i] = old.position[from]!;
      this.quantity[i] = old.quantity[from]!;
      this.hash[i] = old.hash[from]!;
      if (this.position[i] === -1) this.records.set(i, records.get(from)!);
    }
    this.head = 0;
    this.reindex(this.index.length);
  }

  /** Fresh, empty ring arrays of `capacity` slots. */
  private allocate(capacity: number): void {
    this.ids = new Array<string>(capacity).fill("");
    this.timeMs = new Float64Array(capacity);
    this.holdId = new Float64Array(capacity);
    this.expireTimeMs = new Float64Array(capacity);
    this.position = new Int32Array(capacity);
    this.quantity = new Int32Array(capacity);
    this.hash = new Int32Array(capacity);
  }
}
