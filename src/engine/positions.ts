import { Position } from "./position.ts";

/** Warehouses of one product kept in a list, scanned by comparing ids;
 * beyond this many, in a map by warehouse id. */
const warehouseListMax = 8;

/** A product's positions: one (the common case), a short list, or a map. */
type Entry = Position | Position[] | Map<string, Position>;

/**
 * The SKU positions of a partition, by product then warehouse. A lookup
 * hashes the caller's product id and then finds the warehouse: the
 * product's one position, a scan of a short list, or a map once the product
 * sits in more than `warehouseListMax` warehouses. (Ids reach a worker as
 * fresh strings, so each comparison in a scan reads characters: over 100
 * warehouses a scan cost ~2 us per reservation, the map ~0.1 us.) No joined
 * key is built per lookup; a product held in one warehouse costs one map
 * entry.
 */
export class PositionIndex {
  private readonly byProduct = new Map<string, Entry>();
  /** Every position by its index; positions are never removed. */
  private readonly byIndex: Position[] = [];

  get size(): number {
    return this.byIndex.length;
  }

  /** The position numbered `index`. */
  at(index: number): Position {
    const p = this.byIndex[index];
    if (p === undefined) throw new Error(`positions: no position ${index}`);
    return p;
  }

  get(productId: string, warehouseId: string): Position | undefined {
    const e = this.byProduct.get(productId);
    if (e === undefined) return undefined;
    if (e instanceof Position) return e.warehouseId === warehouseId ? e : undefined;
    if (Array.isArray(e)) {
      for (let i = 0; i < e.length; i++) if (e[i]!.warehouseId === warehouseId) return e[i];
      return undefined;
    }
    return e.get(warehouseId);
  }

  /** The position, created empty if new. */
  getOrAdd(productId: string, warehouseId: string): Position {
    const known = this.get(productId, warehouseId);
    if (known !== undefined) return known;
    const p = new Position(productId, warehouseId, this.byIndex.length);
    this.byIndex.push(p);
    const e = this.byProduct.get(productId);
    if (e === undefined) this.byProduct.set(productId, p);
    else if (e instanceof Position) this.byProduct.set(productId, [e, p]);
    else if (!Array.isArray(e)) e.set(warehouseId, p);
    else if (e.length < warehouseListMax) e.push(p);
    else {
      const byWarehouse = new Map<string, Position>();
      for (const x of e) byWarehouse.set(x.warehouseId, x);
      byWarehouse.set(warehouseId, p);
      this.byProduct.set(productId, byWarehouse);
    }
    return p;
  }

  /** Every position, in the order they were made. */
  values(): IterableIterator<Position> {
    return this.byIndex.values();
  }
}
