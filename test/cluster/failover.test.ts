import { setTimeout as sleep } from "node:timers/promises";
import { connect } from "nats";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { type NatsCluster, startNats } from "./nats.ts";
import {
  type Answer,
  call,
  type NodeConfig,
  Nodes,
  Router,
  type StockdNode,
  token,
} from "./nodes.ts";

// Failover of stockd cluster nodes (child processes) over real nats-server
// processes, under load:
// - the leader is SIGKILLed again and again while services reserve and
//   customers check out and pay through whichever node leads: a follower
//   takes over within the lease and a few seconds, every acknowledged write
//   survives, nothing is oversold, and the stock adds up exactly;
// - a pending order expires on time on the leader that took over;
// - a leader frozen (SIGSTOP) past its lease is fenced: once thawed it
//   acknowledges nothing, steps down and follows the new leader;
// - losing one of three NATS servers stalls writes for a while at most.
//
// Set STOCKD_TEST_LOG_DIR to keep every node's log.

const leaseMs = 1_500;
/** Takeover bound asserted: lease + catching up + opening as leader, generously. */
const takeoverMsMax = 8_000;
const logDir = process.env.STOCKD_TEST_LOG_DIR;

interface Line {
  productId: string;
  quantity: number;
}

interface ReservationAck {
  key: string;
  id: string;
  productId: string;
  quantity: number;
}

type OrderStatus = "PENDING_PAYMENT" | "PAID" | "CANCELLED" | "EXPIRED";

interface OrderAck {
  id: string;
  lines: Line[];
  /** The most advanced status acknowledged. */
  acked: OrderStatus;
}

/** Runs `f` over `items`, `width` at a time. */
async function inBatches<T>(items: T[], width: number, f: (x: T) => Promise<void>): Promise<void> {
  for (let i = 0; i < items.length; i += width) {
    await Promise.all(items.slice(i, i + width).map(f));
  }
}

async function until<T>(
  what: string | (() => string),
  timeoutMs: number,
  f: () => Promise<T | undefined>,
): Promise<T> {
  const deadline = performance.now() + timeoutMs;
  for (;;) {
    const v = await f();
    if (v !== undefined) return v;
    if (performance.now() > deadline) {
      throw new Error(`${typeof what === "string" ? what : what()}: not within ${timeoutMs} ms`);
    }
    await sleep(100);
  }
}

/**
 * A shop run against a cluster: warehouse and products seeded on the
 * leader, then service loops reserving (each with its own idempotency
 * keys) and customers checking out, paying every other order and
 * cancelling the rest. Every request is repeated, through the router, until
 * it gets a definitive answer; so once the loops stop, every reservation
 * key and every order is known with its outcome, and the stock must add up
 * exactly.
 */
class Shop {
  admin = "";
  service = "";
  customers: string[] = [];
  warehouseId = "";
  products: string[] = [];
  readonly received = new Map<string, number>();
  readonly reservations: ReservationAck[] = [];
  readonly orders: OrderAck[] = [];
  /** Definitive answers no shopper expected. */
  readonly unexpected: string[] = [];
  private stopping = false;
  private loops: Promise<void>[] = [];

  constructor(
    readonly nodes: Nodes,
    readonly router: Router,
  ) {}

  async seed(leader: StockdNode, productCount: number, units: number, customerCount: number) {
    [this.admin, this.service, ...this.customers] = await Promise.all([
      token("ops", "admin"),
      token("svc", "service"),
      ...Array.from({ length: customerCount }, (_, i) => token(`cust-${i}`, "customer")),
    ]);
    const url = leader.url!;
    const w = await call(url, "POST", "/v1/warehouses", {
      token: this.admin,
      body: { name: "Pune", address: "MIDC", lat: "18.5204° N", long: "73.8567° E" },
    });
    expect(w.status, JSON.stringify(w)).toBe(201);
    this.warehouseId = (w.body as { id: string }).id;
    for (let i = 0; i < productCount; i++) {
      const p = await call(url, "POST", "/v1/products", {
        token: this.admin,
        body: { name: `Item ${i}`, description: "", price: 10, currency: "INR", category: "x" },
      });
      expect(p.status, JSON.stringify(p)).toBe(201);
      const id = (p.body as { id: string }).id;
      const r = await call(url, "POST", "/v1/inventory/receipts", {
        token: this.admin,
        body: { productId: id, warehouseId: this.warehouseId, quantity: units },
      });
      expect(r.status, JSON.stringify(r)).toBe(200);
      this.products.push(id);
      this.received.set(id, units);
    }
  }

