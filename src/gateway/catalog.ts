import { randomUUID } from "node:crypto";
import { RecordKind, type RecordStore } from "../persistence/index.ts";
import { ApiError, invalid, notFound } from "./errors.ts";
import { parseLatitude, parseLongitude } from "./geo.ts";
import { gatewayLimits } from "./limits.ts";
import { currencyDigits } from "./money.ts";
import { decodeCursor, encodeCursor, ProductIndex } from "./search.ts";

// Warehouses and products: kept in memory (the catalog is small next to the
// stock it describes), written through to LMDB, and products indexed for
// full-text search. Each record carries an ordinal, its creation sequence
// number, so that pages are in creation order and cursors stay stable while
// the catalog grows.

export interface Warehouse {
  id: string;
  ordinal: number;
  name: string;
  address: string;
  latitude: number;
  longitude: number;
  createTimeMs: number;
}

export interface Product {
  id: string;
  ordinal: number;
  name: string;
  description: string;
  priceMinor: number;
  currency: string;
  category: string;
  createTimeMs: number;
}

export interface NewWarehouse {
  name: string;
  address: string;
  lat: unknown;
  long: unknown;
}

export interface NewProduct {
  name: string;
  description: string;
  priceMinor: number;
  currency: string;
  category: string;
}

export interface Page<T> {
  items: T[];
  nextCursor?: string;
}

export class Catalog {
  private readonly warehouses = new Map<string, Warehouse>();
  private readonly warehouseList: Warehouse[] = [];
  private readonly products = new Map<string, Product>();
  private readonly productList: Product[] = [];
  private readonly byOrdinal = new Map<number, Product>();
  private readonly index = new ProductIndex();

  constructor(private readonly store: RecordStore) {
    for (const { value } of store.all<Warehouse>(RecordKind.Warehouse)) {
      this.warehouses.set(value.id, value);
      this.warehouseList.push(value);
    }
    this.warehouseList.sort((a, b) => a.ordinal - b.ordinal);
    for (const { value } of store.all<Product>(RecordKind.Product)) {
      this.products.set(value.id, value);
      this.productList.push(value);
    }
    this.productList.sort((a, b) => a.ordinal - b.ordinal);
    for (const p of this.productList) {
      this.byOrdinal.set(p.ordinal, p);
      this.index.add(p.ordinal, p);
    }
  }

  /** Learns warehouses and products another node created (a cluster
   * follower applying its leader's records); creation order is kept. */
  learn(writes: { kind: string; key: string; value: unknown }[]): void {
    for (const w of writes) {
      if (w.kind === RecordKind.Warehouse && w.value !== null && !this.warehouses.has(w.key)) {
        const v = w.value as Warehouse;
        this.warehouses.set(v.id, v);
        this.warehouseList.push(v);
        this.warehouseList.sort((a, b) => a.ordinal - b.ordinal);
      } else if (w.kind === RecordKind.Product && w.value !== null && !this.products.has(w.key)) {
        const v = w.value as Product;
        this.products.set(v.id, v);
        this.productList.push(v);
        this.productList.sort((a, b) => a.ordinal - b.ordinal);
        this.byOrdinal.set(v.ordinal, v);
        this.index.add(v.ordinal, v);
      }
    }
  }

  get warehouseCount(): number {
    return this.warehouseList.length;
  }

  get productCount(): number {
    return this.productList.length;
  }

  warehouse(id: string): Warehouse | undefined {
    return this.warehouses.get(id);
  }

  product(id: string): Product | undefined {
    return this.products.get(id);
  }

  /** Every warehouse id, in creation order (the allocator's candidates). */
  warehouseIds(): string[] {
    return this.warehouseList.map((w) => w.id);
  }

  mustWarehouse(id: string): Warehouse {
    const w = this.warehouses.get(id);
    if (w === undefined && id === "")
      throw invalid("warehouseId is required", { field: "warehouseId" });
    if (w === undefined) throw notFound("warehouse", id);
    return w;
  }

  mustProduct(id: string): Product {
    const p = this.products.get(id);
    if (p === undefined && id === "")
      throw invalid("productId is required", { field: "productId" });
    if (p === undefined) throw notFound("product", id);
    return p;
  }

  async createWarehouse(input: NewWarehouse, nowMs: number): Promise<Warehouse> {
    const name = text("name", input.name, 1, gatewayLimits.nameLengthMax);
    const address = text("address", input.address, 0, gatewayLimits.addressLengthMax);
    const latitude = parseLatitude(input.lat);
    if (latitude === null) {
      throw invalid(
        `lat must be a latitude such as "12.8576° N" or 12.8576, not ${show(input.lat)}`,
        {
          field: "lat",
        },
      );
    }
    const longitude = parseLongitude(input.long);
    if (longitude === null) {
      throw invalid(
        `long must be a longitude such as "77.7864° E" or 77.7864, not ${show(input.long)}`,
        { field: "long" },
      );
    }
    if (this.warehouseList.length >= gatewayLimits.warehouseCountMax) {
      throw new ApiError(
        "CAPACITY_EXCEEDED",
        `at most ${gatewayLimits.warehouseCountMax} warehouses`,
      );
    }
    const ordinal = (this.warehouseList.at(-1)?.ordinal ?? 0) + 1;
    const w: Warehouse = {
      id: `wh_${randomUUID()}`,
      ordinal,
      name,
      address,
      latitude,
      longitude,
      createTimeMs: nowMs,
    };
    // In memory first, so that a second create in the same turn takes the
    // next ordinal; undone if the write fails.
    this.warehouses.set(w.id, w);
    this.warehouseList.push(w);
    try {
      await this.store.write([{ kind: RecordKind.Warehouse, key: w.id, value: w }]);
    } catch (err) {
      this.warehouses.delete(w.id);
      this.warehouseList.splice(this.warehouseList.indexOf(w), 1);
      throw err;
    }
    return w;
  }

