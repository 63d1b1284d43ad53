// What the gateway benchmarks need before they measure: signed tokens for
// each role, and a catalog with stock created through stockd's HTTP API
// (warehouses, products, receipts), in parallel but a bounded number at a
// time. Any answer other than the documented success stops the run with the
// status and body, so a changed API shows up as itself.

import { randomBytes } from "node:crypto";
import { SignJWT } from "jose";

/** Seeding requests in flight at once: enough to fill the journal's group
 * commits, few enough not to be refused as overload. */
const seedInFlightMax = 32;
/** Units per receipt: ReceiveStock takes at most 10^9. */
export const receiptQuantityMax = 1_000_000_000;

export interface Tokens {
  admin: string;
  service: string;
  /** One per customer: each has their own cart. */
  customers: string[];
}

/** A secret for one run: stockd reads it from STOCKD_JWT_SECRET (32+ chars). */
export function jwtSecret(): string {
  return randomBytes(32).toString("hex");
}

export async function signTokens(secret: string, customerCount: number): Promise<Tokens> {
  const key = new TextEncoder().encode(secret);
  const sign = (role: string, sub: string) =>
    new SignJWT({ role })
      .setProtectedHeader({ alg: "HS256" })
      .setSubject(sub)
      .setIssuer("stockd")
      .setIssuedAt()
      .setExpirationTime("2h")
      .sign(key);
  const customers: string[] = [];
  for (let i = 0; i < customerCount; i++) {
    customers.push(await sign("customer", `bench-customer-${i}`));
  }
  return {
    admin: await sign("admin", "bench-admin"),
    service: await sign("service", "bench-service"),
    customers,
  };
}

export interface Sku {
  productId: string;
  warehouseId: string;
}

export interface GatewaySeed {
  warehouseIds: string[];
  /** One position, for the contended workload. */
  hot: Sku;
  /** productCount x warehouseCount positions, for the uniform workload. */
  uniform: Sku[];
  /** Products a customer puts in a cart; stocked in the first two
   * warehouses, so checkout chooses one. */
  flowProductIds: string[];
}

export interface SeedPlan {
  /** Warehouses; the uniform SKUs are every product in every warehouse. */
  warehouseCount: number;
  uniformProductCount: number;
  flowProductCount: number;
  /** Receipts per position; each brings receiptQuantityMax units. */
  receiptsPerPosition: number;
}

/** Calls `fn` on every item, at most `limit` at a time; answers in order. */
export async function mapBounded<T, R>(
  items: readonly T[],
  limit: number,
  fn: (item: T, index: number) => Promise<R>,
): Promise<R[]> {
  const out: R[] = new Array(items.length);
  let next = 0;
  const lane = async () => {
    while (next < items.length) {
      const i = next++;
      out[i] = await fn(items[i]!, i);
    }
  };
  await Promise.all(Array.from({ length: Math.min(limit, items.length) }, lane));
  return out;
}

/** POSTs JSON; answers the parsed body, or throws with what came back. */
export async function postJson(
  baseUrl: string,
  path: string,
  token: string,
  body: unknown,
  expectedStatus: number,
): Promise<Record<string, unknown>> {
  const res = await fetch(`${baseUrl}${path}`, {
    method: "POST",
    headers: { "content-type": "application/json", authorization: `Bearer ${token}` },
    body: JSON.stringify(body),
  });
  const text = await res.text();
  if (res.status !== expectedStatus) {
    throw new Error(
      `POST ${path} ${JSON.stringify(body)}: expected ${expectedStatus}, got ${res.status}: ${text.slice(0, 500)}`,
    );
  }
  try {
    return JSON.parse(text) as Record<string, unknown>;
  } catch {
    throw new Error(
      `POST ${path}: ${res.status} with a body that is not JSON: ${text.slice(0, 500)}`,
    );
  }
}

function idOf(body: Record<string, unknown>, what: string): string {
  if (typeof body.id !== "string" || body.id === "") {
    throw new Error(`${what}: the answer has no string id: ${JSON.stringify(body).slice(0, 300)}`);
  }
  return body.id;
}

export async function seedGateway(
  baseUrl: string,
  adminToken: string,
  plan: SeedPlan,
): Promise<GatewaySeed> {
  const post = (path: string, body: unknown, status: number) =>
    postJson(baseUrl, path, adminToken, body, status);
  const warehouseIds = await mapBounded(
    Array.from({ length: plan.warehouseCount }, (_, i) => i),
    seedInFlightMax,
    async (i) =>
      idOf(
        await post(
          "/v1/warehouses",
          {
            name: `bench warehouse ${i}`,
            address: `${i} Hosur Road, Bengaluru`,
            lat: "12.8576° N",
            long: "77.7864° E",
          },
          201,
        ),
        "POST /v1/warehouses",
      ),
  );
  const product = (name: string, category: string) =>
    post(
      "/v1/products",
      { name, description: `${name}, for the benchmark`, price: 119000, currency: "INR", category },
      201,
    ).then((b) => idOf(b, "POST /v1/products"));
  const count = 1 + plan.uniformProductCount + plan.flowProductCount;
  const productIds = await mapBounded(
    Array.from({ length: count }, (_, i) => i),
    seedInFlightMax,
    (i) => product(`bench product ${i}`, i === 0 ? "hot" : "bench"),
  );
  const [hotProduct, ...rest] = productIds;
  const hot: Sku = { productId: hotProduct!, warehouseId: warehouseIds[0]! };
  const uniform: Sku[] = [];
  for (const productId of rest.slice(0, plan.uniformProductCount)) {
    for (const warehouseId of warehouseIds) uniform.push({ productId, warehouseId });
  }
  const flowProductIds = rest.slice(plan.uniformProductCount);
  const flowSkus = flowProductIds.flatMap((productId) =>
    warehouseIds.slice(0, 2).map((warehouseId) => ({ productId, warehouseId })),
  );
  const positions = [hot, ...uniform, ...flowSkus];
  const receipts = positions.flatMap((sku) =>
    Array.from({ length: plan.receiptsPerPosition }, () => sku),
  );
  await mapBounded(receipts, seedInFlightMax, (sku) =>
    post("/v1/inventory/receipts", { ...sku, quantity: receiptQuantityMax }, 200),
  );
  return { warehouseIds, hot, uniform, flowProductIds };
}

/** Ids that look like stockd's, for runs against the echo servers only. */
export function syntheticSeed(plan: SeedPlan): GatewaySeed {
  const id = (prefix: string, i: number) => `${prefix}_${i.toString(36).padStart(12, "0")}`;
  const warehouseIds = Array.from({ length: plan.warehouseCount }, (_, i) => id("wh", i));
  const uniform: Sku[] = [];
  for (let p = 0; p < plan.uniformProductCount; p++) {
    for (const warehouseId of warehouseIds)
      uniform.push({ productId: id("pr", p + 1), warehouseId });
  }
  return {
    warehouseIds,
    hot: { productId: id("pr", 0), warehouseId: warehouseIds[0]! },
    uniform,
    flowProductIds: Array.from({ length: plan.flowProductCount }, (_, i) =>
      id("pr", 1 + plan.uniformProductCount + i),
    ),
  };
}
