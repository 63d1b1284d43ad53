import { describe, expect, it } from "vitest";
import { PositionIndex } from "../../src/engine/positions.ts";

// The SKU positions of a partition: one per (product, warehouse), found by
// both ids whether a product sits in one warehouse, a few or a hundred.

describe("PositionIndex", () => {
  it("finds every position by its ids and its index, across one, few and many warehouses", () => {
    const index = new PositionIndex();
    const made = new Map<string, number>();
    // Products in 1, 2, 8, 9 and 100 warehouses (a list up to 8, a map beyond),
    // added interleaved so that every change of shape happens mid-way.
    const counts = [1, 2, 8, 9, 100];
    for (let w = 0; w < 100; w++) {
      counts.forEach((n, p) => {
        if (w >= n) return;
        const pos = index.getOrAdd(`p${p}`, `w${w}`);
        expect(pos.productId).toBe(`p${p}`);
        expect(pos.warehouseId).toBe(`w${w}`);
        made.set(`p${p}/w${w}`, pos.index);
      });
    }
    expect(index.size).toBe(1 + 2 + 8 + 9 + 100);
    counts.forEach((n, p) => {
      for (let w = 0; w < 101; w++) {
        // Equal but distinct strings, as ids arrive from another thread.
        const productId = ` p${p}`.slice(1);
        const warehouseId = ` w${w}`.slice(1);
        const pos = index.get(productId, warehouseId);
        if (w >= n) {
          expect(pos).toBeUndefined();
          continue;
        }
        expect(pos?.index).toBe(made.get(`p${p}/w${w}`));
        expect(index.at(pos!.index)).toBe(pos);
        expect(index.getOrAdd(productId, warehouseId)).toBe(pos);
      }
    });
    expect(index.size).toBe(120);
    expect(index.get("p9", "w0")).toBeUndefined();
    expect([...index.values()].map((x) => x.index)).toEqual([...Array(120).keys()]);
    expect(() => index.at(120)).toThrow(/no position 120/);
  });
});
