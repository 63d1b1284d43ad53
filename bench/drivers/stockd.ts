// One stockd server shared by every stockd driver of a factory call: started
// on first use (a child process on a temporary data directory), seeded once
// over HTTP (10,000 uniform positions, the hot one, the checkout products),
// stopped when the last driver closes. It keeps the books the consistency
// check needs: units received per position and fulfilled per product.

import { SignJWT } from "jose";
import {
  type GatewaySeed,
  jwtSecret,
  postJson,
  receiptQuantityMax,
  type SeedPlan,
  type Sku,
  seedGateway,
} from "../lib/gateway_seed.ts";
import { type SuiteContext, uniformProductCount, uniformWarehouseCount } from "../lib/scenario.ts";
import { type ServerChild, startStockd } from "../lib/server_child.ts";
import { sleep } from "./common.ts";
import { scrape } from "./metrics.ts";

/** stockd's default hold: unpaid checkouts expire 2 s after they were made,
 * and the holds of the reserve workloads give their stock back as soon. */
export const holdDuration = "2s";
export const holdDurationMs = 2000;
/** Contention holds outlast the run: the check after it must still see
 * them reserved. */
export const contentionHoldSeconds = 600;
/** Products of the checkout workload, each stocked in two warehouses. */
const checkoutProductCount = 100;
/** Tokens outlive any suite. */
const tokenTtl = "24h";
/** Below this many available units the hot position is received again. */
const hotAvailableMin = receiptQuantityMax / 2;
/** How long a run waits for the holds of the runs before it to expire, so
 * that their expiry is not measured with it. */
const settleMsMax = 2 * holdDurationMs + 2000;
const settlePollMs = 100;
/** Inventory reads in flight at once during a check. */
const checkInFlightMax = 16;
/** Mismatches named in a run's notes; the rest are counted. */
const mismatchNotesMax = 5;

const seedPlan: SeedPlan = {
  warehouseCount: uniformWarehouseCount,
  uniformProductCount,
  flowProductCount: checkoutProductCount,
  receiptsPerPosition: 1,
};

export interface StockdReady {
  server: ServerChild;
  baseUrl: string;
  /** host:port */
  grpcAddress: string;
  adminToken: string;
  serviceToken: string;
  seed: GatewaySeed;
}

interface Level {
  warehouseId: string;
  available: number;
  reserved: number;
}

export interface StockCheck {
  consistent: boolean;
  notes: string[];
}

const positionKey = (sku: Sku) => `${sku.productId} ${sku.warehouseId}`;

export class StockdHost {
  private starting: Promise<StockdReady> | null = null;
  private readonly secret = jwtSecret();
  private readonly key = new TextEncoder().encode(this.secret);
  /** "productId warehouseId" -> units received. */
  private readonly received = new Map<string, number>();
  /** productId -> units fulfilled (paid orders). */
  private readonly fulfilled = new Map<string, number>();
  /** productId -> units of payments whose outcome never came back. */
  private readonly uncertain = new Map<string, number>();
  /** Holds that do not expire within a run (contention), still open. */
  private longHolds = 0;
  private users = 0;
  private customerSeq = 0;

  constructor(private readonly ctx: SuiteContext) {}

  /** A driver uses the server; it stops when the last one is released. */
  acquire(): void {
    this.users++;
  }

  async release(): Promise<void> {
    this.users--;
    if (this.users === 0) await this.stop();
  }

  ready(): Promise<StockdReady> {
    this.starting ??= this.start();
    return this.starting;
  }

  private async start(): Promise<StockdReady> {
    const server = await startStockd({
      durability: this.ctx.durability,
      holdDuration,
      workerCount: this.ctx.workerCount,
      jwtSecret: this.secret,
    });
    try {
      const baseUrl = `http://127.0.0.1:${server.httpPort}`;
      const adminToken = await this.token("admin", "bench-drivers-admin");
      const serviceToken = await this.token("service", "bench-drivers-service");
      const seed = await seedGateway(baseUrl, adminToken, seedPlan);
      const flowSkus = seed.flowProductIds.flatMap((productId) =>
        seed.warehouseIds.slice(0, 2).map((warehouseId) => ({ productId, warehouseId })),
      );
      for (const sku of [seed.hot, ...seed.uniform, ...flowSkus]) {
        this.received.set(positionKey(sku), receiptQuantityMax);
      }
      return {
        server,
        baseUrl,
        grpcAddress: `127.0.0.1:${server.grpcPort}`,
        adminToken,
        serviceToken,
        seed,
      };
    } catch (err) {
      await server.stop();
      throw new Error(
        `stockd: seeding failed: ${(err as Error).message}\n  ${server.logTail().join("\n  ")}`,
      );
    }
  }

  async stop(): Promise<void> {
    const starting = this.starting;
    this.starting = null;
    if (starting === null) return;
    const ready = await starting.catch(() => null);
    await ready?.server.stop();
  }

  token(role: "admin" | "service" | "customer", sub: string): Promise<string> {
    return new SignJWT({ role })
      .setProtectedHeader({ alg: "HS256" })
      .setSubject(sub)
      .setIssuer("stockd")
      .setIssuedAt()
      .setExpirationTime(tokenTtl)
      .sign(this.key);
  }

  /** A customer never seen before: a cart of their own. */
  customerToken(): Promise<string> {
    return this.token("customer", `bench-drivers-customer-${++this.customerSeq}`);
  }

