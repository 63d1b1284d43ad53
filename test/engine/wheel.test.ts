import fc from "fast-check";
import { describe, expect, it } from "vitest";
import { limits, TimerWheel, type WheelEntries } from "../../src/engine/index.ts";

// The timer wheel is checked against the simplest possible timer: a list of
// entries scanned in full. `due(now, countMax)` must return only entries with
// `expireTimeMs <= now`, never more than `countMax`, and every due entry once
// the pulse is repeated until it returns fewer than `countMax`.

// The wheel schedules entries by number, their deadlines and links in arrays
// its owner keeps (the partition's open-hold table). Here one table, grown
// as entries are made, serves every wheel, and each entry has an object
// face so that tests read as before.
class Table implements WheelEntries {
  expireTimeMs = new Float64Array(1024);
  wheelPrev = new Int32Array(1024).fill(-1);
  wheelNext = new Int32Array(1024).fill(-1);
  wheelSlot = new Int16Array(1024).fill(-1);
  readonly entries: Entry[] = [];

  add(e: Entry): number {
    const index = this.entries.length;
    if (index === this.expireTimeMs.length) this.grow();
    this.entries.push(e);
    return index;
  }

  private grow(): void {
    const n = this.expireTimeMs.length * 2;
    const f = new Float64Array(n);
    f.set(this.expireTimeMs);
    this.expireTimeMs = f;
    for (const k of ["wheelPrev", "wheelNext"] as const) {
      const a = new Int32Array(n).fill(-1);
      a.set(this[k]);
      this[k] = a;
    }
    const slot = new Int16Array(n).fill(-1);
    slot.set(this.wheelSlot);
    this.wheelSlot = slot;
  }
}

const table = new Table();

class Entry {
  readonly index: number;
  constructor(
    readonly id: number,
    expireTimeMs: number,
  ) {
    this.index = table.add(this);
    this.expireTimeMs = expireTimeMs;
  }
  get expireTimeMs(): number {
    return table.expireTimeMs[this.index]!;
  }
  set expireTimeMs(ms: number) {
    table.expireTimeMs[this.index] = ms;
  }
  get wheelSlot(): number {
    return table.wheelSlot[this.index]!;
  }
  get wheelPrev(): number {
    return table.wheelPrev[this.index]!;
  }
  get wheelNext(): number {
    return table.wheelNext[this.index]!;
  }
}

/** A TimerWheel over the shared table, taking and returning Entry objects. */
class Wheel {
  private readonly inner: TimerWheel;
  constructor(tickMs: number, startTimeMs: number, slotCount?: number) {
    this.inner = new TimerWheel(table, tickMs, startTimeMs, slotCount);
  }
  get count(): number {
    return this.inner.count;
  }
  schedule(e: Entry): void {
    this.inner.schedule(e.index);
  }
  cancel(e: Entry): void {
    this.inner.cancel(e.index);
  }
  due(nowMs: number, countMax: number): Entry[] {
    return this.inner.due(nowMs, countMax).map((i) => table.entries[i]!);
  }
}

function ids(entries: Entry[]): number[] {
  return entries.map((e) => e.id).sort((a, b) => a - b);
}

/** Pulses until the wheel returns fewer than `countMax`; every batch must be
 * within the bound. */
function drain(wheel: Wheel, nowMs: number, countMax: number): Entry[] {
  const out: Entry[] = [];
  for (let pulses = 0; ; pulses++) {
    if (pulses > 1_000_000) throw new Error("drain does not terminate");
    const batch = wheel.due(nowMs, countMax);
    expect(batch.length).toBeLessThanOrEqual(countMax);
    out.push(...batch);
    if (batch.length < countMax) return out;
  }
}

