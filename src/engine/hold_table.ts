import type { Position } from "./position.ts";
import type { PositionIndex } from "./positions.ts";
import { cellInsert, cellRemove } from "./slot_index.ts";
import type { Line } from "./types.ts";
import type { WheelEntries } from "./wheel.ts";

/** Bits of a hold's flags. */
export const HoldFlag = {
  /** Part of a reservation spanning partitions, awaiting the decision. */
  Prepared: 1,
  /** Pinned while an order settles: out of the timer wheel. */
  Pinned: 2,
} as const;

/** The lines of a hold of several lines (rare), kept apart by slot. */
interface ManyLines {
  positions: Position[];
  quantities: number[];
}

/** Largest quantity a single-line hold keeps inline (Int32). */
const inlineQuantityMax = 0x7fff_ffff;

/**
 * The open holds of a partition, one slot each in parallel typed arrays:
 * ~45 bytes per hold and no object per hold, so a million holds are
 * neither a million objects for the collector to trace nor 100+ bytes of
 * headers and boxed doubles each. Holds are found by seq through an
 * open-addressing index. A hold of one line (the common case) keeps its
 * position's index and quantity inline; one of several lines keeps them in
 * a side map. The table is also the timer wheel's entry store.
 */
export class HoldTable implements WheelEntries {
  /** The seq of the event that placed the hold; 0: a free slot. */
  // Set by allocate() (constructor, shrink) and grow().
  seq!: Float64Array;
  expireTimeMs!: Float64Array;
  /** Index of the position held (one line); -1: several lines, in `many`. */
  position!: Int32Array;
  quantity!: Int32Array;
  /** HoldFlag bits. */
  flags!: Uint8Array;
  wheelSlot!: Int16Array;
  wheelPrev!: Int32Array;
  /** The wheel's next entry; for a free slot, the next free slot. */
  wheelNext!: Int32Array;
  /** The caller's request id ("" for none); the string is shared with the
   * event and the remembered request, not copied. */
  requestId!: string[];
  private readonly many = new Map<number, ManyLines>();
  /** slot + 1 by hash of seq; 0: empty. Load kept at most one half. */
  private index: Int32Array;
  private indexShift: number;
  private readonly capacityMin: number;
  private freeHead = -1;
  /** Slots below this have been handed out at some time. */
  private used = 0;
  private count = 0;

  constructor(
    private readonly positions: PositionIndex,
    capacity = 1024,
  ) {
    if (capacity < 2 || (capacity & (capacity - 1)) !== 0) {
      throw new Error("HoldTable: capacity must be a power of 2");
    }
    this.capacityMin = capacity;
    this.allocate(capacity);
    this.index = new Int32Array(capacity * 2);
    this.indexShift = 32 - Math.log2(capacity * 2);
  }

  /** Fresh, empty arrays of `capacity` slots. */
  private allocate(capacity: number): void {
    this.seq = new Float64Array(capacity);
    this.expireTimeMs = new Float64Array(capacity);
    this.position = new Int32Array(capacity);
    this.quantity = new Int32Array(capacity);
    this.flags = new Uint8Array(capacity);
    this.wheelSlot = new Int16Array(capacity).fill(-1);
    this.wheelPrev = new Int32Array(capacity).fill(-1);
    this.wheelNext = new Int32Array(capacity).fill(-1);
    this.requestId = new Array<string>(capacity).fill("");
  }

  get size(): number {
    return this.count;
  }

  /** Slots the arrays have now. */
  get capacity(): number {
    return this.seq.length;
  }

  /** The slot of the open hold placed by event `seq`; -1 when none. */
  find(seq: number): number {
    const index = this.index;
    const mask = index.length - 1;
    for (let i = this.home(seq); ; i = (i + 1) & mask) {
      const e = index[i]!;
      if (e === 0) return -1;
      if (this.seq[e - 1] === seq) return e - 1;
    }
  }

  /** Adds an open hold of one line; returns its slot. */
  addOne(
    seq: number,
    expireTimeMs: number,
    requestId: string,
    position: Position,
    quantity: number,
  ): number {
    if (!(quantity > 0 && quantity <= inlineQuantityMax)) {
      throw new Error(`HoldTable: quantity ${quantity} out of range`);
    }
    const slot = this.add(seq, expireTimeMs, requestId);
    this.position[slot] = position.index;
    this.quantity[slot] = quantity;
    return slot;
  }

  /** Adds an open hold of several lines; returns its slot. */
  addMany(
    seq: number,
    expireTimeMs: number,
    requestId: string,
    positions: Position[],
    quantities: number[],
  ): number {
    const slot = this.add(seq, expireTimeMs, requestId);
    this.position[slot] = -1;
    this.quantity[slot] = 0;
    this.many.set(slot, { positions, quantities });
    return slot;
  }

  /** Frees a hold's slot. The wheel must no longer hold it. */
  remove(slot: number): void {
    const seq = this.seq[slot]!;
    if (seq === 0) throw new Error(`HoldTable: slot ${slot} is free`);
    if (this.wheelSlot[slot] !== -1) throw new Error(`HoldTable: slot ${slot} still scheduled`);
    this.unindex(slot, seq);
    if (this.position[slot] === -1) this.many.delete(slot);
    this.seq[slot] = 0;
    this.flags[slot] = 0;
    this.requestId[slot] = "";
    this.wheelNext[slot] = this.freeHead;
    this.freeHead = slot;
    this.count--;
  }

