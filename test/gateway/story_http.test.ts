import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { type Harness, seed, settled, sleepPast, startServer } from "./support.ts";

// The seed article's story over HTTP: two customers and the last iPhone.

describe("order lifecycle over HTTP", () => {
  let h: Harness;
  let admin: string;
  let service: string;
  let warehouse: string;
  let iphone: string;

  beforeAll(async () => {
    // Long enough that the hold outlives the requests made before its
    // deadline on a loaded machine, short enough to watch it expire.
    h = await startServer({ holdDurationMs: 5000 });
    const s = await seed(h, {
      warehouses: [{ name: "Bengaluru", lat: "12.8576° N", long: "77.7864° E" }],
      products: [
        {
          name: "iPhone 15 Pro",
          description: "Apple phone, titanium",
          price: 119000,
          currency: "INR",
        },
      ],
    });
    admin = s.admin;
    warehouse = s.warehouses[0]!;
    iphone = s.products[0]!;
    service = await h.token("payments", "service");
  });
  afterAll(() => h.stop());

  async function receive(quantity: number) {
    const r = await h.http.post("/v1/inventory/receipts", admin, {
      productId: iphone,
      warehouseId: warehouse,
      quantity,
    });
    expect(r.status).toBe(200);
  }

  async function stock() {
    const r = await h.http.get(`/v1/inventory/${iphone}`, admin);
    expect(r.status).toBe(200);
    return r.body as { available: number; reserved: number };
  }

  async function cartWithIphone(user: string) {
    const token = await h.token(user, "customer");
    const r = await h.http.post("/v1/cart/items", token, { productId: iphone, quantity: 1 });
    expect(r.status).toBe(200);
    expect(r.body.items).toEqual([
      {
        productId: iphone,
        name: "iPhone 15 Pro",
        quantity: 1,
        pricePerUnit: 119000,
        lineItemTotal: 119000,
      },
    ]);
    expect(r.body).toMatchObject({ subtotal: 119000, tax: 21420, total: 140420, currency: "INR" });
    return { token, cartId: r.body.id as string };
  }

  it("Alice and Bob race for the last iPhone: one order, one OUT_OF_STOCK", async () => {
    await receive(1);
    const alice = await cartWithIphone("alice");
    const bob = await cartWithIphone("bob");
    const [a, b] = await Promise.all([
      h.http.post(`/v1/checkout?cartId=${alice.cartId}`, alice.token),
      h.http.post(`/v1/checkout?cartId=${bob.cartId}`, bob.token),
    ]);
    const statuses = [a.status, b.status].sort();
    expect(statuses).toEqual([201, 409]);
    const won = a.status === 201 ? a : b;
    const lost = a.status === 201 ? b : a;
    expect(lost.body.error.code).toBe("OUT_OF_STOCK");
    expect(lost.body.error.details.productId).toBe(iphone);
    expect(won.body).toMatchObject({ status: "PENDING_PAYMENT", total: 140420, currency: "INR" });
    expect(Date.parse(won.body.reservedTill)).toBeGreaterThan(Date.now());
    expect(await stock()).toMatchObject({ available: 0, reserved: 1 });

    // Payment fails: the hold stays until reservedTill.
    const failed = await h.http.post(`/v1/orders/${won.body.id}/payment`, service, {
      status: "FAILED",
      paymentId: "pay-1",
    });
    expect(failed.status).toBe(200);
    expect(failed.body).toMatchObject({ status: "PENDING_PAYMENT", failedPaymentCount: 1 });
    expect(await stock()).toMatchObject({ available: 0, reserved: 1 });

    // Then the order expires and the iPhone is back.
    expect(Date.now(), "the hold outlasted the requests above").toBeLessThan(
      Date.parse(won.body.reservedTill),
    );
    await sleepPast(Date.parse(won.body.reservedTill));
    const winner = won === a ? alice : bob;
    const expired = await settled(
      () => h.http.get(`/v1/orders/${won.body.id}`, winner.token),
      (r) => r.body.status !== "PENDING_PAYMENT",
    );
    expect(expired.body.status).toBe("EXPIRED");
    expect(await stock()).toMatchObject({ available: 1, reserved: 0 });

    // A success that arrives after expiry is refused.
    const late = await h.http.post(`/v1/orders/${won.body.id}/payment`, service, {
      status: "SUCCEEDED",
      paymentId: "pay-2",
    });
    expect(late.status).toBe(409);
    expect(late.body.error.code).toBe("ORDER_EXPIRED");
    expect(await stock()).toMatchObject({ available: 1, reserved: 0 });

    // Bob tries again and pays: the iPhone is sold.
    const retry = await h.http.post(`/v1/checkout?cartId=${bob.cartId}`, bob.token);
    expect(retry.status).toBe(201);
    const paid = await h.http.post(`/v1/orders/${retry.body.id}/payment`, service, {
      status: "SUCCEEDED",
      paymentId: "pay-3",
    });
    expect(paid.status).toBe(200);
    expect(paid.body).toMatchObject({ status: "PAID", paymentId: "pay-3" });
    expect(await stock()).toMatchObject({ available: 0, reserved: 0 });
    // The same callback again is answered the same; another payment is refused.
    const again = await h.http.post(`/v1/orders/${retry.body.id}/payment`, service, {
      status: "SUCCEEDED",
      paymentId: "pay-3",
    });
    expect(again.status).toBe(200);
    const other = await h.http.post(`/v1/orders/${retry.body.id}/payment`, service, {
      status: "SUCCEEDED",
      paymentId: "pay-4",
    });
    expect(other.status).toBe(409);
    expect(other.body.error.code).toBe("ORDER_ALREADY_PAID");
    // A paid order empties the cart.
    const cart = await h.http.get("/v1/cart/items", bob.token);
    expect(cart.body.items).toEqual([]);
    // Even after its deadline, a paid order stays paid.
    await sleepPast(Date.parse(retry.body.reservedTill), 300);
    const still = await h.http.get(`/v1/orders/${retry.body.id}`, bob.token);
    expect(still.body.status).toBe("PAID");
    expect(await stock()).toMatchObject({ available: 0, reserved: 0 });
  });
});
