import { wheelSlotCount } from "./limits.ts";

/**
 * What the wheel schedules: entries numbered 0.., their deadlines and links
 * in parallel typed arrays that the owner keeps (the partition's open-hold
 * table). Intrusive links make cancel O(1) with no allocation, and no entry
 * is an object. The owner may replace the arrays when it grows; the wheel
 * reads them afresh on every call.
 */
export interface WheelEntries {
  readonly expireTimeMs: Float64Array;
  /** The entry before in its slot's list; -1: the first. */
  readonly wheelPrev: Int32Array;
  /** The entry after in its slot's list; -1: the last. */
  readonly wheelNext: Int32Array;
  /** Slot index while scheduled, -1 when not in the wheel. */
  readonly wheelSlot: Int16Array;
}

/** Slots a wheel may have: a slot index must fit `wheelSlot` (Int16). */
const slotCountMax = 1 << 14;

/**
 * A hashed timer wheel: O(1) schedule and cancel, and a pulse that visits
 * only the slots whose time has come (never an idle entry elsewhere).
 * Entries further than one revolution away wait in their slot and are
 * skipped until their turn. Time is passed in, never read.
 */
export class TimerWheel {
  /** The first entry of each slot's list; -1: empty. */
  private readonly heads: Int32Array;
  private readonly mask: number;
  /** The next tick the pulse has not yet visited. */
  private cursorTick: number;
  private countValue = 0;

  constructor(
    private readonly entries: WheelEntries,
    readonly tickMs: number,
    startTimeMs: number,
    slotCount: number = wheelSlotCount,
  ) {
    if (!(Number.isInteger(tickMs) && tickMs > 0)) throw new Error("wheel: tickMs must be > 0");
    if ((slotCount & (slotCount - 1)) !== 0 || slotCount < 1 || slotCount > slotCountMax) {
      throw new Error(`wheel: slotCount not a power of 2 up to ${slotCountMax}`);
    }
    this.heads = new Int32Array(slotCount).fill(-1);
    this.mask = slotCount - 1;
    this.cursorTick = Math.floor(startTimeMs / tickMs);
  }

  get count(): number {
    return this.countValue;
  }

  /** Forgets every entry at once (their owner renumbers them and schedules
   * them again); their links are left for the owner to reset. */
  clear(): void {
    this.heads.fill(-1);
    this.countValue = 0;
  }

  schedule(entry: number): void {
    const { wheelPrev, wheelNext, wheelSlot, expireTimeMs } = this.entries;
    if (wheelSlot[entry] !== -1) throw new Error("wheel: entry already scheduled");
    // An entry already due goes into the cursor's slot so the next pulse sees it.
    const tick = Math.max(Math.floor(expireTimeMs[entry]! / this.tickMs), this.cursorTick);
    const slot = tick & this.mask;
    const head = this.heads[slot]!;
    wheelPrev[entry] = -1;
    wheelNext[entry] = head;
    if (head !== -1) wheelPrev[head] = entry;
    this.heads[slot] = entry;
    wheelSlot[entry] = slot;
    this.countValue++;
  }

  cancel(entry: number): void {
    const { wheelPrev, wheelNext, wheelSlot } = this.entries;
    const slot = wheelSlot[entry]!;
    if (slot === -1) return;
    const prev = wheelPrev[entry]!;
    const next = wheelNext[entry]!;
    if (prev === -1) this.heads[slot] = next;
    else wheelNext[prev] = next;
    if (next !== -1) wheelPrev[next] = prev;
    wheelPrev[entry] = -1;
    wheelNext[entry] = -1;
    wheelSlot[entry] = -1;
    this.countValue--;
  }

  /**
   * Collects up to `countMax` entries with `expireTimeMs <= nowMs`, cancelling
   * each. The caller expires them. Stops early at the bound; the next call
   * resumes where this one stopped.
   */
  due(nowMs: number, countMax: number): number[] {
    const out: number[] = [];
    if (this.countValue === 0) {
      this.cursorTick = Math.max(this.cursorTick, Math.floor(nowMs / this.tickMs));
      return out;
    }
    const { wheelNext, expireTimeMs } = this.entries;
    const nowTick = Math.floor(nowMs / this.tickMs);
    // After one full revolution every slot has been visited; a longer gap
    // (a node down for hours) needs no more than that.
    const lastTick = Math.min(nowTick, this.cursorTick + this.mask);
    for (let tick = this.cursorTick; tick <= lastTick; tick++) {
      let entry = this.heads[tick & this.mask]!;
      while (entry !== -1) {
        const next = wheelNext[entry]!;
        if (expireTimeMs[entry]! <= nowMs) {
          if (out.length === countMax) return out;
          this.cancel(entry);
          out.push(entry);
        }
        entry = next;
      }
      if (tick < nowTick) this.cursorTick = tick + 1;
    }
    if (lastTick < nowTick) {
      // Every slot was visited: jump the cursor to now.
      this.cursorTick = nowTick;
    }
    return out;
  }
}