describe("TimerWheel: schedule and cancel", () => {
  it("counts scheduled entries and forgets cancelled ones", () => {
    const wheel = new Wheel(10, 0);
    const a = new Entry(1, 100);
    const b = new Entry(2, 100);
    const c = new Entry(3, 100);
    wheel.schedule(a);
    wheel.schedule(b);
    wheel.schedule(c);
    expect(wheel.count).toBe(3);
    expect(a.wheelSlot).not.toBe(-1);
    // Cancel the middle of the slot's list, then its head, then its tail.
    wheel.cancel(b);
    expect(wheel.count).toBe(2);
    expect(b.wheelSlot).toBe(-1);
    expect(b.wheelPrev).toBe(-1);
    expect(b.wheelNext).toBe(-1);
    expect(ids(wheel.due(100, 10))).toEqual([1, 3]);
    expect(wheel.count).toBe(0);
    for (const e of [a, c]) expect(e.wheelSlot).toBe(-1);
  });

  it("keeps the rest of a slot intact whichever entry is cancelled", () => {
    for (let victim = 0; victim < 4; victim++) {
      const wheel = new Wheel(10, 0);
      const entries = [0, 1, 2, 3].map((i) => new Entry(i, 55));
      for (const e of entries) wheel.schedule(e);
      wheel.cancel(entries[victim]!);
      expect(ids(wheel.due(60, 10))).toEqual([0, 1, 2, 3].filter((i) => i !== victim));
    }
  });

  it("treats cancel of an entry that is not scheduled as a no-op", () => {
    const wheel = new Wheel(10, 0);
    const kept = new Entry(1, 30);
    wheel.schedule(kept);
    const never = new Entry(2, 30);
    wheel.cancel(never);
    expect(wheel.count).toBe(1);
    // Cancelled twice: the second cancel changes nothing either.
    const twice = new Entry(3, 30);
    wheel.schedule(twice);
    wheel.cancel(twice);
    wheel.cancel(twice);
    expect(wheel.count).toBe(1);
    expect(ids(wheel.due(30, 10))).toEqual([1]);
  });

  it("refuses to schedule an entry twice", () => {
    const wheel = new Wheel(10, 0);
    const e = new Entry(1, 30);
    wheel.schedule(e);
    expect(() => wheel.schedule(e)).toThrow(/already scheduled/);
    expect(wheel.count).toBe(1);
  });

  it("can schedule an entry again after it was cancelled or returned as due", () => {
    const wheel = new Wheel(10, 0);
    const e = new Entry(1, 30);
    wheel.schedule(e);
    wheel.cancel(e);
    e.expireTimeMs = 50;
    wheel.schedule(e);
    expect(wheel.due(49, 10)).toEqual([]);
    expect(ids(wheel.due(50, 10))).toEqual([1]);
    e.expireTimeMs = 70;
    wheel.schedule(e);
    expect(ids(wheel.due(70, 10))).toEqual([1]);
    expect(wheel.count).toBe(0);
  });

  it("rejects a bad tick or slot count", () => {
    expect(() => new Wheel(0, 0)).toThrow();
    expect(() => new Wheel(-5, 0)).toThrow();
    expect(() => new Wheel(1.5, 0)).toThrow();
    expect(() => new Wheel(10, 0, 12)).toThrow(/power of 2/);
    // A slot index must fit the entries' Int16 slot field.
    expect(() => new Wheel(10, 0, 1 << 15)).toThrow(/up to 16384/);
    expect(new Wheel(10, 0, 1 << 14).count).toBe(0);
  });
});

