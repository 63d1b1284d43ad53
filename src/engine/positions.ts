import { Position } from "./position.ts";

/**
 * The SKU positions of a partition, by product then warehouse. A lookup
 * hashes the caller's product id (V8 caches a string's hash) and compares
 * warehouse ids, instead of building and hashing a joined key per lookup;
 * a product held in one warehouse (the common case) costs one map entry.
 */
export class PositionIndex {
  private readonly byProduct = new Map<string, Position | Position[]>();
  private count = 0;

  get size(): number {
    return this.count;
  }

  get(productId: string, warehouseId: string): Position | undefined {
    const e = this.byProduct.get(productId);
    if (e === undefined) return undefined;
    if (!Array.isArray(e)) return e.warehouseId === warehouseId ? e : undefined;
    for (let i = 0; i < e.length; i++) if (e[i]!.warehouseId === warehouseId) return e[i];
    return undefined;
  }

  /** The position, created empty if new. */
  getOrAdd(productId: string, warehouseId: string): Position {
    const e = this.byProduct.get(productId);
    if (e !== undefined) {
      if (!Array.isArray(e)) {
        if (e.warehouseId === warehouseId) return e;
        const p = new Position(productId, warehouseId);
        this.byProduct.set(productId, [e, p]);
        this.count++;
        return p;
      }
      for (let i = 0; i < e.length; i++) if (e[i]!.warehouseId === warehouseId) return e[i]!;
      const p = new Position(productId, warehouseId);
      e.push(p);
      this.count++;
      return p;
    }
    const p = new Position(productId, warehouseId);
    this.byProduct.set(productId, p);
    this.count++;
    return p;
  }

  *values(): IterableIterator<Position> {
    for (const e of this.byProduct.values()) {
      if (Array.isArray(e)) yield* e;
      else yield e;
    }
  }
}