  start(reservers: number, shoppers: number): void {
    this.stopping = false;
    const run = (what: string, f: () => Promise<void>) =>
      f().catch((err: Error) => {
        this.unexpected.push(`${what} stopped: ${err.message}`);
      });
    for (let i = 0; i < reservers; i++)
      this.loops.push(run(`reserver ${i}`, () => this.reserver(i)));
    for (let c = 0; c < shoppers; c++) this.loops.push(run(`customer ${c}`, () => this.shopper(c)));
  }

  /** Stops the loops after their current step (each finishes it). */
  async stop(): Promise<void> {
    this.stopping = true;
    await Promise.all(this.loops);
    this.loops = [];
  }

  private async reserver(i: number): Promise<void> {
    for (let n = 0; !this.stopping; n++) {
      const key = `r-${i}-${n}-${this.reservations.length}`;
      const productId = this.products[(i + n) % this.products.length]!;
      const quantity = 1 + ((i + n) % 3);
      const a = await this.router.send("POST", "/v1/reservations", {
        token: this.service,
        body: { lines: [{ productId, quantity }] },
        headers: { "idempotency-key": key },
      });
      if (a.status === 201) this.reservations.push({ key, id: a.body.id, productId, quantity });
      else this.unexpected.push(`reserve ${key}: ${show(a)}`);
      await sleep(5);
    }
  }

  private async shopper(c: number): Promise<void> {
    const customer = this.customers[c]!;
    const productId = this.products[c % this.products.length]!;
    for (let n = 0; !this.stopping; n++) {
      const cart = await this.router.send("POST", "/v1/cart/items", {
        token: customer,
        body: { productId, quantity: 1 + (n % 3) },
      });
      if (cart.status === 409 && cart.body?.error?.code === "CART_LOCKED") {
        // Every checkout is settled before the next: a pending order nobody
        // knows of is a finding. Cancel it to go on.
        const orderId = cart.body.error.details.orderId as string;
        this.unexpected.push(`customer ${c}: cart locked by unknown order ${orderId}`);
        await this.router.send("POST", `/v1/orders/${orderId}/cancel`, { token: customer });
        continue;
      }
      if (cart.status !== 200) {
        this.unexpected.push(`customer ${c} cart: ${show(cart)}`);
        continue;
      }
      const key = `k-${c}-${n}`;
      const order = await this.router.send("POST", `/v1/checkout?cartId=${cart.body.id}`, {
        token: customer,
        headers: { "idempotency-key": key },
      });
      if (order.status !== 201 && order.status !== 200) {
        this.unexpected.push(`customer ${c} checkout ${key}: ${show(order)}`);
        continue;
      }
      const o: OrderAck = {
        id: order.body.id,
        lines: (order.body.lines as Line[]).map((l) => ({
          productId: l.productId,
          quantity: l.quantity,
        })),
        acked: order.body.status,
      };
      if (o.acked !== "PENDING_PAYMENT") {
        this.unexpected.push(`customer ${c} checkout ${key}: order is ${o.acked}`);
      }
      this.orders.push(o);
      if (n % 2 === 0) {
        const paid = await this.router.send("POST", `/v1/orders/${o.id}/payment`, {
          token: this.service,
          body: { status: "SUCCEEDED", paymentId: `pay-${o.id}` },
        });
        if (paid.status === 200 && paid.body.status === "PAID") o.acked = "PAID";
        else this.unexpected.push(`pay ${o.id}: ${show(paid)}`);
      } else {
        const cancelled = await this.router.send("POST", `/v1/orders/${o.id}/cancel`, {
          token: customer,
        });
        if (cancelled.status === 200 && cancelled.body.status === "CANCELLED")
          o.acked = "CANCELLED";
        else this.unexpected.push(`cancel ${o.id}: ${show(cancelled)}`);
      }
    }
  }