  /** Waits (bounded) until the holds of earlier runs have expired. */
  async settle(): Promise<void> {
    const r = await this.ready();
    for (let waited = 0; waited < settleMsMax; waited += settlePollMs) {
      const s = await scrape(r.baseUrl);
      if (s.openHolds <= this.longHolds) return;
      await sleep(settlePollMs);
    }
  }

  /** Receives the hot position again when a long run could empty it. */
  async topUpHot(): Promise<void> {
    const r = await this.ready();
    const levels = await this.levels(r.seed.hot.productId);
    const hot = levels.find((l) => l.warehouseId === r.seed.hot.warehouseId);
    if (hot !== undefined && hot.available >= hotAvailableMin) return;
    await this.receive(r.seed.hot, receiptQuantityMax);
  }

  async receive(sku: Sku, units: number): Promise<void> {
    const r = await this.ready();
    await postJson(
      r.baseUrl,
      "/v1/inventory/receipts",
      r.adminToken,
      { ...sku, quantity: units },
      200,
    );
    this.received.set(positionKey(sku), (this.received.get(positionKey(sku)) ?? 0) + units);
  }

  /** A new product with `units` in the first warehouse, for one race. */
  async freshPosition(units: number): Promise<Sku> {
    const r = await this.ready();
    const product = await postJson(
      r.baseUrl,
      "/v1/products",
      r.adminToken,
      {
        name: `bench contention ${Date.now()}`,
        description: "raced for by the comparison suite",
        price: 1000,
        currency: "INR",
        category: "contention",
      },
      201,
    );
    if (typeof product.id !== "string") throw new Error("POST /v1/products: no id");
    const sku = { productId: product.id, warehouseId: r.seed.warehouseIds[0]! };
    await this.receive(sku, units);
    return sku;
  }

  /** Holds that outlast the run (they must not count as unsettled). */
  heldLong(holds: number): void {
    this.longHolds += holds;
  }

  fulfil(productId: string, units: number): void {
    this.fulfilled.set(productId, (this.fulfilled.get(productId) ?? 0) + units);
  }

  /** A payment whose answer never came: its units may or may not be gone. */
  fulfilMaybe(productId: string, units: number): void {
    this.uncertain.set(productId, (this.uncertain.get(productId) ?? 0) + units);
  }

  async levels(productId: string): Promise<Level[]> {
    const r = await this.ready();
    const res = await fetch(`${r.baseUrl}/v1/inventory/${encodeURIComponent(productId)}`, {
      headers: { authorization: `Bearer ${r.serviceToken}` },
    });
    const text = await res.text();
    if (res.status !== 200) {
      throw new Error(`GET /v1/inventory/${productId}: ${res.status}: ${text.slice(0, 300)}`);
    }
    const body = JSON.parse(text) as { warehouses?: Level[] };
    return body.warehouses ?? [];
  }

  /**
   * No oversell, from stockd's own stock levels: per product, available +
   * reserved + fulfilled equals what was received (and per position, where
   * nothing of the product was fulfilled), and nothing is below zero.
   */
  async checkStock(productIds: readonly string[]): Promise<StockCheck> {
    const mismatches: string[] = [];
    const ids = [...new Set(productIds)];
    let next = 0;
    const lane = async () => {
      while (next < ids.length) {
        const id = ids[next++]!;
        mismatches.push(...this.checkProduct(id, await this.levels(id)));
      }
    };
    await Promise.all(Array.from({ length: Math.min(checkInFlightMax, ids.length) }, lane));
    const notes = mismatches.slice(0, mismatchNotesMax).map((m) => `stock check: ${m}`);
    if (mismatches.length === 0) {
      notes.push(
        `no-oversell check held: ${ids.length} product(s), available + reserved + fulfilled = received, none below zero`,
      );
    }
    if (mismatches.length > mismatchNotesMax) {
      notes.push(`stock check: ${mismatches.length - mismatchNotesMax} more mismatches`);
    }
    return { consistent: mismatches.length === 0, notes };
  }

  private checkProduct(productId: string, levels: Level[]): string[] {
    const out: string[] = [];
    let held = 0;
    let received = 0;
    for (const [key, units] of this.received) {
      if (key.startsWith(`${productId} `)) received += units;
    }
    const fulfilled = this.fulfilled.get(productId) ?? 0;
    const uncertain = this.uncertain.get(productId) ?? 0;
    for (const l of levels) {
      held += l.available + l.reserved;
      if (l.available < 0 || l.reserved < 0) {
        out.push(
          `${productId} @ ${l.warehouseId}: available ${l.available}, reserved ${l.reserved}`,
        );
      }
      const got = this.received.get(positionKey({ productId, warehouseId: l.warehouseId })) ?? 0;
      if (fulfilled + uncertain === 0 && l.available + l.reserved !== got) {
        out.push(
          `${productId} @ ${l.warehouseId}: available ${l.available} + reserved ${l.reserved} != received ${got}`,
        );
      }
    }
    const gone = held + fulfilled;
    if (gone > received || gone + uncertain < received) {
      out.push(
        `${productId}: available + reserved ${held} + fulfilled ${fulfilled} != received ${received}` +
          (uncertain > 0 ? ` (${uncertain} units of payments unanswered)` : ""),
      );
    }
    return out;
  }
}