describe("TimerWheel: due", () => {
  it("returns exactly the entries whose deadline is at or before now", () => {
    const wheel = new Wheel(10, 0);
    // Same tick, either side of now; exactly now; a later tick.
    const entries = [new Entry(1, 101), new Entry(2, 105), new Entry(3, 109), new Entry(4, 120)];
    for (const e of entries) wheel.schedule(e);
    expect(ids(wheel.due(104, 100))).toEqual([1]);
    expect(ids(wheel.due(105, 100))).toEqual([2]);
    expect(ids(wheel.due(119, 100))).toEqual([3]);
    expect(ids(wheel.due(120, 100))).toEqual([4]);
    expect(wheel.count).toBe(0);
  });

  it("returns an entry already past due at the next pulse", () => {
    const wheel = new Wheel(10, 0);
    expect(wheel.due(1_000, 10)).toEqual([]);
    const late = new Entry(1, 500);
    wheel.schedule(late);
    expect(ids(wheel.due(1_000, 10))).toEqual([1]);
  });

  it("is bounded by countMax and resumes where it stopped", () => {
    const wheel = new Wheel(10, 0);
    const entries: Entry[] = [];
    for (let i = 0; i < 25; i++) entries.push(new Entry(i, 10 + (i % 5) * 10));
    for (const e of entries) wheel.schedule(e);
    wheel.schedule(new Entry(100, 1_000)); // not due
    const seen: number[] = [];
    const sizes: number[] = [];
    for (;;) {
      const batch = wheel.due(60, 7);
      sizes.push(batch.length);
      seen.push(...batch.map((e) => e.id));
      if (batch.length < 7) break;
    }
    expect(sizes).toEqual([7, 7, 7, 4]);
    expect(seen.sort((a, b) => a - b)).toEqual(entries.map((e) => e.id));
    expect(wheel.count).toBe(1);
    expect(wheel.due(60, 0)).toEqual([]);
  });

  it("returns nothing when countMax is 0 and loses nothing by it", () => {
    const wheel = new Wheel(10, 0);
    wheel.schedule(new Entry(1, 10));
    expect(wheel.due(100, 0)).toEqual([]);
    expect(wheel.count).toBe(1);
    expect(ids(wheel.due(100, 1))).toEqual([1]);
  });

  it("does not return an entry more than one revolution away before its time", () => {
    const tickMs = 10;
    const slotCount = 8;
    const revolutionMs = tickMs * slotCount;
    const wheel = new Wheel(tickMs, 0, slotCount);
    // Three and a half revolutions away, and exactly two revolutions away
    // (same slot as the start).
    const far = new Entry(1, 3 * revolutionMs + 45);
    const sameSlot = new Entry(2, 2 * revolutionMs);
    wheel.schedule(far);
    wheel.schedule(sameSlot);
    for (let now = 0; now < sameSlot.expireTimeMs; now += 1) {
      expect(wheel.due(now, 100)).toEqual([]);
    }
    expect(ids(wheel.due(sameSlot.expireTimeMs, 100))).toEqual([2]);
    for (let now = sameSlot.expireTimeMs; now < far.expireTimeMs; now += tickMs) {
      expect(wheel.due(now, 100)).toEqual([]);
    }
    expect(wheel.due(far.expireTimeMs - 1, 100)).toEqual([]);
    expect(ids(wheel.due(far.expireTimeMs, 100))).toEqual([1]);
  });

  it("skips far entries in a slot also when the clock jumps past their slot", () => {
    const wheel = new Wheel(10, 0, 8);
    const far = new Entry(1, 10_000);
    wheel.schedule(far);
    // Jumps of several revolutions each, all before the deadline.
    for (const now of [85, 500, 2_000, 9_999]) expect(wheel.due(now, 100)).toEqual([]);
    expect(ids(wheel.due(10_000, 100))).toEqual([1]);
  });

  it("finds everything due after a jump of hours, and nothing that is not", () => {
    const tickMs = limits.wheelTickMsDefault;
    const wheel = new Wheel(tickMs, 0);
    const start = 1_700_000_000_000;
    const entries: Entry[] = [];
    for (let i = 0; i < 500; i++) {
      // Spread over ~3 hours, so over many revolutions of the default wheel.
      entries.push(new Entry(i, start + i * 21_601));
    }
    for (const e of entries) wheel.schedule(e);
    const now = start + 2 * 3600 * 1000; // 2 hours later
    const due = drain(wheel, now, 64);
    const expected = entries.filter((e) => e.expireTimeMs <= now).map((e) => e.id);
    expect(expected.length).toBeGreaterThan(300);
    expect(ids(due)).toEqual(expected);
    expect(wheel.count).toBe(entries.length - expected.length);
    // The rest come due later, each at its own deadline.
    const rest = drain(wheel, start + 4 * 3600 * 1000, 1_000);
    expect(ids(rest)).toEqual(entries.filter((e) => e.expireTimeMs > now).map((e) => e.id));
  });

  it("finds an entry scheduled on a wheel whose cursor starts far behind", () => {
    // A partition's wheel starts at time 0 and sees its first pulse at the
    // epoch time of today.
    const wheel = new Wheel(10, 0);
    const now = 1_700_000_000_123;
    wheel.schedule(new Entry(1, now - 5));
    wheel.schedule(new Entry(2, now + 5));
    expect(ids(wheel.due(now, 10))).toEqual([1]);
    expect(ids(wheel.due(now + 5, 10))).toEqual([2]);
  });
});

// ---- property: the wheel behaves like a list scanned in full ----------------

type Op =
  | { kind: "schedule"; offsetMs: number }
  | { kind: "cancel"; pick: number }
  | { kind: "advance"; deltaMs: number }
  | { kind: "due"; countMax: number };