  /** Every node's inventory of every product, once they all agree. */
  async converged(
    timeoutMs: number,
  ): Promise<Map<string, { available: number; reserved: number }>> {
    let last = "";
    return until(
      () => `nodes converge (last: ${last})`,
      timeoutMs,
      async () => {
        const views: string[] = [];
        const result = new Map<string, { available: number; reserved: number }>();
        for (const n of this.nodes.all) {
          const r = await n.readyz();
          if (r?.status !== "ready") {
            last = `${n.name} is ${JSON.stringify(r)}`;
            return undefined;
          }
          const inv: string[] = [];
          for (const p of this.products) {
            const a = await call(n.url!, "GET", `/v1/inventory/${p}`, { token: this.admin });
            if (a.status !== 200) {
              last = `${n.name} inventory ${a.status}`;
              return undefined;
            }
            const b = a.body as { available: number; reserved: number };
            inv.push(`${b.available}/${b.reserved}`);
            result.set(p, { available: b.available, reserved: b.reserved });
          }
          views.push(inv.join(" "));
        }
        last = views.join(" | ");
        return views.every((v) => v === views[0]) ? result : undefined;
      },
    );
  }

  /**
   * On the leader: every acknowledged reservation is there and open, every
   * acknowledged order is there with at least its acknowledged status, and
   * per product received = available + reserved + sold exactly, where
   * reserved is every reservation key's units plus pending orders' and sold
   * is the units of paid orders.
   */
  async check(leader: StockdNode): Promise<void> {
    const url = leader.url!;
    const ids = new Map<string, string>();
    for (const r of this.reservations) {
      const other = ids.get(r.id);
      expect(other, `reservation ${r.id} acknowledged for keys ${other} and ${r.key}`).toBe(
        undefined,
      );
      ids.set(r.id, r.key);
    }
    const lost: string[] = [];
    await inBatches(this.reservations, 16, async (r) => {
      const a = await call(url, "GET", `/v1/reservations/${r.id}`, { token: this.service });
      const b = a.body as { status: string; lines: Line[] };
      if (
        a.status !== 200 ||
        b.status !== "OPEN" ||
        b.lines.length !== 1 ||
        b.lines[0]!.productId !== r.productId ||
        b.lines[0]!.quantity !== r.quantity
      ) {
        lost.push(
          `reservation ${r.id} (key ${r.key}, ${r.quantity} x ${r.productId}): ${a.status} ${JSON.stringify(a.body)}`,
        );
      }
    });
    const finalStatus = new Map<string, OrderStatus>();
    await inBatches(this.orders, 16, async (o) => {
      const a = await call(url, "GET", `/v1/orders/${o.id}`, { token: this.admin });
      const status = (a.body as { status: OrderStatus }).status;
      const ok =
        a.status === 200 &&
        (o.acked === "PENDING_PAYMENT"
          ? ["PENDING_PAYMENT", "PAID", "CANCELLED", "EXPIRED"].includes(status)
          : status === o.acked);
      if (!ok)
        lost.push(`order ${o.id} acknowledged ${o.acked}: ${a.status} ${JSON.stringify(a.body)}`);
      finalStatus.set(o.id, status);
    });
    expect(lost, "acknowledged writes missing or wrong on the leader").toEqual([]);

    const reserved = new Map<string, number>();
    const sold = new Map<string, number>();
    const add = (m: Map<string, number>, p: string, q: number) => m.set(p, (m.get(p) ?? 0) + q);
    for (const r of this.reservations) add(reserved, r.productId, r.quantity);
    for (const o of this.orders) {
      const s = finalStatus.get(o.id);
      for (const l of o.lines) {
        if (s === "PAID") add(sold, l.productId, l.quantity);
        if (s === "PENDING_PAYMENT") add(reserved, l.productId, l.quantity);
      }
    }
    for (const p of this.products) {
      const a = await call(url, "GET", `/v1/inventory/${p}`, { token: this.admin });
      const inv = a.body as { available: number; reserved: number };
      const expected = {
        available: this.received.get(p)! - (reserved.get(p) ?? 0) - (sold.get(p) ?? 0),
        reserved: reserved.get(p) ?? 0,
      };
      expect(inv.available, `product ${p}: available >= 0`).toBeGreaterThanOrEqual(0);
      expect(
        { available: inv.available, reserved: inv.reserved },
        `product ${p}: received ${this.received.get(p)} = available + reserved + sold (${sold.get(p) ?? 0})`,
      ).toEqual(expected);
    }
  }
}

function show(a: Answer): string {
  return `${a.status} from ${a.node}: ${JSON.stringify(a.body)}`;
}

function summary(router: Router): string {
  return JSON.stringify(Object.fromEntries(router.retried));
}