  async createProduct(input: NewProduct, nowMs: number): Promise<Product> {
    const name = text("name", input.name, 1, gatewayLimits.nameLengthMax);
    const description = text(
      "description",
      input.description,
      0,
      gatewayLimits.descriptionLengthMax,
    );
    const category = text("category", input.category, 0, gatewayLimits.categoryLengthMax);
    if (currencyDigits(input.currency) === null) {
      throw invalid(`currency must be an ISO 4217 code such as INR, not ${show(input.currency)}`, {
        field: "currency",
      });
    }
    if (
      !Number.isSafeInteger(input.priceMinor) ||
      input.priceMinor <= 0 ||
      input.priceMinor > gatewayLimits.priceMinorMax
    ) {
      throw invalid(
        `price must be positive and at most ${gatewayLimits.priceMinorMax} minor units`,
        {
          field: "price",
        },
      );
    }
    if (this.productList.length >= gatewayLimits.productCountMax) {
      throw new ApiError("CAPACITY_EXCEEDED", `at most ${gatewayLimits.productCountMax} products`);
    }
    const ordinal = (this.productList.at(-1)?.ordinal ?? 0) + 1;
    const p: Product = {
      id: `prd_${randomUUID()}`,
      ordinal,
      name,
      description,
      priceMinor: input.priceMinor,
      currency: input.currency,
      category,
      createTimeMs: nowMs,
    };
    this.products.set(p.id, p);
    this.productList.push(p);
    this.byOrdinal.set(p.ordinal, p);
    this.index.add(p.ordinal, p);
    try {
      await this.store.write([{ kind: RecordKind.Product, key: p.id, value: p }]);
    } catch (err) {
      this.products.delete(p.id);
      this.productList.splice(this.productList.indexOf(p), 1);
      this.byOrdinal.delete(p.ordinal);
      this.index.remove(p.ordinal);
      throw err;
    }
    return p;
  }

  listWarehouses(cursor: string | undefined, pageSize: number): Page<Warehouse> {
    const after = cursor === undefined ? 0 : decodeCursor(cursor, "warehouses");
    if (after === null) throw invalid("cursor is not one this server gave", { field: "cursor" });
    return pageAfter(this.warehouseList, after, pageSize, "warehouses");
  }

  /** Products matching every word of the keyword (all products without
   * one), in creation order. */
  searchProducts(keyword: string, cursor: string | undefined, pageSize: number): Page<Product> {
    const q = keyword.trim();
    if (q.length > gatewayLimits.keywordLengthMax) {
      throw invalid(`keyword must be at most ${gatewayLimits.keywordLengthMax} characters`, {
        field: "keyword",
      });
    }
    const after = cursor === undefined ? 0 : decodeCursor(cursor, q);
    if (after === null) {
      throw invalid("cursor is not one this server gave for this keyword", { field: "cursor" });
    }
    if (q === "") return pageAfter(this.productList, after, pageSize, q);
    const found = this.index.search(q, after, pageSize);
    const items = found.ordinals.map((o) => this.byOrdinal.get(o)).filter((p) => p !== undefined);
    const last = found.ordinals.at(-1);
    return found.more && last !== undefined
      ? { items, nextCursor: encodeCursor(last, q) }
      : { items };
  }
}

function pageAfter<T extends { ordinal: number }>(
  list: T[],
  after: number,
  pageSize: number,
  key: string,
): Page<T> {
  // Ordinals grow along the list: binary search for the first after the cursor.
  let lo = 0;
  let hi = list.length;
  while (lo < hi) {
    const mid = (lo + hi) >>> 1;
    if (list[mid]!.ordinal <= after) lo = mid + 1;
    else hi = mid;
  }
  const items = list.slice(lo, lo + pageSize);
  const last = items.at(-1);
  return lo + pageSize < list.length && last !== undefined
    ? { items, nextCursor: encodeCursor(last.ordinal, key) }
    : { items };
}

function text(field: string, value: unknown, minLength: number, maxLength: number): string {
  if (typeof value !== "string") throw invalid(`${field} must be a string`, { field });
  const t = value.trim();
  if (t.length < minLength || t.length > maxLength) {
    throw invalid(
      minLength > 0
        ? `${field} must be ${minLength} to ${maxLength} characters`
        : `${field} must be at most ${maxLength} characters`,
      { field },
    );
  }
  return t;
}

export function show(value: unknown): string {
  const s = JSON.stringify(value) ?? String(value);
  return s.length > 40 ? `${s.slice(0, 40)}...` : s;
}
