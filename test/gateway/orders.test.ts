import { afterAll, beforeAll, describe, expect, it } from "vitest";
import {
  CartService,
  InventoryService,
  OrderService,
  OrderStatus,
  PaymentStatus,
  ReservationService,
} from "../../src/gen/stockd/v1/api_pb.ts";
import {
  GrpcClient,
  grpcFails,
  type Harness,
  seed,
  settled,
  sleep,
  sleepPast,
  startServer,
} from "./support.ts";

// Orders end to end: the seed's story over gRPC, idempotent checkout (also
// across a restart), and pending orders whose holds expire on time across a
// restart.

describe("order lifecycle over gRPC", () => {
  let h: Harness;
  let grpc: GrpcClient;
  let admin: string;
  let warehouse: string;
  let iphone: string;

  beforeAll(async () => {
    // Long enough that the hold outlives the requests made before its
    // deadline on a loaded machine, short enough to watch it expire.
    h = await startServer({ holdDurationMs: 5000 });
    const s = await seed(h, {
      warehouses: [{ name: "Bengaluru", lat: "12.8576° N", long: "77.7864° E" }],
      products: [{ name: "iPhone 15 Pro", description: "Apple phone", price: 119000 }],
    });
    admin = s.admin;
    warehouse = s.warehouses[0]!;
    iphone = s.products[0]!;
    grpc = new GrpcClient(() => h.server.grpcPort, undefined);
  });
  afterAll(async () => {
    grpc.close();
    await h.stop();
  });

  const stock = async () => {
    const r = await grpc.as(admin).call(InventoryService, "getInventory", { productId: iphone });
    return { available: r.levels[0].available, reserved: r.levels[0].reserved };
  };

  async function cart(user: string) {
    const c = grpc.as(await h.token(user, "customer"));
    const r = await c.call(CartService, "setCartItem", { productId: iphone, quantity: 1n });
    expect(r.cart.items).toHaveLength(1);
    expect(r.cart.total).toMatchObject({ currency: "INR", minorUnits: 14042000n });
    return { c, cartId: r.cart.id as string };
  }

  it("Alice and Bob: one order, one OUT_OF_STOCK; failed payment, expiry, late success refused", async () => {
    await grpc.as(admin).call(InventoryService, "receiveStock", {
      productId: iphone,
      warehouseId: warehouse,
      quantity: 1n,
    });
    const alice = await cart("alice");
    const bob = await cart("bob");
    const answers = await Promise.allSettled([
      alice.c.call(OrderService, "checkout", { cartId: alice.cartId }),
      bob.c.call(OrderService, "checkout", { cartId: bob.cartId }),
    ]);
    const won = answers.findIndex((a) => a.status === "fulfilled");
    expect(answers.filter((a) => a.status === "fulfilled")).toHaveLength(1);
    const lost = answers[1 - won] as PromiseRejectedResult;
    expect(lost.reason.reason).toBe("OUT_OF_STOCK");
    expect(lost.reason.code).toBe(9); // FAILED_PRECONDITION
    const order = (
      answers[won] as PromiseFulfilledResult<{
        order: { id: string; status: OrderStatus; reservedTillTimeMs: bigint };
      }>
    ).value.order;
    expect(order.status).toBe(OrderStatus.PENDING_PAYMENT);
    expect(await stock()).toEqual({ available: 0n, reserved: 1n });

    const payments = grpc.as(await h.token("payments", "service"));
    const failed = await payments.call(OrderService, "recordPayment", {
      orderId: order.id,
      status: PaymentStatus.FAILED,
      paymentId: "p1",
    });
    expect(failed.order.status).toBe(OrderStatus.PENDING_PAYMENT);
    expect(failed.order.failedPaymentCount).toBe(1);
    expect(await stock()).toEqual({ available: 0n, reserved: 1n });

    const till = Number(order.reservedTillTimeMs);
    expect(Date.now(), "the hold outlasted the requests above").toBeLessThan(till);
    await sleepPast(till);
    const owner = won === 0 ? alice : bob;
    const expired = await settled(
      () => owner.c.call(OrderService, "getOrder", { id: order.id }),
      (r) => r.order.status !== OrderStatus.PENDING_PAYMENT,
    );
    expect(expired.order.status).toBe(OrderStatus.EXPIRED);
    expect(await stock()).toEqual({ available: 1n, reserved: 0n });
    const late = await grpcFails(
      payments.call(OrderService, "recordPayment", {
        orderId: order.id,
        status: PaymentStatus.SUCCEEDED,
        paymentId: "p2",
      }),
    );
    expect(late.reason).toBe("ORDER_EXPIRED");
    expect(await stock()).toEqual({ available: 1n, reserved: 0n });

    const retry = await owner.c.call(OrderService, "checkout", { cartId: owner.cartId });
    const paid = await payments.call(OrderService, "recordPayment", {
      orderId: retry.order.id,
      status: PaymentStatus.SUCCEEDED,
      paymentId: "p3",
    });
    expect(paid.order.status).toBe(OrderStatus.PAID);
    expect(paid.order.paymentId).toBe("p3");
    expect(await stock()).toEqual({ available: 0n, reserved: 0n });
  });
});

