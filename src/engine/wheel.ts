import { wheelSlotCount } from "./limits.ts";

/** An entry the wheel can hold: intrusive links make cancel O(1) with no
 * allocation. A hold is its own wheel entry. */
export interface WheelEntry {
  expireTimeMs: number;
  wheelPrev: WheelEntry | null;
  wheelNext: WheelEntry | null;
  /** Slot index while scheduled, -1 when not in the wheel. */
  wheelSlot: number;
}

/**
 * A hashed timer wheel: O(1) schedule and cancel, and a pulse that visits
 * only the slots whose time has come (never an idle entry elsewhere).
 * Entries further than one revolution away wait in their slot and are
 * skipped until their turn. Time is passed in, never read.
 */
export class TimerWheel<E extends WheelEntry> {
  private readonly slots: (E | null)[];
  private readonly mask: number;
  /** The next tick the pulse has not yet visited. */
  private cursorTick: number;
  private countValue = 0;

  constructor(
    readonly tickMs: number,
    startTimeMs: number,
    slotCount: number = wheelSlotCount,
  ) {
    if (!(Number.isInteger(tickMs) && tickMs > 0)) throw new Error("wheel: tickMs must be > 0");
    if ((slotCount & (slotCount - 1)) !== 0) throw new Error("wheel: slotCount not a power of 2");
    this.slots = new Array<E | null>(slotCount).fill(null);
    this.mask = slotCount - 1;
    this.cursorTick = Math.floor(startTimeMs / tickMs);
  }

  get count(): number {
    return this.countValue;
  }

  schedule(entry: E): void {
    if (entry.wheelSlot !== -1) throw new Error("wheel: entry already scheduled");
    // An entry already due goes into the cursor's slot so the next pulse sees it.
    const tick = Math.max(Math.floor(entry.expireTimeMs / this.tickMs), this.cursorTick);
    const slot = tick & this.mask;
    const head = this.slots[slot] ?? null;
    entry.wheelPrev = null;
    entry.wheelNext = head;
    if (head !== null) head.wheelPrev = entry;
    this.slots[slot] = entry;
    entry.wheelSlot = slot;
    this.countValue++;
  }

  cancel(entry: E): void {
    const slot = entry.wheelSlot;
    if (slot === -1) return;
    const prev = entry.wheelPrev;
    const next = entry.wheelNext;
    if (prev === null) this.slots[slot] = next as E | null;
    else prev.wheelNext = next;
    if (next !== null) next.wheelPrev = prev;
    entry.wheelPrev = null;
    entry.wheelNext = null;
    entry.wheelSlot = -1;
    this.countValue--;
  }

  /**
   * Collects up to `countMax` entries with `expireTimeMs <= nowMs`, cancelling
   * each. The caller expires them. Stops early at the bound; the next call
   * resumes where this one stopped.
   */
  due(nowMs: number, countMax: number): E[] {
    const out: E[] = [];
    if (this.countValue === 0) {
      this.cursorTick = Math.max(this.cursorTick, Math.floor(nowMs / this.tickMs));
      return out;
    }
    const nowTick = Math.floor(nowMs / this.tickMs);
    // After one full revolution every slot has been visited; a longer gap
    // (a node down for hours) needs no more than that.
    const lastTick = Math.min(nowTick, this.cursorTick + this.mask);
    for (let tick = this.cursorTick; tick <= lastTick; tick++) {
      let entry = this.slots[tick & this.mask] ?? null;
      while (entry !== null) {
        const next = entry.wheelNext as E | null;
        if (entry.expireTimeMs <= nowMs) {
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