/** A describe's NATS (started before its test) and the nodes its test
 * makes: their logs saved (STOCKD_TEST_LOG_DIR) and printed when the test
 * fails, and everything stopped after it. */
function clusterSuite(
  size: 1 | 3,
  logName: string,
): {
  nats(): NatsCluster;
  nodes(config: Omit<NodeConfig, "nats">, onTestFailed: (fn: () => void) => void): Nodes;
} {
  let nats: NatsCluster | null = null;
  let nodes: Nodes | null = null;
  beforeAll(async () => {
    nats = await startNats({ size });
  }, 60_000);
  afterAll(async () => {
    if (logDir !== undefined) nodes?.saveLogs(logDir, logName);
    await nodes?.cleanup();
    await nats?.stop();
  }, 60_000);
  return {
    nats: () => nats!,
    nodes: (config, onTestFailed) => {
      const made = new Nodes({ nats: nats!.url, ...config });
      nodes = made;
      onTestFailed(() => console.log(`node logs:\n${made.logText(300)}`));
      return made;
    },
  };
}

describe("failover under load: three nodes, a NATS cluster of three", () => {
  const cluster = clusterSuite(3, "failover");

  it("SIGKILL of the leader, 5 times under load: quick takeover, nothing lost, nothing oversold", async ({
    onTestFailed,
  }) => {
    const nodes = cluster.nodes({ cluster: "fo", leaseMs }, onTestFailed);
    for (const name of ["a", "b", "c"]) nodes.add(name);
    const first = await nodes.startAll();
    const router = new Router(nodes);
    const shop = new Shop(nodes, router);
    await shop.seed(first, 4, 100_000, 3);
    shop.start(3, 3);

    const cycles: { killed: string; leader: string; takeoverMs: number; leadingMs: unknown }[] = [];
    try {
      for (let cycle = 0; cycle < 5; cycle++) {
        await sleep(1_500);
        const leader = await nodes.leader(20_000);
        const acked = router.acks.length;
        const t0 = performance.now();
        await leader.kill("SIGKILL");
        const ack = await until(
          `cycle ${cycle}: a write accepted after ${leader.name} died`,
          30_000,
          async () => router.acks.slice(acked).find((a) => a.atMs > t0 && a.node !== leader.name),
        );
        const next = nodes.byName(ack.node);
        const leading = next
          .currentLogs()
          .filter((l) => l.msg === "leading")
          .at(-1);
        cycles.push({
          killed: leader.name,
          leader: ack.node,
          takeoverMs: Math.round(ack.atMs - t0),
          leadingMs: leading?.ms,
        });
        await leader.start();
        await leader.waitRole("follower", 30_000);
      }
      await sleep(1_000);
    } finally {
      await shop.stop();
      console.log("failover cycles:", JSON.stringify(cycles));
      console.log(
        `acknowledged: ${shop.reservations.length} reservations, ${shop.orders.length} orders ` +
          `(${shop.orders.filter((o) => o.acked === "PAID").length} paid); retried: ${summary(router)}`,
      );
      if (router.samples.length > 0) console.log("5xx samples:", router.samples);
    }
    expect.soft(nodes.crashes(), "node processes that died by themselves").toEqual([]);
    expect(shop.unexpected).toEqual([]);
    // Refused writes are UNAVAILABLE (503), never an internal error (checked last, softly:
    // the availability and no-loss checks below still run).
    expect.soft(router.samples, "5xx answers other than 503").toEqual([]);
    expect(cycles).toHaveLength(5);
    for (const c of cycles) {
      expect(
        c.takeoverMs,
        `takeover after ${c.killed} died: ${JSON.stringify(cycles)}`,
      ).toBeLessThan(takeoverMsMax);
    }
    expect(shop.reservations.length).toBeGreaterThan(50);
    expect(shop.orders.filter((o) => o.acked === "PAID").length).toBeGreaterThan(5);
    await shop.converged(30_000);
    await shop.check(await nodes.leader());
  }, 180_000);
});

