import fc from "fast-check";
import { describe, expect, it } from "vitest";
import { HoldTable } from "../../src/engine/hold_table.ts";
import { PositionIndex } from "../../src/engine/positions.ts";

// The open-hold table against a Map of plain records: any sequence of adds
// and removes leaves the same holds findable with the same fields, slots are
// reused, and growth (from the smallest capacity) loses nothing.

interface Ref {
  expireTimeMs: number;
  requestId: string;
  lines: { productId: string; warehouseId: string; quantity: number }[];
}

function positions(): PositionIndex {
  const index = new PositionIndex();
  for (let i = 0; i < 8; i++) index.getOrAdd(`p${i}`, i % 2 === 0 ? "w1" : "w2");
  return index;
}

const opArb = fc.oneof(
  {
    arbitrary: fc.record({
      kind: fc.constant("add" as const),
      lineCount: fc.constantFrom(1, 1, 1, 2, 3),
      pick: fc.nat(),
      quantity: fc.oneof(fc.constantFrom(1, 2, 0x7fff_ffff), fc.integer({ min: 1, max: 1e6 })),
      expireTimeMs: fc.integer({ min: 0, max: 2 ** 45 }),
      keyed: fc.boolean(),
    }),
    weight: 3,
  },
  { arbitrary: fc.record({ kind: fc.constant("remove" as const), pick: fc.nat() }), weight: 2 },
);