function opArb(tickMs: number, revolutionMs: number): fc.Arbitrary<Op> {
  const offset = fc.oneof(
    fc.constantFrom(0, -1, 1, tickMs - 1, tickMs, tickMs + 1, revolutionMs - 1, revolutionMs),
    fc.constantFrom(revolutionMs + 1, 3 * revolutionMs + tickMs / 2),
    fc.integer({ min: -3 * revolutionMs, max: 5 * revolutionMs }),
  );
  const delta = fc.oneof(
    fc.constantFrom(0, 1, tickMs - 1, tickMs, revolutionMs - 1, revolutionMs, revolutionMs + 1),
    fc.integer({ min: 0, max: 3 * revolutionMs }),
    fc.constantFrom(3_600_000, 7 * 3_600_000 + 3),
  );
  return fc.oneof(
    { arbitrary: offset.map((offsetMs) => ({ kind: "schedule" as const, offsetMs })), weight: 4 },
    { arbitrary: fc.nat().map((pick) => ({ kind: "cancel" as const, pick })), weight: 2 },
    { arbitrary: delta.map((deltaMs) => ({ kind: "advance" as const, deltaMs })), weight: 2 },
    {
      arbitrary: fc
        .oneof(fc.constantFrom(0, 1, 2, 3), fc.integer({ min: 1, max: 50 }))
        .map((countMax) => ({ kind: "due" as const, countMax })),
      weight: 3,
    },
  );
}

function checkAgainstList(tickMs: number, slotCount: number, startMs: number, ops: Op[]): void {
  const wheel = new Wheel(tickMs, startMs, slotCount);
  const all: Entry[] = [];
  const scheduled = new Set<Entry>();
  let now = startMs;
  let nextId = 1;
  for (const op of ops) {
    switch (op.kind) {
      case "schedule": {
        const e = new Entry(nextId++, Math.max(0, now + op.offsetMs));
        all.push(e);
        wheel.schedule(e);
        scheduled.add(e);
        break;
      }
      case "cancel": {
        // Any entry ever made: scheduled, cancelled or already returned.
        if (all.length === 0) break;
        const e = all[op.pick % all.length]!;
        wheel.cancel(e);
        scheduled.delete(e);
        break;
      }
      case "advance":
        now += op.deltaMs;
        break;
      case "due": {
        const dueInList = new Set([...scheduled].filter((e) => e.expireTimeMs <= now));
        const got = wheel.due(now, op.countMax);
        expect(got.length).toBeLessThanOrEqual(op.countMax);
        expect(new Set(got).size).toBe(got.length);
        for (const e of got) {
          expect(dueInList.has(e), `entry ${e.id} (expires ${e.expireTimeMs}) at ${now}`).toBe(
            true,
          );
          expect(e.wheelSlot).toBe(-1);
          scheduled.delete(e);
        }
        // Fewer than the bound means nothing due was left behind.
        if (got.length < op.countMax) expect(got.length).toBe(dueInList.size);
        else expect(got.length).toBe(Math.min(op.countMax, dueInList.size));
        break;
      }
    }
    expect(wheel.count).toBe(scheduled.size);
  }
  // A final unbounded pulse far in the future returns every entry left.
  const rest = drain(wheel, now + 100 * tickMs * slotCount, 7);
  expect(ids(rest)).toEqual(ids([...scheduled]));
  expect(wheel.count).toBe(0);
}

describe("TimerWheel against a list scanned in full", () => {
  it("agrees on a small wheel (many revolutions)", () => {
    fc.assert(
      fc.property(
        fc
          .tuple(fc.constantFrom(1, 4, 10), fc.constantFrom(1, 2, 8))
          .chain(([tickMs, slotCount]) =>
            fc.tuple(
              fc.constant(tickMs),
              fc.constant(slotCount),
              fc.integer({ min: 0, max: 10_000 }),
              fc.array(opArb(tickMs, tickMs * slotCount), { maxLength: 120 }),
            ),
          ),
        ([tickMs, slotCount, startMs, ops]) => checkAgainstList(tickMs, slotCount, startMs, ops),
      ),
      { numRuns: 400 },
    );
  });

  it("agrees on the default wheel at epoch times", () => {
    const tickMs = limits.wheelTickMsDefault;
    const revolutionMs = tickMs * limits.wheelSlotCount;
    fc.assert(
      fc.property(fc.array(opArb(tickMs, revolutionMs), { maxLength: 80 }), (ops) =>
        checkAgainstList(tickMs, limits.wheelSlotCount, 1_700_000_000_000, ops),
      ),
      { numRuns: 150 },
    );
  });
});