describe("pending orders expire on time on the leader that took over", () => {
  const cluster = clusterSuite(1, "expiry");

  it("an order and a hold of 4 s expire when due although their leader died", async ({
    onTestFailed,
  }) => {
    const holdMs = 4_000;
    const nodes = cluster.nodes({ cluster: "exp", leaseMs, hold: "4s" }, onTestFailed);
    const a = nodes.add("a");
    const b = nodes.add("b");
    await nodes.startAll();
    const shop = new Shop(nodes, new Router(nodes));
    await shop.seed(a, 1, 100, 2);
    const p = shop.products[0]!;

    /** Checks out `quantity` units for customer `c` on `leader`. */
    const checkout = async (leader: StockdNode, c: number, quantity: number) => {
      const customer = shop.customers[c]!;
      const cart = await call(leader.url!, "POST", "/v1/cart/items", {
        token: customer,
        body: { productId: p, quantity },
      });
      expect(cart.status, JSON.stringify(cart)).toBe(200);
      const o = await call(
        leader.url!,
        "POST",
        `/v1/checkout?cartId=${(cart.body as { id: string }).id}`,
        {
          token: customer,
          headers: { "idempotency-key": `exp-${c}` },
        },
      );
      expect(o.status, JSON.stringify(o)).toBe(201);
      const order = o.body as { id: string; status: string; reservedTill: string };
      expect(order.status).toBe("PENDING_PAYMENT");
      return { id: order.id, dueMs: Date.parse(order.reservedTill) };
    };
    /** Waits until `node` shows the order EXPIRED; returns when, in wall-clock ms. */
    const expired = (node: StockdNode, orderId: string, boundMs: number) =>
      until(`order ${orderId} EXPIRED on ${node.name}`, boundMs, async () => {
        const r = await call(node.url!, "GET", `/v1/orders/${orderId}`, { token: shop.admin });
        return (r.body as { status?: string }).status === "EXPIRED" ? Date.now() : undefined;
      });
    const slackMs = leaseMs + 4_000;

    // 1. The leader dies right after the checkout: the deadline comes on the new leader.
    const first = await checkout(a, 0, 5);
    expect(first.dueMs - Date.now()).toBeGreaterThan(holdMs - 1_000);
    const raw = await call(a.url!, "POST", "/v1/reservations", {
      token: shop.service,
      body: { lines: [{ productId: p, quantity: 3 }], holdSeconds: 4 },
      headers: { "idempotency-key": "raw-short" },
    });
    const kept = await call(a.url!, "POST", "/v1/reservations", {
      token: shop.service,
      body: { lines: [{ productId: p, quantity: 2 }], holdSeconds: 600 },
      headers: { "idempotency-key": "raw-long" },
    });
    expect([raw.status, kept.status], JSON.stringify([raw, kept])).toEqual([201, 201]);
    const rawId = (raw.body as { id: string }).id;
    const rawDueMs = Date.parse((raw.body as { expiresAt: string }).expiresAt);
    await a.kill("SIGKILL");
    await b.waitRole("leader", 15_000);
    const at1 = await expired(b, first.id, first.dueMs - Date.now() + slackMs);
    await until(`reservation ${rawId} EXPIRED on b`, rawDueMs - Date.now() + slackMs, async () => {
      const r = await call(b.url!, "GET", `/v1/reservations/${rawId}`, { token: shop.service });
      return (r.body as { status?: string }).status === "EXPIRED" ? true : undefined;
    });
    const inv1 = await call(b.url!, "GET", `/v1/inventory/${p}`, { token: shop.admin });
    expect(inv1.body).toMatchObject({ available: 98, reserved: 2 });

    // 2. The leader dies just before the deadline: it passes while nobody leads.
    await a.start();
    await a.waitRole("follower", 30_000);
    const second = await checkout(b, 1, 7);
    await sleep(Math.max(0, second.dueMs - Date.now() - 800));
    await b.kill("SIGKILL");
    await a.waitRole("leader", 15_000);
    const at2 = await expired(a, second.id, second.dueMs - Date.now() + slackMs);
    console.log(
      `orders expired ${at1 - first.dueMs} ms after their deadline (new leader took over after it), ` +
        `${at2 - second.dueMs} ms (deadline passed while no node led)`,
    );
    await b.start();
    await b.waitRole("follower", 30_000);
    expect.soft(nodes.crashes(), "node processes that died by themselves").toEqual([]);
    const inv = await shop.converged(20_000);
    expect(inv.get(p)).toEqual({ available: 98, reserved: 2 });
    for (const n of [a, b]) {
      for (const o of [first, second]) {
        const r = await call(n.url!, "GET", `/v1/orders/${o.id}`, { token: shop.admin });
        expect((r.body as { status: string }).status, `order ${o.id} on ${n.name}`).toBe("EXPIRED");
      }
    }
  }, 120_000);
});