describe("HoldTable", () => {
  it("behaves as a Map of holds under any sequence of adds and removes", () => {
    fc.assert(
      fc.property(fc.array(opArb, { maxLength: 300 }), (ops) => {
        const index = positions();
        const all = [...index.values()];
        const t = new HoldTable(index, 2);
        const ref = new Map<number, Ref>();
        let seq = 0;
        for (const op of ops) {
          if (op.kind === "add") {
            seq += 1 + (op.pick % 3);
            const ps = Array.from({ length: op.lineCount }, (_, i) => all[(op.pick + i) % 8]!);
            const qs = ps.map((_, i) => op.quantity - i);
            const requestId = op.keyed ? `r-${seq}` : "";
            const slot =
              op.lineCount === 1
                ? t.addOne(seq, op.expireTimeMs, requestId, ps[0]!, qs[0]!)
                : t.addMany(seq, op.expireTimeMs, requestId, ps, qs);
            expect(t.find(seq)).toBe(slot);
            ref.set(seq, {
              expireTimeMs: op.expireTimeMs,
              requestId,
              lines: ps.map((p, i) => ({
                productId: p.productId,
                warehouseId: p.warehouseId,
                quantity: qs[i]!,
              })),
            });
          } else if (ref.size > 0) {
            const keys = [...ref.keys()];
            const victim = keys[op.pick % keys.length]!;
            t.remove(t.find(victim));
            ref.delete(victim);
            expect(t.find(victim)).toBe(-1);
            if (t.shouldShrink()) {
              const before = t.capacity;
              t.shrink();
              expect(t.capacity).toBe(before / 2);
            }
          }
          expect(t.size).toBe(ref.size);
        }
        const slots = t.slots();
        expect(slots.length).toBe(ref.size);
        expect(new Set(slots.map((s) => t.seq[s]))).toEqual(new Set(ref.keys()));
        for (const [s, r] of ref) {
          const slot = t.find(s);
          expect(slot).not.toBe(-1);
          expect(t.expireTimeMs[slot]).toBe(r.expireTimeMs);
          expect(t.requestId[slot]).toBe(r.requestId);
          expect(t.lines(slot)).toEqual(r.lines);
          expect(t.lineCount(slot)).toBe(r.lines.length);
          expect(t.wheelSlot[slot]).toBe(-1);
          expect(t.flags[slot]).toBe(0);
        }
        // Seqs never added are not found.
        expect(t.find(seq + 1)).toBe(-1);
      }),
      { numRuns: 300 },
    );
  });

  it("reuses freed slots before growing", () => {
    const index = positions();
    const p = index.at(0);
    const t = new HoldTable(index, 4);
    const slots = [1, 2, 3, 4].map((seq) => t.addOne(seq, 100, "", p, 1));
    expect(new Set(slots).size).toBe(4);
    t.remove(slots[1]!);
    t.remove(slots[3]!);
    const again = [t.addOne(5, 100, "", p, 1), t.addOne(6, 100, "", p, 1)];
    expect(new Set(again)).toEqual(new Set([slots[1], slots[3]]));
    expect(t.seq.length).toBe(4);
    t.addOne(7, 100, "", p, 1);
    expect(t.seq.length).toBe(8);
    expect([1, 3, 5, 6, 7].map((s) => t.find(s) !== -1)).toEqual([true, true, true, true, true]);
  });

  it("shrinks after a peak, keeping every hold and its fields in new slots", () => {
    const index = positions();
    const t = new HoldTable(index, 16);
    for (let seq = 1; seq <= 1000; seq++) {
      const p = index.at(seq % 8);
      if (seq % 10 === 0) t.addMany(seq, seq * 2, `r${seq}`, [p, index.at(0)], [seq, 1]);
      else t.addOne(seq, seq * 2, seq % 3 === 0 ? `r${seq}` : "", p, seq);
    }
    expect(t.capacity).toBe(1024);
    const kept = new Set<number>();
    for (let seq = 1; seq <= 1000; seq++) {
      if (seq % 37 === 0) kept.add(seq);
      else t.remove(t.find(seq));
      if (t.shouldShrink()) t.shrink();
    }
    expect(t.size).toBe(kept.size);
    expect(t.capacity).toBeLessThanOrEqual(256);
    expect(t.capacity).toBeGreaterThanOrEqual(16);
    for (const seq of kept) {
      const slot = t.find(seq);
      expect(slot).toBeLessThan(t.capacity);
      expect(t.expireTimeMs[slot]).toBe(seq * 2);
      expect(t.requestId[slot]).toBe(seq % 3 === 0 || seq % 10 === 0 ? `r${seq}` : "");
      expect(t.lines(slot)[0]!.quantity).toBe(seq);
      expect(t.lineCount(slot)).toBe(seq % 10 === 0 ? 2 : 1);
      expect(t.wheelSlot[slot]).toBe(-1);
    }
    // It never shrinks below its first capacity, and grows again when needed.
    for (let seq = 1001; seq <= 3000; seq++) t.addOne(seq, 1, "", index.at(0), 1);
    expect(t.size).toBe(kept.size + 2000);
    for (const seq of kept) expect(t.find(seq)).not.toBe(-1);
  });

  it("keeps a sliding window of sequential seqs (the common load)", () => {
    const index = positions();
    const t = new HoldTable(index);
    for (let seq = 1; seq <= 200_000; seq++) {
      t.addOne(seq, seq, "", index.at(seq % 8), 1);
      if (seq > 5000) t.remove(t.find(seq - 5000));
    }
    expect(t.size).toBe(5000);
    expect(t.seq.length).toBe(8192);
    expect(t.find(195_001)).not.toBe(-1);
    expect(t.find(195_000)).toBe(-1);
  });

  it("refuses what would be a bug: a seq twice, seq 0, a bad quantity, freeing twice or while scheduled", () => {
    const index = positions();
    const p = index.at(0);
    const t = new HoldTable(index);
    const slot = t.addOne(1, 100, "", p, 1);
    expect(() => t.addOne(1, 100, "", p, 1)).toThrow(/twice/);
    expect(() => t.addOne(0, 100, "", p, 1)).toThrow(/positive/);
    expect(() => t.addOne(2, 100, "", p, 0)).toThrow(/out of range/);
    expect(() => t.addOne(2, 100, "", p, 2 ** 31)).toThrow(/out of range/);
    expect(t.size).toBe(1);
    t.wheelSlot[slot] = 3;
    expect(() => t.remove(slot)).toThrow(/still scheduled/);
    t.wheelSlot[slot] = -1;
    t.remove(slot);
    expect(() => t.remove(slot)).toThrow(/free/);
    expect(t.size).toBe(0);
  });
});