  /** True when at most an eighth of the slots are in use: time to shrink
   * (to a quarter used), so that add and remove at the edge do not flap. */
  shouldShrink(): boolean {
    return this.seq.length > this.capacityMin && this.count * 8 <= this.seq.length;
  }

  /**
   * Moves every open hold, in slot order, into arrays half the size: they
   * take slots 0..size-1, so slot numbers held elsewhere are void (the
   * owner reschedules the wheel; wheel fields are reset here).
   */
  shrink(): void {
    const n = Math.max(this.capacityMin, this.seq.length / 2);
    const old = this.snapshotArrays();
    const many = new Map(this.many);
    this.many.clear();
    this.allocate(n);
    let to = 0;
    for (let from = 0; from < this.used; from++) {
      if (old.seq[from] === 0) continue;
      this.seq[to] = old.seq[from]!;
      this.expireTimeMs[to] = old.expireTimeMs[from]!;
      this.position[to] = old.position[from]!;
      this.quantity[to] = old.quantity[from]!;
      this.flags[to] = old.flags[from]!;
      this.requestId[to] = old.requestId[from]!;
      if (old.position[from] === -1) this.many.set(to, many.get(from)!);
      to++;
    }
    if (to !== this.count) throw new Error(`HoldTable: ${to} holds moved, ${this.count} open`);
    this.used = to;
    this.freeHead = -1;
    this.reindex(n * 2);
  }

  lineCount(slot: number): number {
    return this.position[slot] === -1 ? this.many.get(slot)!.positions.length : 1;
  }

  positionAt(slot: number, i: number): Position {
    const p = this.position[slot]!;
    return p === -1 ? this.many.get(slot)!.positions[i]! : this.positions.at(p);
  }

  quantityAt(slot: number, i: number): number {
    const p = this.position[slot]!;
    return p === -1 ? this.many.get(slot)!.quantities[i]! : this.quantity[slot]!;
  }

  lines(slot: number): Line[] {
    const out: Line[] = [];
    for (let i = 0, n = this.lineCount(slot); i < n; i++) {
      const p = this.positionAt(slot, i);
      out.push({
        productId: p.productId,
        warehouseId: p.warehouseId,
        quantity: this.quantityAt(slot, i),
      });
    }
    return out;
  }

  /** The slots of every open hold, in no particular order. */
  slots(): number[] {
    const out: number[] = [];
    for (let s = 0; s < this.used; s++) if (this.seq[s] !== 0) out.push(s);
    return out;
  }

  // ---- internals -------------------------------------------------------------

  /** Fibonacci hashing of the low 32 bits: sequential seqs spread out. */
  private home(seq: number): number {
    return Math.imul(seq | 0, 0x9e3779b1) >>> this.indexShift;
  }

  private add(seq: number, expireTimeMs: number, requestId: string): number {
    if (!(seq > 0)) throw new Error(`HoldTable: seq ${seq} must be positive`);
    if (this.find(seq) !== -1) throw new Error(`HoldTable: hold of seq ${seq} twice`);
    let slot = this.freeHead;
    if (slot !== -1) {
      this.freeHead = this.wheelNext[slot]!;
      this.wheelNext[slot] = -1;
    } else {
      if (this.used === this.seq.length) this.grow();
      slot = this.used++;
    }
    this.seq[slot] = seq;
    this.expireTimeMs[slot] = expireTimeMs;
    this.requestId[slot] = requestId;
    this.count++;
    if (this.count * 2 > this.index.length) this.reindex(this.index.length * 2);
    else this.insertIndex(slot, seq);
    return slot;
  }

  private insertIndex(slot: number, seq: number): void {
    cellInsert(this.index, this.home(seq), slot + 1);
  }

  private readonly homeOfEntry = (entry: number): number => this.home(this.seq[entry - 1]!);

  private unindex(slot: number, seq: number): void {
    const index = this.index;
    const mask = index.length - 1;
    let i = this.home(seq);
    while (index[i] !== slot + 1) {
      if (index[i] === 0) throw new Error(`HoldTable: seq ${seq} not indexed`);
      i = (i + 1) & mask;
    }
    cellRemove(index, i, this.homeOfEntry);
  }

  private reindex(length: number): void {
    this.index = new Int32Array(length);
    this.indexShift = 32 - Math.log2(length);
    for (let s = 0; s < this.used; s++) {
      const seq = this.seq[s]!;
      if (seq !== 0) this.insertIndex(s, seq);
    }
  }

  /** Doubles the arrays; every hold keeps its slot (the wheel links slots). */
  private grow(): void {
    const old = this.snapshotArrays();
    this.allocate(this.seq.length * 2);
    this.seq.set(old.seq);
    this.expireTimeMs.set(old.expireTimeMs);
    this.position.set(old.position);
    this.quantity.set(old.quantity);
    this.flags.set(old.flags);
    this.wheelSlot.set(old.wheelSlot);
    this.wheelPrev.set(old.wheelPrev);
    this.wheelNext.set(old.wheelNext);
    for (let s = 0; s < this.used; s++) this.requestId[s] = old.requestId[s]!;
  }

  /** The arrays as they are now (before allocate() replaces them). */
  private snapshotArrays() {
    return {
      seq: this.seq,
      expireTimeMs: this.expireTimeMs,
      position: this.position,
      quantity: this.quantity,
      flags: this.flags,
      wheelSlot: this.wheelSlot,
      wheelPrev: this.wheelPrev,
      wheelNext: this.wheelNext,
      requestId: this.requestId,
    };
  }
}
