import type { DescService } from "@bufbuild/protobuf";
import { status as GrpcStatus } from "@grpc/grpc-js";
import { SignJWT } from "jose";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { allowedRoles, type Operation } from "../../src/gateway/service.ts";
import {
  CartService,
  CatalogService,
  InventoryService,
  OrderService,
  ReservationService,
} from "../../src/gen/stockd/v1/api_pb.ts";
import {
  GrpcClient,
  type GrpcFailure,
  type Harness,
  type HttpAnswer,
  secret,
  seed,
  startServer,
} from "./support.ts";

// Auth end to end: every operation called by every role and by nobody, over
// HTTP and gRPC, on a real server; tokens that must not let anyone in; and
// one customer trying to reach another's cart and order.

type Caller = "admin" | "service" | "customer" | "none";
const callers: Caller[] = ["admin", "service", "customer", "none"];

interface HttpRequest {
  method: "GET" | "POST";
  path: string;
  body?: unknown;
}

interface GrpcRequest {
  service: DescService;
  method: string;
  request: object;
}

/** How to call an operation so that an allowed caller succeeds: `prepare`
 * makes what the call needs (a hold, a cart with items, an order) with
 * tokens of its own, then names the request. */
interface OpCase {
  /** Null: the operation has no HTTP route (ReserveBatch is gRPC only). */
  http: ((customer: string) => Promise<HttpRequest>) | null;
  grpc: (customer: string) => Promise<GrpcRequest>;
}

const show = (v: unknown) =>
  JSON.stringify(v, (_k, x) => (typeof x === "bigint" ? `${x}n` : x))?.slice(0, 300);

const epochS = () => Math.floor(Date.now() / 1000);
const key = (s: string) => new TextEncoder().encode(s);
const b64url = (v: unknown) => Buffer.from(JSON.stringify(v)).toString("base64url");

/** A token built by hand: any claims, any algorithm, any secret. */
function handMade(
  claims: Record<string, unknown>,
  options: { alg?: string; secret?: string } = {},
): Promise<string> {
  return new SignJWT(claims)
    .setProtectedHeader({ alg: options.alg ?? "HS256", typ: "JWT" })
    .sign(key(options.secret ?? secret));
}

const validClaims = (over: Record<string, unknown> = {}) => ({
  sub: "admin-1",
  role: "admin",
  iss: "stockd",
  iat: epochS(),
  exp: epochS() + 3600,
  ...over,
});