describe("fencing: a leader frozen (SIGSTOP) past its lease", () => {
  const cluster = clusterSuite(1, "fence");

  it("acknowledges nothing once thawed, steps down and follows the new leader", async ({
    onTestFailed,
  }) => {
    const nodes = cluster.nodes({ cluster: "fence", leaseMs }, onTestFailed);
    const a = nodes.add("a");
    const b = nodes.add("b");
    await nodes.startAll();
    const shop = new Shop(nodes, new Router(nodes));
    await shop.seed(a, 1, 1_000, 0);
    const p = shop.products[0]!;
    const reserve = (node: StockdNode, key: string, quantity: number, timeoutMs = 5_000) =>
      call(node.url!, "POST", "/v1/reservations", {
        token: shop.service,
        body: { lines: [{ productId: p, quantity }] },
        headers: { "idempotency-key": key },
        timeoutMs,
      });
    const acked: { key: string; id: string; quantity: number; on: string }[] = [];
    for (let i = 0; i < 5; i++) {
      const r = await reserve(a, `before-${i}`, 1);
      expect(r.status, JSON.stringify(r)).toBe(201);
      acked.push({ key: `before-${i}`, id: (r.body as { id: string }).id, quantity: 1, on: "a" });
    }

    // Writes in flight when a freezes: answered (if at all) after the thaw.
    const inflight = Array.from({ length: 6 }, (_, i) =>
      reserve(a, `inflight-${i}`, 2, 30_000).then((r) => ({ key: `inflight-${i}`, ...r })),
    );
    await sleep(2);
    const stoppedAt = performance.now();
    await a.kill("SIGSTOP");
    await b.waitRole("leader", 15_000);
    const tookOverMs = Math.round(performance.now() - stoppedAt);
    const onB = await reserve(b, "on-b", 4);
    expect(onB.status, JSON.stringify(onB)).toBe(201);
    acked.push({ key: "on-b", id: (onB.body as { id: string }).id, quantity: 4, on: "b" });
    await sleep(Math.max(0, stoppedAt + 3 * leaseMs - performance.now()));

    const thawedAt = performance.now();
    await a.kill("SIGCONT");
    // Writes to a from the moment it thaws, a burst first, then one every 100 ms.
    const probes: { key: string; status: number; body: unknown; afterMs: number }[] = [];
    const probe = async (key: string) => {
      const r = await reserve(a, key, 8);
      probes.push({
        key,
        status: r.status,
        body: r.body,
        afterMs: Math.round(performance.now() - thawedAt),
      });
    };
    const burst = Array.from({ length: 4 }, (_, i) => probe(`thawed-${i}`));
    for (let i = 0; performance.now() - thawedAt < 3_000; i++) {
      await probe(`later-${i}`);
      await sleep(100);
    }
    await Promise.all(burst);
    const answers = await Promise.all(inflight);
    const steppedDown = await a.served!.waitForLog(
      (l) => l.msg === "stepping down",
      "stepping down",
    );
    const follows = await a.waitRole("follower", 20_000);
    console.log(
      `b led ${tookOverMs} ms after a froze; in flight: ${JSON.stringify(answers.map((x) => `${x.key}=${x.status}`))}; ` +
        `thawed a: ${JSON.stringify(steppedDown.why)}; probes: ${JSON.stringify(
          probes.map(
            (x) =>
              `${x.key}@${x.afterMs}=${x.status} ${(x.body as { error?: { code?: string } })?.error?.code ?? ""}`,
          ),
        )}`,
    );
    // Nothing acknowledged after the thaw; and refused as the README says,
    // UNAVAILABLE (503), not an internal error (soft: the checks below still run).
    const code = (body: unknown) => (body as { error?: { code?: string } } | null)?.error?.code;
    expect(
      probes.filter((x) => x.status >= 200 && x.status < 300),
      "writes a acknowledged after the thaw",
    ).toEqual([]);
    expect
      .soft(
        probes.filter((x) => x.status !== 503 || code(x.body) !== "UNAVAILABLE"),
        "writes to a after the thaw answered other than 503 UNAVAILABLE",
      )
      .toEqual([]);
    expect
      .soft(
        answers.filter(
          (x) => x.status !== 201 && (x.status !== 503 || code(x.body) !== "UNAVAILABLE"),
        ),
        "writes in flight during the freeze answered neither 201 nor 503 UNAVAILABLE",
      )
      .toEqual([]);
    expect(follows.detail).toContain("node b");
    expect(
      b.currentLogs().some((l) => l.msg === "stepping down"),
      "b stepped down",
    ).toBe(false);

    // What a acknowledged of the writes in flight is on b; what it refused may be there or not.
    let unsureUnits = 0;
    for (const x of answers) {
      if (x.status === 201)
        acked.push({ key: x.key, id: (x.body as { id: string }).id, quantity: 2, on: "a" });
      else unsureUnits += 2;
    }
    for (const r of acked) {
      const got = await call(b.url!, "GET", `/v1/reservations/${r.id}`, { token: shop.service });
      expect(
        got.status,
        `${r.key} (${r.id}, acknowledged by ${r.on}) on b: ${JSON.stringify(got)}`,
      ).toBe(200);
      expect((got.body as { lines: Line[] }).lines[0]!.quantity).toBe(r.quantity);
    }
    const inv = (await shop.converged(20_000)).get(p)!;
    const ackedUnits = acked.reduce((s, r) => s + r.quantity, 0);
    expect(inv.reserved).toBeGreaterThanOrEqual(ackedUnits);
    expect(inv.reserved).toBeLessThanOrEqual(ackedUnits + unsureUnits);
    expect(inv.available + inv.reserved).toBe(1_000);
    expect.soft(nodes.crashes(), "node processes that died by themselves").toEqual([]);
    // The cluster goes on: b takes writes, a refuses them naming b.
    const after = await reserve(b, "after", 1);
    expect(after.status, JSON.stringify(after)).toBe(201);
    const refused = await reserve(a, "refused", 1);
    expect(refused.status).toBe(503);
    expect((refused.body as { error: { message: string } }).error.message).toContain("node b");
  }, 120_000);
});