describe("checkout idempotency and restarts", () => {
  let h: Harness;
  let admin: string;
  let service: string;
  let warehouses: string[];
  let products: string[];

  // Holds outlast a restart under load unless a test asks for short ones
  // (`short`) to see them expire.
  const short = { holdDurationMs: 3000 };
  beforeAll(async () => {
    h = await startServer({ holdDurationMs: 60_000 });
    const s = await seed(h, {
      warehouses: [
        { name: "A", lat: "10° N", long: "70° E" },
        { name: "B", lat: "20° N", long: "75° E" },
      ],
      products: Array.from({ length: 6 }, (_, i) => ({ name: `Gadget ${i}`, price: 10 + i })),
    });
    ({ admin, warehouses, products } = s);
    service = await h.token("payments", "service");
    for (const p of products) {
      for (const w of warehouses) {
        await h.http.post("/v1/inventory/receipts", admin, {
          productId: p,
          warehouseId: w,
          quantity: 10,
        });
      }
    }
  });
  afterAll(() => h.stop());

  const reservedOf = async (p: string) => (await h.http.get(`/v1/inventory/${p}`, admin)).body;

  async function fill(user: string, items: [number, number][]) {
    const token = await h.token(user, "customer");
    let cartId = "";
    for (const [i, q] of items) {
      const r = await h.http.post("/v1/cart/items", token, { productId: products[i], quantity: q });
      expect(r.status).toBe(200);
      cartId = r.body.id;
    }
    return { token, cartId };
  }

  it("the same key, or the same cart while pending, returns the same order and reserves once — also after a restart", async () => {
    // Lines across partitions and a line split over two warehouses.
    const { token, cartId } = await fill("carol", [
      [0, 2],
      [1, 12],
      [2, 1],
    ]);
    const key = { "idempotency-key": "carol-checkout-1" };
    const first = await h.http.post(`/v1/checkout?cartId=${cartId}`, token, undefined, key);
    expect(first.status).toBe(201);
    expect(first.body.lines).toHaveLength(4);
    const again = await h.http.post(`/v1/checkout?cartId=${cartId}`, token, undefined, key);
    expect(again.status).toBe(200);
    expect(again.body.id).toBe(first.body.id);
    const noKey = await h.http.post(`/v1/checkout?cartId=${cartId}`, token);
    expect(noKey.body.id).toBe(first.body.id);
    expect((await reservedOf(products[1]!)).reserved).toBe(12);
    // The cart cannot change while its order is pending.
    const locked = await h.http.post("/v1/cart/items", token, {
      productId: products[3],
      quantity: 1,
    });
    expect(locked.status).toBe(409);
    expect(locked.body.error.code).toBe("CART_LOCKED");

    await h.restart();
    const after = await h.http.post(`/v1/checkout?cartId=${cartId}`, token, undefined, key);
    expect(after.status).toBe(200);
    expect(after.body).toMatchObject({ id: first.body.id, status: "PENDING_PAYMENT" });
    expect((await reservedOf(products[0]!)).reserved).toBe(2);
    expect((await reservedOf(products[1]!)).reserved).toBe(12);
    expect((await reservedOf(products[2]!)).reserved).toBe(1);
    const paid = await h.http.post(`/v1/orders/${first.body.id}/payment`, service, {
      status: "SUCCEEDED",
      paymentId: "carol-pay",
    });
    expect(paid.body.status).toBe("PAID");
    expect(await reservedOf(products[1]!)).toMatchObject({ available: 8, reserved: 0 });
    // After payment the key still names the paid order.
    const replay = await h.http.post(`/v1/checkout?cartId=${cartId}`, token, undefined, key);
    expect(replay.body).toMatchObject({ id: first.body.id, status: "PAID" });
  });

  it("a restart with orders pending: their holds still expire on time, and the orders with them", async () => {
    // Long enough that the hold outlives two restarts on a loaded machine
    // (checked below), short enough to watch it expire.
    const holds = { holdDurationMs: 15_000 };
    await h.restart(holds);
    const dave = await fill("dave", [[4, 3]]);
    const erin = await fill("erin", [[5, 2]]);
    const d = await h.http.post(`/v1/checkout?cartId=${dave.cartId}`, dave.token);
    const e = await h.http.post(`/v1/checkout?cartId=${erin.cartId}`, erin.token);
    expect([d.status, e.status]).toEqual([201, 201]);
    const cancelled = await h.http.post(`/v1/orders/${e.body.id}/cancel`, erin.token);
    expect(cancelled.body.status).toBe("CANCELLED");
    expect((await reservedOf(products[5]!)).reserved).toBe(0);
    await h.restart(holds);
    const till = Date.parse(d.body.reservedTill);
    expect((await reservedOf(products[4]!)).reserved).toBe(3);
    expect(Date.now(), "the restart outlasted the hold: no check of it before expiry").toBeLessThan(
      till,
    );
    await sleepPast(till);
    const order = await settled(
      () => h.http.get(`/v1/orders/${d.body.id}`, dave.token),
      (r) => r.body.status !== "PENDING_PAYMENT",
    );
    expect(order.body.status).toBe("EXPIRED");
    expect(await reservedOf(products[4]!)).toMatchObject({ available: 20, reserved: 0 });
    // The cart is free again and keeps its items.
    const cart = await h.http.get("/v1/cart/items", dave.token);
    expect(cart.body.items).toHaveLength(1);
    expect(cart.body.pendingOrderId).toBeUndefined();
    await h.restart();
  });

  it("gRPC: checkout and reservation are idempotent by request_id, also across a restart", async () => {
    const grace = await fill("grace", [[0, 1]]);
    const g = new GrpcClient(() => h.server.grpcPort, grace.token);
    const first = await g.call(OrderService, "checkout", {
      cartId: grace.cartId,
      requestId: "grace-1",
    });
    const again = await g.call(OrderService, "checkout", {
      cartId: grace.cartId,
      requestId: "grace-1",
    });
    expect(again.order.id).toBe(first.order.id);
    const svc = g.as(service);
    const line = { productId: products[2]!, warehouseId: warehouses[0]!, quantity: 2n };
    const held = await svc.call(ReservationService, "reserve", {
      lines: [line],
      requestId: "svc-grpc-9",
    });
    expect(held.replayed).toBe(false);
    const before = (await reservedOf(products[2]!)).reserved;
    await h.restart();
    const after = await g.call(OrderService, "checkout", {
      cartId: grace.cartId,
      requestId: "grace-1",
    });
    expect(after.order.id).toBe(first.order.id);
    const replay = await svc.call(ReservationService, "reserve", {
      lines: [line],
      requestId: "svc-grpc-9",
    });
    expect(replay.replayed).toBe(true);
    expect(replay.reservation.id).toBe(held.reservation.id);
    expect((await reservedOf(products[2]!)).reserved).toBe(before);
    g.close();
  });

  it("an order whose deadline passed while stockd was down expires at start", async () => {
    await h.restart(short);
    const frank = await fill("frank", [[3, 4]]);
    const o = await h.http.post(`/v1/checkout?cartId=${frank.cartId}`, frank.token);
    expect(o.status).toBe(201);
    await h.server.close();
    await sleep(Math.max(0, Date.parse(o.body.reservedTill) - Date.now()) + 200);
    await h.restart();
    expect((await h.http.get(`/v1/orders/${o.body.id}`, frank.token)).body.status).toBe("EXPIRED");
    expect((await reservedOf(products[3]!)).reserved).toBe(0);
    const late = await h.http.post(`/v1/orders/${o.body.id}/payment`, service, {
      status: "SUCCEEDED",
      paymentId: "frank-pay",
    });
    expect(late.status).toBe(409);
    expect(late.body.error.code).toBe("ORDER_EXPIRED");
  });
});
