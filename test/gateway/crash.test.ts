import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { cli, type LogLine, removeDir, type Served, serve, tempDir } from "../cli/support.ts";
import { Http, secret } from "./support.ts";

// `kill -9` of a serving stockd while customers check out and pay: after a
// restart every acknowledged order is there with at least the state it was
// acknowledged in, every acknowledged payment is PAID, no unit is oversold,
// and the stock adds up: received = available + reserved + sold.

const cycleCount = 4;
const customerCount = 24;
const productCount = 4;
const receivedPerProduct = 100_000;

interface Acked {
  orderId: string;
  /** Units in the order (a cart keeps the items of a cancelled order). */
  quantity: number;
  paid: boolean;
}

describe("crash of a serving stockd (SIGKILL)", () => {
  let dir: string;
  let served: Served | null = null;

  beforeAll(() => {
    dir = tempDir();
  });
  afterAll(() => {
    if (served?.child.exitCode === null) served.child.kill("SIGKILL");
    removeDir(dir);
  });

  async function start(): Promise<Http> {
    served = serve(
      ["--data", dir, "--workers", "1", "--partitions", "8", "--hold-duration", "10m"],
      {
        STOCKD_HOST: "127.0.0.1",
        STOCKD_HTTP_PORT: "0",
        STOCKD_GRPC_PORT: "0",
        STOCKD_JWT_SECRET: secret,
      },
    );
    await served.waitForLog((l) => l.msg === "ready", "ready");
    const listening = served.logs.find((l: LogLine) => l.msg === "listening") as LogLine & {
      httpPort: number;
    };
    return new Http(() => listening.httpPort);
  }

  const token = async (sub: string, role: string) => {
    const r = await cli(["token", "--sub", sub, "--role", role], { STOCKD_JWT_SECRET: secret });
    return r.stdout.trim();
  };

  it("keeps every acknowledged order and payment, and the stock adds up", async () => {
    let http = await start();
    const admin = await token("ops", "admin");
    const service = await token("payments", "service");
    const customers = await Promise.all(
      Array.from({ length: customerCount }, (_, i) => token(`c${i}`, "customer")),
    );
    const w = await http.post("/v1/warehouses", admin, {
      name: "Pune",
      address: "MIDC",
      lat: "18.5204° N",
      long: "73.8567° E",
    });
    const products: string[] = [];
    for (let i = 0; i < productCount; i++) {
      const p = await http.post("/v1/products", admin, {
        name: `Item ${i}`,
        description: "",
        price: 10,
        currency: "INR",
        category: "x",
      });
      products.push(p.body.id);
      await http.post("/v1/inventory/receipts", admin, {
        productId: p.body.id,
        warehouseId: w.body.id,
        quantity: receivedPerProduct,
      });
    }

    const acked: Acked[] = [];
    /** Payments sent but not answered when stockd died. */
    const unsure = new Set<string>();
    for (let cycle = 0; cycle < cycleCount; cycle++) {
      let stop = false;
      const shop = async (c: number) => {
        while (!stop) {
          const productId = products[(c + acked.length) % productCount]!;
          const quantity = 1 + (c % 3);
          const cart = await http.post("/v1/cart/items", customers[c], { productId, quantity });
          if (cart.status === 409 && cart.body.error.code === "CART_LOCKED") {
            // An order left pending by the last crash: cancel it, free the cart.
            await http.post(`/v1/orders/${cart.body.error.details.orderId}/cancel`, customers[c]);
            continue;
          }
          if (cart.status !== 200) throw new Error(`cart: ${cart.status}`);
          const order = await http.post(`/v1/checkout?cartId=${cart.body.id}`, customers[c]);
          if (order.status !== 201) continue;
          const lines = order.body.lines as { quantity: number }[];
          const units = lines.reduce((sum, l) => sum + l.quantity, 0);
          const a: Acked = { orderId: order.body.id, quantity: units, paid: false };
          acked.push(a);
          // Half are paid; the rest are cancelled so the cart is free again.
          if (acked.length % 2 === 0) {
            unsure.add(a.orderId);
            const paid = await http.post(`/v1/orders/${a.orderId}/payment`, service, {
              status: "SUCCEEDED",
              paymentId: `pay-${a.orderId}`,
            });
            if (paid.status === 200) {
              a.paid = true;
              unsure.delete(a.orderId);
            }
          } else {
            await http.post(`/v1/orders/${a.orderId}/cancel`, customers[c]);
          }
        }
      };
      const shoppers = Array.from({ length: customerCount }, (_, c) =>
        shop(c).catch(() => undefined),
      );
      // Some orders acknowledged in this run first (a loaded machine may take
      // longer than the random wait to start answering), then a random wait.
      const ackedBefore = acked.length;
      for (const deadline = Date.now() + 20_000; Date.now() < deadline; ) {
        if (acked.length >= ackedBefore + 5) break;
        await new Promise((r) => setTimeout(r, 20));
      }
      await new Promise((r) => setTimeout(r, 300 + Math.floor(Math.random() * 500)));
      served!.child.kill("SIGKILL");
      await served!.exit;
      stop = true;
      await Promise.all(shoppers);
      http = await start();
    }
    expect(acked.length).toBeGreaterThan(20);

    let paidUnits = 0;
    for (const a of acked) {
      const o = await http.get(`/v1/orders/${a.orderId}`, admin);
      expect(o.status, `order ${a.orderId} acknowledged, then lost`).toBe(200);
      if (a.paid) {
        expect(o.body.status).toBe("PAID");
        paidUnits += a.quantity;
      } else if (!unsure.has(a.orderId)) {
        expect(["PENDING_PAYMENT", "CANCELLED"]).toContain(o.body.status);
      }
    }
    served!.child.kill("SIGTERM");
    expect((await served!.exit).code).toBe(0);
    let sold = 0;
    for (const p of products) {
      const r = await cli(["replay", "--data", dir, "--product", p]);
      expect(r.code, r.stderr).toBe(0);
      const state = JSON.parse(r.stdout) as {
        partitions: {
          positions: { available: number; reserved: number; received: number; fulfilled: number }[];
        }[];
      };
      const pos = state.partitions[0]!.positions[0]!;
      expect(pos.received).toBe(receivedPerProduct);
      expect(pos.available).toBeGreaterThanOrEqual(0);
      expect(pos.available + pos.reserved + pos.fulfilled).toBe(pos.received);
      sold += pos.fulfilled;
    }
    // Every acknowledged payment was fulfilled; only unanswered ones may add.
    expect(sold).toBeGreaterThanOrEqual(paidUnits);
    const unsureUnits = acked
      .filter((a) => unsure.has(a.orderId))
      .reduce((s, a) => s + a.quantity, 0);
    expect(sold).toBeLessThanOrEqual(paidUnits + unsureUnits);
    const v = await cli(["verify", "--data", dir]);
    expect(v.code, v.stdout).toBe(0);
  });
});