/** The index of the NATS server leading a stream's replicas (names are "n<i>"). */
async function streamLeader(nats: NatsCluster, stream: string): Promise<number> {
  const nc = await connect({ servers: nats.url, timeout: 2_000 });
  try {
    const jsm = await nc.jetstreamManager({ timeout: 5_000 });
    const leader = (await jsm.streams.info(stream)).cluster?.leader ?? "";
    const i = Number(/^n(\d)$/.exec(leader)?.[1]);
    if (!Number.isInteger(i)) throw new Error(`stream ${stream} has no leader (${leader})`);
    return i;
  } finally {
    await nc.close();
  }
}

/** Restarts NATS server i; once more if it finds no meta leader in the
 * harness's 15 s (seen on nats-server 2.9 on a busy machine). */
async function restartNats(nats: NatsCluster, i: number): Promise<void> {
  try {
    await nats.restart(i);
  } catch (err) {
    console.log(`restart of NATS n${i} failed, once more: ${String(err).split("\n")[0]}`);
    await nats.kill(i);
    await nats.restart(i);
  }
}

describe("one NATS server of three killed", () => {
  const cluster = clusterSuite(3, "natskill");

  it("writes stall at most a while, then go on; nothing acknowledged is lost", async ({
    onTestFailed,
  }) => {
    const nodes = cluster.nodes({ cluster: "nk", leaseMs }, onTestFailed);
    nodes.add("a");
    nodes.add("b");
    const first = await nodes.startAll();
    const router = new Router(nodes);
    const shop = new Shop(nodes, router);
    await shop.seed(first, 2, 100_000, 2);
    shop.start(2, 2);
    const phases: { killed: string; gapMs: number; leaders: string; ackedBefore: number }[] = [];
    /** Kills a NATS server under load; writes must go on (perhaps after a
     * stall, perhaps on another node) and still be going 12 s later. */
    const phase = async (what: string, pick: () => Promise<number>) => {
      await sleep(2_000);
      const ackedBefore = shop.reservations.length + shop.orders.length;
      const leaderBefore = (await nodes!.leader()).name;
      const i = await pick();
      const killedAt = performance.now();
      await cluster.nats().kill(i);
      let states = "";
      await until(
        () => `writes accepted 12 s after NATS n${i} (${what}) was killed (${states})`,
        30_000,
        async () => {
          const r = await Promise.all(
            nodes!.all.map(async (n) => `${n.name}: ${JSON.stringify(await n.readyz())}`),
          );
          states = r.join("; ");
          return router.acks.some((x) => x.atMs > killedAt + 12_000) ? true : undefined;
        },
      );
      let gapMs = 0;
      let last = killedAt;
      for (const x of router.acks.filter((y) => y.atMs > killedAt)) {
        gapMs = Math.max(gapMs, x.atMs - last);
        last = x.atMs;
      }
      const leaders = `${leaderBefore} -> ${router.acks.at(-1)!.node}`;
      phases.push({ killed: `n${i} (${what})`, gapMs: Math.round(gapMs), leaders, ackedBefore });
      return i;
    };
    try {
      const killed = await phase("index 0", async () => 0);
      await restartNats(cluster.nats(), killed);
      await phase("leader of the lease bucket", () =>
        streamLeader(cluster.nats(), "KV_stockd_nk_leases"),
      );
    } finally {
      await shop.stop();
      console.log(
        `NATS kills: ${JSON.stringify(phases)}; ` +
          `${shop.reservations.length + shop.orders.length} writes acknowledged; retried: ${summary(router)}`,
      );
      if (router.samples.length > 0) console.log("5xx samples:", router.samples);
    }
    expect.soft(nodes.crashes(), "node processes that died by themselves").toEqual([]);
    expect(shop.unexpected).toEqual([]);
    // Refused writes are UNAVAILABLE (503), never an internal error (checked last, softly:
    // the availability and no-loss checks below still run).
    expect.soft(router.samples, "5xx answers other than 503").toEqual([]);
    for (const p of phases) expect(p.gapMs, JSON.stringify(p)).toBeLessThan(20_000);
    // Both nodes serve again (leader and follower) and agree; nothing acknowledged is lost.
    await shop.converged(30_000);
    await shop.check(await nodes.leader());
  }, 150_000);
});