describe("auth: every role boundary, and a customer reading another's cart", () => {
  let h: Harness;
  let admin: string;
  let service: string;
  let warehouse: string;
  let product: string;
  const grpcClients: GrpcClient[] = [];

  beforeAll(async () => {
    h = await startServer();
    const s = await seed(h, {
      warehouses: [{ name: "Bengaluru", lat: "12.9716° N", long: "77.5946° E" }],
      products: [{ name: "Widget", description: "a widget", price: 100, currency: "INR" }],
    });
    admin = s.admin;
    warehouse = s.warehouses[0]!;
    product = s.products[0]!;
    service = await h.token("svc-1", "service");
    const r = await h.http.post("/v1/inventory/receipts", admin, {
      productId: product,
      warehouseId: warehouse,
      quantity: 1_000_000,
    });
    expect(r.status).toBe(200);
  });
  afterAll(async () => {
    for (const c of grpcClients) c.close();
    await h?.stop();
  });

  function grpcAs(token: string | undefined): GrpcClient {
    const c = new GrpcClient(() => h.server.grpcPort, token);
    grpcClients.push(c);
    return c;
  }

  async function must(p: Promise<HttpAnswer>, status: number): Promise<HttpAnswer> {
    const r = await p;
    if (r.status !== status) throw new Error(`preparing: ${r.status} ${show(r.body)}`);
    return r;
  }

  /** A fresh open reservation of one unit. */
  async function freshHold(): Promise<string> {
    const r = await must(
      h.http.post("/v1/reservations", service, {
        lines: [{ productId: product, warehouseId: warehouse, quantity: 1 }],
      }),
      201,
    );
    return r.body.id as string;
  }

  /** The customer's cart id, with one item in it unless an order awaits
   * payment. */
  async function cartWithItem(customer: string): Promise<string> {
    const cart = await must(h.http.get("/v1/cart/items", customer), 200);
    if (cart.body.pendingOrderId === undefined && cart.body.items.length === 0) {
      await must(h.http.post("/v1/cart/items", customer, { productId: product, quantity: 1 }), 200);
    }
    return cart.body.id as string;
  }

  /** An order of the customer awaiting payment (a new one, or the one
   * already awaiting payment). */
  async function pendingOrder(customer: string): Promise<string> {
    const cartId = await cartWithItem(customer);
    const r = await h.http.post(`/v1/checkout?cartId=${cartId}`, customer);
    if (r.status !== 201 && r.status !== 200) throw new Error(`checkout: ${show(r.body)}`);
    return r.body.id as string;
  }

  let n = 0;
  const unique = () => `${++n}`;

  const cases: Record<Operation, OpCase> = {
    CreateWarehouse: {
      http: async () => ({
        method: "POST",
        path: "/v1/warehouses",
        body: { name: `W${unique()}`, address: "x", lat: "12° N", long: "77° E" },
      }),
      grpc: async () => ({
        service: CatalogService,
        method: "createWarehouse",
        request: { name: `W${unique()}`, address: "x", lat: "12° N", long: "77° E" },
      }),
    },
    GetWarehouse: {
      http: async () => ({ method: "GET", path: `/v1/warehouses/${warehouse}` }),
      grpc: async () => ({
        service: CatalogService,
        method: "getWarehouse",
        request: { id: warehouse },
      }),
    },
    ListWarehouses: {
      http: async () => ({ method: "GET", path: "/v1/warehouses" }),
      grpc: async () => ({ service: CatalogService, method: "listWarehouses", request: {} }),
    },
    CreateProduct: {
      http: async () => ({
        method: "POST",
        path: "/v1/products",
        body: { name: `P${unique()}`, price: 1.5, currency: "INR" },
      }),
      grpc: async () => ({
        service: CatalogService,
        method: "createProduct",
        request: { name: `P${unique()}`, price: { currency: "INR", minorUnits: 150n } },
      }),
    },
    GetProduct: {
      http: async () => ({ method: "GET", path: `/v1/products/${product}` }),
      grpc: async () => ({
        service: CatalogService,
        method: "getProduct",
        request: { id: product },
      }),
    },
    SearchProducts: {
      http: async () => ({ method: "GET", path: "/v1/products?keyword=widget" }),
      grpc: async () => ({
        service: CatalogService,
        method: "searchProducts",
        request: { keyword: "widget" },
      }),
    },
    ReceiveStock: {
      http: async () => ({
        method: "POST",
        path: "/v1/inventory/receipts",
        body: { productId: product, warehouseId: warehouse, quantity: 1 },
      }),
      grpc: async () => ({
        service: InventoryService,
        method: "receiveStock",
        request: { productId: product, warehouseId: warehouse, quantity: 1n },
      }),
    },
    AdjustStock: {
      http: async () => ({
        method: "POST",
        path: "/v1/inventory/adjustments",
        body: { productId: product, warehouseId: warehouse, delta: 1, reason: "FOUND" },
      }),
      grpc: async () => ({
        service: InventoryService,
        method: "adjustStock",
        request: { productId: product, warehouseId: warehouse, delta: 1n, reason: 5 },
      }),
    },
    GetInventory: {
      http: async () => ({ method: "GET", path: `/v1/inventory/${product}` }),
      grpc: async () => ({
        service: InventoryService,
        method: "getInventory",
        request: { productId: product },
      }),
    },
    Reserve: {
      http: async () => ({
        method: "POST",
        path: "/v1/reservations",
        body: { lines: [{ productId: product, warehouseId: warehouse, quantity: 1 }] },
      }),
      grpc: async () => ({
        service: ReservationService,
        method: "reserve",
        request: { lines: [{ productId: product, warehouseId: warehouse, quantity: 1n }] },
      }),
    },
    ReserveBatch: {
      http: null,
      grpc: async () => ({
        service: ReservationService,
        method: "reserveBatch",
        request: {
          requests: [{ lines: [{ productId: product, warehouseId: warehouse, quantity: 1n }] }],
        },
      }),
    },
    ReleaseReservation: {
      http: async () => ({ method: "POST", path: `/v1/reservations/${await freshHold()}/release` }),
      grpc: async () => ({
        service: ReservationService,
        method: "releaseReservation",
        request: { id: await freshHold() },
      }),
    },
    FulfilReservation: {
      http: async () => ({ method: "POST", path: `/v1/reservations/${await freshHold()}/fulfil` }),
      grpc: async () => ({
        service: ReservationService,
        method: "fulfilReservation",
        request: { id: await freshHold() },
      }),
    },
    GetReservation: {
      http: async () => ({ method: "GET", path: `/v1/reservations/${await freshHold()}` }),
      grpc: async () => ({
        service: ReservationService,
        method: "getReservation",
        request: { id: await freshHold() },
      }),
    },
    SetCartItem: {
      http: async () => ({
        method: "POST",
        path: "/v1/cart/items",
        body: { productId: product, quantity: 2 },
      }),
      grpc: async () => ({
        service: CartService,
        method: "setCartItem",
        request: { productId: product, quantity: 2n },
      }),
    },
    GetCart: {
      http: async () => ({ method: "GET", path: "/v1/cart/items" }),
      grpc: async () => ({ service: CartService, method: "getCart", request: {} }),
    },
    Checkout: {
      http: async (customer) => ({
        method: "POST",
        path: `/v1/checkout?cartId=${await cartWithItem(customer)}`,
      }),
      grpc: async (customer) => ({
        service: OrderService,
        method: "checkout",
        request: { cartId: await cartWithItem(customer) },
      }),
    },
    RecordPayment: {
      http: async (customer) => ({
        method: "POST",
        path: `/v1/orders/${await pendingOrder(customer)}/payment`,
        body: { status: "FAILED", paymentId: `pay-${unique()}` },
      }),
      grpc: async (customer) => ({
        service: OrderService,
        method: "recordPayment",
        request: { orderId: await pendingOrder(customer), status: 2, paymentId: `pay-${unique()}` },
      }),
    },
    GetOrder: {
      http: async (customer) => ({
        method: "GET",
        path: `/v1/orders/${await pendingOrder(customer)}`,
      }),
      grpc: async (customer) => ({
        service: OrderService,
        method: "getOrder",
        request: { id: await pendingOrder(customer) },
      }),
    },
    CancelOrder: {
      http: async (customer) => ({
        method: "POST",
        path: `/v1/orders/${await pendingOrder(customer)}/cancel`,
      }),
      grpc: async (customer) => ({
        service: OrderService,
        method: "cancelOrder",
        request: { id: await pendingOrder(customer) },
      }),
    },
  };

  const operations = Object.keys(allowedRoles) as Operation[];

  it("the table covers every operation in allowedRoles, and only those", () => {
    expect(operations).toHaveLength(20);
    expect(Object.keys(cases).sort()).toEqual([...operations].sort());
  });

  /** The token a caller sends for an operation: customers are one per
   * operation, so that one operation's cart and orders never meet another's. */
  async function tokenOf(caller: Caller, op: Operation): Promise<string | undefined> {
    if (caller === "none") return undefined;
    if (caller === "admin") return admin;
    if (caller === "service") return service;
    return h.token(`customer-${op}`, "customer");
  }

  const matrix = operations.flatMap((op) => callers.map((caller) => ({ op, caller })));

  describe("HTTP: every operation x every role and no token", () => {
    for (const { op, caller } of matrix) {
      if (cases[op].http === null) continue;
      const allowed = caller !== "none" && allowedRoles[op].includes(caller);
      const expected = caller === "none" ? "401" : allowed ? "allowed" : "403";
      it(`${op} as ${caller} -> ${expected}`, async () => {
        const customer = (await tokenOf("customer", op))!;
        const req = await cases[op].http!(customer);
        const token = await tokenOf(caller, op);
        const r = await h.http.call(req.method, req.path, {
          ...(token === undefined ? {} : { token }),
          ...(req.body === undefined ? {} : { body: req.body }),
        });
        const answer = `${req.method} ${req.path} answered ${r.status} ${show(r.body)}`;
        if (caller === "none") {
          expect({ status: r.status, code: r.body?.error?.code }, answer).toEqual({
            status: 401,
            code: "UNAUTHENTICATED",
          });
          expect(r.body.error.message, answer).toMatch(/authorization/i);
        } else if (allowed) {
          expect([401, 403], answer).not.toContain(r.status);
          expect(r.status, answer).toBeGreaterThanOrEqual(200);
          expect(r.status, answer).toBeLessThan(300);
        } else {
          expect({ status: r.status, code: r.body?.error?.code }, answer).toEqual({
            status: 403,
            code: "PERMISSION_DENIED",
          });
          expect(r.body.error.message, answer).toContain(caller);
          expect(r.body.error.message, answer).toContain(op);
        }
      });
    }
  });

  describe("gRPC: every operation x every role and no token", () => {
    for (const { op, caller } of matrix) {
      const allowed = caller !== "none" && allowedRoles[op].includes(caller);
      const expected = caller === "none" ? "UNAUTHENTICATED" : allowed ? "allowed" : "DENIED";
      it(`${op} as ${caller} -> ${expected}`, async () => {
        const customer = (await tokenOf("customer", op))!;
        const req = await cases[op].grpc(customer);
        const client = grpcAs(await tokenOf(caller, op));
        const result = await client.call(req.service, req.method, req.request).then(
          (res: unknown) => ({ ok: true as const, res }),
          (e: GrpcFailure) => ({ ok: false as const, e }),
        );
        const answer = `${req.service.name}.${req.method} answered ${show(result)}`;
        if (allowed) {
          expect(result.ok, answer).toBe(true);
          return;
        }
        expect(result.ok, answer).toBe(false);
        const e = (result as { e: GrpcFailure }).e;
        const want = caller === "none" ? "UNAUTHENTICATED" : "PERMISSION_DENIED";
        expect({ code: GrpcStatus[e.code], reason: e.reason }, answer).toEqual({
          code: want,
          reason: want,
        });
        expect(e.message.trim(), answer).not.toBe("");
      });
    }
  });

  describe("tokens that let nobody in", () => {
    const badTokens: { name: string; header: () => Promise<string>; message: RegExp }[] = [
      {
        name: "expired an hour ago",
        header: async () =>
          `Bearer ${await handMade(validClaims({ iat: epochS() - 7200, exp: epochS() - 3600 }))}`,
        message: /expired/,
      },
      {
        name: "expired a second ago",
        header: async () =>
          `Bearer ${await handMade(validClaims({ iat: epochS() - 60, exp: epochS() - 1 }))}`,
        message: /expired/,
      },
      {
        name: "forged: signed with another secret",
        header: async () =>
          `Bearer ${await handMade(validClaims(), { secret: "another-secret-0123456789-abcdefghijklmnop" })}`,
        message: /signature/,
      },
      {
        name: "tampered: a customer's payload relabelled admin",
        header: async () => {
          const [head, , sig] = (await h.token("mallory", "customer")).split(".");
          return `Bearer ${head}.${b64url(validClaims({ sub: "mallory" }))}.${sig}`;
        },
        message: /signature/,
      },
      {
        name: "alg none",
        header: async () =>
          `Bearer ${b64url({ alg: "none", typ: "JWT" })}.${b64url(validClaims())}.`,
        message: /"none" is not accepted/,
      },
      {
        name: "alg HS512 with the right secret",
        header: async () => `Bearer ${await handMade(validClaims(), { alg: "HS512" })}`,
        message: /"HS512" is not accepted/,
      },
      {
        name: "garbage",
        header: async () => "Bearer not-a-token",
        message: /malformed/,
      },
      {
        name: "three dots of garbage",
        header: async () => "Bearer a.b.c",
        message: /malformed/,
      },
      {
        name: "a token of 5000 characters",
        header: async () => `Bearer ${"a".repeat(2500)}.${"b".repeat(2499)}`,
        message: /malformed/,
      },
      {
        name: "Basic scheme",
        header: async () => `Basic ${Buffer.from("admin:admin").toString("base64")}`,
        message: /bearer/i,
      },
      {
        name: "a valid token with no scheme",
        header: async () => admin,
        message: /bearer/i,
      },
      {
        name: "Bearer and nothing after",
        header: async () => "Bearer ",
        message: /token/,
      },
      {
        name: 'an unknown role "root"',
        header: async () => `Bearer ${await handMade(validClaims({ role: "root" }))}`,
        message: /role "root"/,
      },
      {
        name: "no role",
        header: async () => `Bearer ${await handMade(validClaims({ role: undefined }))}`,
        message: /role/,
      },
      {
        name: "no subject",
        header: async () => `Bearer ${await handMade(validClaims({ sub: undefined }))}`,
        message: /subject/,
      },
      {
        name: 'issuer "evil"',
        header: async () => `Bearer ${await handMade(validClaims({ iss: "evil" }))}`,
        message: /issuer/,
      },
      {
        name: "no expiry",
        header: async () => `Bearer ${await handMade(validClaims({ exp: undefined }))}`,
        message: /expiry/,
      },
    ];

    for (const t of badTokens) {
      it(`HTTP: ${t.name} -> 401 UNAUTHENTICATED`, async () => {
        const header = await t.header();
        // An operation every role may call, and one only admins may: a bad
        // token is refused as unauthenticated, never as forbidden.
        for (const [method, path, body] of [
          ["GET", "/v1/warehouses", undefined],
          ["POST", "/v1/warehouses", { name: "X", address: "x", lat: 1, long: 1 }],
        ] as const) {
          const r = await h.http.call(method, path, {
            headers: { authorization: header },
            ...(body === undefined ? {} : { body }),
          });
          const answer = `${method} ${path} answered ${r.status} ${show(r.body)}`;
          expect({ status: r.status, code: r.body?.error?.code }, answer).toEqual({
            status: 401,
            code: "UNAUTHENTICATED",
          });
          expect(r.body.error.message, answer).toMatch(t.message);
        }
      });
    }

    // Tokens that travel as `Bearer <token>` (the gRPC client's form).
    const grpcTokens = badTokens.filter((t) => !/scheme|Bearer and/.test(t.name));
    for (const t of grpcTokens) {
      it(`gRPC: ${t.name} -> UNAUTHENTICATED`, async () => {
        const header = await t.header();
        const client = grpcAs(header.replace(/^Bearer /, ""));
        for (const [service, method, request] of [
          [CatalogService, "listWarehouses", {}],
          [
            InventoryService,
            "receiveStock",
            { productId: product, warehouseId: warehouse, quantity: 1n },
          ],
        ] as const) {
          const e = await client.call(service, method, request).then(
            (res: unknown): GrpcFailure => {
              throw new Error(`the call succeeded: ${show(res)}`);
            },
            (x: GrpcFailure) => x,
          );
          const answer = `${service.name}.${method} answered ${show(e)}`;
          expect({ code: GrpcStatus[e.code], reason: e.reason }, answer).toEqual({
            code: "UNAUTHENTICATED",
            reason: "UNAUTHENTICATED",
          });
          expect(e.message, answer).toMatch(t.message);
        }
      });
    }

    it("a token signed by the server is good until it expires", async () => {
      const r = await h.http.get("/v1/warehouses", await h.token("someone", "customer"));
      expect(r.status).toBe(200);
    });
  });

  describe("customer isolation", () => {
    let alice: string;
    let bob: string;
    let aliceCart: string;
    let aliceOrder: string;
    let before: { cart: unknown; order: unknown; inventory: unknown };

    async function aliceState() {
      const [cart, order, inventory] = await Promise.all([
        h.http.get("/v1/cart/items", alice),
        h.http.get(`/v1/orders/${aliceOrder}`, alice),
        h.http.get(`/v1/inventory/${product}`, admin),
      ]);
      expect([cart.status, order.status, inventory.status]).toEqual([200, 200, 200]);
      return { cart: cart.body, order: order.body, inventory: inventory.body };
    }

    beforeAll(async () => {
      alice = await h.token("alice", "customer");
      bob = await h.token("bob", "customer");
      const added = await must(
        h.http.post("/v1/cart/items", alice, { productId: product, quantity: 3 }),
        200,
      );
      aliceCart = added.body.id;
      const order = await must(h.http.post(`/v1/checkout?cartId=${aliceCart}`, alice), 201);
      aliceOrder = order.body.id;
      expect(order.body).toMatchObject({ userId: "alice", status: "PENDING_PAYMENT" });
      before = await aliceState();
    });

    /** Bob's refusal does not say whose the order or cart is. */
    function expectNotFound(r: HttpAnswer, what: string) {
      const answer = `${what} answered ${r.status} ${show(r.body)}`;
      expect({ status: r.status, code: r.body?.error?.code }, answer).toEqual({
        status: 404,
        code: "NOT_FOUND",
      });
      expect(show(r.body), answer).not.toContain("alice");
    }

    it("Bob cannot see Alice's order", async () => {
      expectNotFound(await h.http.get(`/v1/orders/${aliceOrder}`, bob), "GET order");
      const unknown = await h.http.get("/v1/orders/ord_00000000-0000-0000-0000-000000000000", bob);
      // The same answer as for an order that does not exist.
      expect(unknown.status).toBe(404);
      expect(unknown.body.error.code).toBe("NOT_FOUND");
    });

    it("Bob cannot cancel Alice's order", async () => {
      expectNotFound(await h.http.post(`/v1/orders/${aliceOrder}/cancel`, bob), "cancel");
    });

    it("Bob cannot check out Alice's cart", async () => {
      expectNotFound(await h.http.post(`/v1/checkout?cartId=${aliceCart}`, bob), "checkout");
      expectNotFound(
        await h.http.post(`/v1/checkout?cartId=${aliceCart}`, bob, undefined, {
          "idempotency-key": "bob-1",
        }),
        "keyed checkout",
      );
    });

    it("Bob's cart is his own: another id, empty", async () => {
      const r = await h.http.get("/v1/cart/items", bob);
      expect(r.status).toBe(200);
      expect(r.body.id).not.toBe(aliceCart);
      expect(r.body).toMatchObject({ userId: "bob", items: [], total: 0 });
      expect(r.body.pendingOrderId).toBeUndefined();
    });

    it("Bob cannot pay Alice's order, nor see her reservation", async () => {
      const pay = await h.http.post(`/v1/orders/${aliceOrder}/payment`, bob, {
        status: "SUCCEEDED",
        paymentId: "bob-pays",
      });
      expect({ status: pay.status, code: pay.body?.error?.code }).toEqual({
        status: 403,
        code: "PERMISSION_DENIED",
      });
      const hold = (before.order as { reservationId: string }).reservationId;
      const r = await h.http.get(`/v1/reservations/${hold}`, bob);
      expect({ status: r.status, code: r.body?.error?.code }).toEqual({
        status: 403,
        code: "PERMISSION_DENIED",
      });
    });

    it("over gRPC too: Bob gets NOT_FOUND for Alice's order and cart", async () => {
      const client = grpcAs(bob);
      for (const [service, method, request] of [
        [OrderService, "getOrder", { id: aliceOrder }],
        [OrderService, "cancelOrder", { id: aliceOrder }],
        [OrderService, "checkout", { cartId: aliceCart }],
      ] as const) {
        const e = await client.call(service, method, request).then(
          (res: unknown): GrpcFailure => {
            throw new Error(`${method} succeeded: ${show(res)}`);
          },
          (x: GrpcFailure) => x,
        );
        expect({ code: GrpcStatus[e.code], reason: e.reason }, `${method}: ${show(e)}`).toEqual({
          code: "NOT_FOUND",
          reason: "NOT_FOUND",
        });
        expect(show(e)).not.toContain("alice");
      }
      const cart = await client.call(CartService, "getCart", {});
      expect(cart.cart.id).not.toBe(aliceCart);
      expect(cart.cart.items).toEqual([]);
    });

    it("customers cannot call the payment callback, not even for their own order", async () => {
      const own = await h.http.post(`/v1/orders/${aliceOrder}/payment`, alice, {
        status: "SUCCEEDED",
        paymentId: "alice-pays-herself",
      });
      expect({ status: own.status, code: own.body?.error?.code }).toEqual({
        status: 403,
        code: "PERMISSION_DENIED",
      });
      const e = await grpcAs(alice)
        .call(OrderService, "recordPayment", {
          orderId: aliceOrder,
          status: 1,
          paymentId: "alice-pays-herself",
        })
        .then(
          (res: unknown): GrpcFailure => {
            throw new Error(`recordPayment succeeded: ${show(res)}`);
          },
          (x: GrpcFailure) => x,
        );
      expect(e.reason).toBe("PERMISSION_DENIED");
      expect(GrpcStatus[e.code]).toBe("PERMISSION_DENIED");
    });

    it("service and admin can read Alice's order", async () => {
      for (const token of [service, admin]) {
        const r = await h.http.get(`/v1/orders/${aliceOrder}`, token);
        expect(r.status).toBe(200);
        expect(r.body).toEqual(before.order);
      }
      const g = await grpcAs(service).call(OrderService, "getOrder", { id: aliceOrder });
      expect(g.order.userId).toBe("alice");
    });

    it("after all of Bob's attempts, Alice's cart, order and stock are unchanged", async () => {
      expect(await aliceState()).toEqual(before);
    });
  });
});