describe("JetStream without quorum for a while (two NATS servers of three down, then back)", () => {
  const cluster = clusterSuite(3, "quorum");

  it("both nodes serve again once NATS is back, nothing acknowledged is lost", async ({
    onTestFailed,
  }) => {
    const nodes = cluster.nodes({ cluster: "q", leaseMs }, onTestFailed);
    const a = nodes.add("a");
    const b = nodes.add("b");
    await nodes.startAll();
    const router = new Router(nodes);
    const shop = new Shop(nodes, router);
    await shop.seed(a, 2, 100_000, 1);
    shop.start(1, 1);
    const downMs = 15_000;
    let back = 0;
    try {
      await sleep(1_500);
      await Promise.all([cluster.nats().kill(1), cluster.nats().kill(2)]);
      await sleep(downMs);
      await restartNats(cluster.nats(), 1);
      await restartNats(cluster.nats(), 2);
      back = performance.now();
      // Writes are accepted again, by whichever node leads.
      let states = "";
      await until(
        () => `a write accepted after NATS came back (${states})`,
        30_000,
        async () => {
          const r = await Promise.all(
            [a, b].map(async (n) => `${n.name}: ${JSON.stringify(await n.readyz())}`),
          );
          states = r.join("; ");
          return router.acks.some((x) => x.atMs > back) ? true : undefined;
        },
      );
      console.log(
        `quorum back: first write accepted after ${Math.round(router.acks.find((x) => x.atMs > back)!.atMs - back)} ms`,
      );
    } finally {
      await shop.stop();
      console.log(`retried: ${summary(router)}`);
    }
    expect.soft(nodes.crashes(), "node processes that died by themselves").toEqual([]);
    expect(shop.unexpected).toEqual([]);
    // Refused writes are UNAVAILABLE (503), never an internal error (checked last, softly:
    // the availability and no-loss checks below still run).
    expect.soft(router.samples, "5xx answers other than 503").toEqual([]);
    // A node that stepped down or failed to take over while JetStream was
    // away must follow again once it is back: both nodes serve.
    const roles = await until(
      () => `a and b leader and follower again (a: ${a.logText(1)}; b: ${b.logText(1)})`,
      30_000,
      async () => {
        const r = await Promise.all([a.readyz(), b.readyz()]);
        const got = r.map((x) => (x?.status === "ready" ? x.role : null)).sort();
        return got[0] === "follower" && got[1] === "leader" ? got : undefined;
      },
    );
    expect(roles).toEqual(["follower", "leader"]);
    await shop.converged(30_000);
    await shop.check(await nodes.leader());
  }, 150_000);
});
