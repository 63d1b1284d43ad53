import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { InventoryService, ReservationService } from "../../src/gen/stockd/v1/api_pb.ts";
import { GrpcClient, grpcFails, type Harness, seed, startServer } from "./support.ts";

// Reservations end to end: contention, idempotency (also across a restart),
// warehouse choice, release and fulfil, batches — over HTTP and gRPC.

describe("reservations", () => {
  let h: Harness;
  let admin: string;
  let service: string;
  let warehouses: string[];
  let products: string[];
  let grpc: GrpcClient;

  beforeAll(async () => {
    h = await startServer();
    const s = await seed(h, {
      warehouses: [
        { name: "Bengaluru", lat: "12.9716° N", long: "77.5946° E" },
        { name: "Mumbai", lat: "19.0760° N", long: "72.8777° E" },
        { name: "Delhi", lat: "28.7041° N", long: "77.1025° E" },
      ],
      products: Array.from({ length: 9 }, (_, i) => ({ name: `Widget ${i}` })),
    });
    ({ admin, warehouses, products } = s);
    service = await h.token("checkout-svc", "service");
    grpc = new GrpcClient(() => h.server.grpcPort, service);
  });
  afterAll(async () => {
    grpc.close();
    await h.stop();
  });

  async function receive(product: string, warehouse: string, quantity: number) {
    const r = await h.http.post("/v1/inventory/receipts", admin, {
      productId: product,
      warehouseId: warehouse,
      quantity,
    });
    expect(r.status).toBe(200);
  }

  async function level(product: string) {
    const r = await h.http.get(`/v1/inventory/${product}`, admin);
    return r.body as {
      available: number;
      reserved: number;
      warehouses: { warehouseId: string; available: number; reserved: number }[];
    };
  }

  it("HTTP: 500 concurrent reservations of 1 unit against 100: exactly 100 succeed", async () => {
    const p = products[0]!;
    await receive(p, warehouses[0]!, 100);
    const answers = await Promise.all(
      Array.from({ length: 500 }, () =>
        h.http.post("/v1/reservations", service, {
          lines: [{ productId: p, warehouseId: warehouses[0], quantity: 1 }],
        }),
      ),
    );
    const held = answers.filter((a) => a.status === 201);
    const refused = answers.filter((a) => a.status === 409);
    expect(held).toHaveLength(100);
    expect(refused).toHaveLength(400);
    for (const r of refused) expect(r.body.error.code).toBe("OUT_OF_STOCK");
    expect(new Set(held.map((a) => a.body.id)).size).toBe(100);
    const l = await level(p);
    expect(l.available + l.reserved).toBe(100);
    expect(l).toMatchObject({ available: 0, reserved: 100 });
  });

  it("gRPC: 500 concurrent reservations of 1 unit against 100: exactly 100 succeed", async () => {
    const p = products[1]!;
    await receive(p, warehouses[1]!, 100);
    const answers = await Promise.allSettled(
      Array.from({ length: 500 }, () =>
        grpc.call(ReservationService, "reserve", {
          lines: [{ productId: p, warehouseId: warehouses[1]!, quantity: 1n }],
        }),
      ),
    );
    const held = answers.filter((a) => a.status === "fulfilled");
    const refused = answers.filter((a) => a.status === "rejected");
    expect(held).toHaveLength(100);
    for (const r of refused)
      expect((r as PromiseRejectedResult).reason.reason).toBe("OUT_OF_STOCK");
    const inv = await grpc.as(admin).call(InventoryService, "getInventory", { productId: p });
    expect(inv.levels).toHaveLength(1);
    expect(inv.levels[0].available + inv.levels[0].reserved).toBe(100n);
    expect(inv.levels[0].reserved).toBe(100n);
  });

  it("a reservation is idempotent by its key, also across a restart", async () => {
    const p = products[2]!;
    await receive(p, warehouses[0]!, 10);
    const body = { lines: [{ productId: p, quantity: 3 }] };
    const key = { "idempotency-key": "order-77" };
    const first = await h.http.post("/v1/reservations", service, body, key);
    expect(first.status).toBe(201);
    const again = await h.http.post("/v1/reservations", service, body, key);
    expect(again.status).toBe(201);
    expect(again.body).toEqual(first.body);
    expect(again.headers.get("idempotent-replayed")).toBe("true");
    expect((await level(p)).reserved).toBe(3);
    await h.restart();
    const after = await h.http.post("/v1/reservations", service, body, key);
    expect(after.status).toBe(201);
    expect(after.body).toEqual(first.body);
    expect((await level(p)).reserved).toBe(3);
    // The same key with other lines is the caller's bug.
    const other = await h.http.post(
      "/v1/reservations",
      service,
      { lines: [{ productId: p, quantity: 4 }] },
      key,
    );
    expect(other.status).toBe(422);
    expect(other.body.error.code).toBe("REQUEST_ID_REUSED");
    expect((await level(p)).reserved).toBe(3);
  });

  it("HTTP: the reservation fast path and the Fastify route answer alike, replays included", async () => {
    // A plainly well-formed POST /v1/reservations takes the fast path
    // (reserveFastPath); with a query string, or a media type spelled
    // otherwise, the same request goes through the Fastify route.
    const p = products[8]!;
    await receive(p, warehouses[1]!, 10);
    const body = { lines: [{ productId: p, quantity: 2 }], holdSeconds: 600 };
    const shape = (r: { status: number; body: Record<string, unknown>; headers: Headers }) => ({
      status: r.status,
      keys: Object.keys(r.body),
      status2: r.body.status,
      lines: r.body.lines,
      contentType: r.headers.get("content-type"),
      replayed: r.headers.get("idempotent-replayed"),
    });
    const fast = await h.http.post("/v1/reservations", service, body, {
      "idempotency-key": "fp-1",
    });
    const routed = await h.http.post("/v1/reservations?through=route", service, body, {
      "idempotency-key": "fp-2",
    });
    expect(fast.status).toBe(201);
    expect(shape(fast)).toEqual(shape(routed));
    expect(fast.body.lines).toEqual([{ productId: p, warehouseId: warehouses[1], quantity: 2 }]);
    // Hold for 600 s from now, by either path.
    for (const r of [fast, routed]) {
      const left = Date.parse(r.body.expiresAt) - Date.now();
      expect(left).toBeGreaterThan(590_000);
      expect(left).toBeLessThanOrEqual(600_000);
    }
    // A key first used on one path is replayed by the other, byte for byte.
    const replayRouted = await h.http.call("POST", "/v1/reservations?x=1", {
      token: service,
      body,
      headers: { "idempotency-key": "fp-1", "content-type": "Application/JSON" },
    });
    const replayFast = await h.http.post("/v1/reservations", service, body, {
      "idempotency-key": "fp-2",
    });
    expect(replayRouted.body).toEqual(fast.body);
    expect(replayFast.body).toEqual(routed.body);
    expect(shape(replayRouted)).toEqual(shape(replayFast));
    expect(replayFast.headers.get("idempotent-replayed")).toBe("true");
    expect((await level(p)).reserved).toBe(4);
    // Both count in the same metrics, under the same method.
    const metrics = await (await fetch(`http://127.0.0.1:${h.server.httpPort}/metrics`)).text();
    const served = metrics.match(
      /stockd_requests_total\{transport="http",method="Reserve",code="OK"\} (\d+)/,
    );
    expect(Number(served?.[1])).toBeGreaterThanOrEqual(4);
  });

  it("chooses the nearest warehouse with enough, else the one with most, and splits only when it must", async () => {
    const p = products[3]!;
    await receive(p, warehouses[0]!, 5); // Bengaluru
    await receive(p, warehouses[1]!, 20); // Mumbai
    await receive(p, warehouses[2]!, 8); // Delhi
    // No location: the most available (Mumbai).
    const most = await h.http.post("/v1/reservations", service, {
      lines: [{ productId: p, quantity: 2 }],
    });
    expect(most.body.lines).toEqual([{ productId: p, warehouseId: warehouses[1], quantity: 2 }]);
    // Shipping to Chennai: Bengaluru is nearest and has enough.
    const near = await h.http.post("/v1/reservations", service, {
      lines: [{ productId: p, quantity: 5 }],
      lat: "13.0827° N",
      long: "80.2707° E",
    });
    expect(near.body.lines).toEqual([{ productId: p, warehouseId: warehouses[0], quantity: 5 }]);
    // Now Bengaluru is empty: the next nearest with enough (Mumbai).
    const next = await h.http.post("/v1/reservations", service, {
      lines: [{ productId: p, quantity: 1 }],
      lat: 13.0827,
      long: 80.2707,
    });
    expect(next.body.lines[0].warehouseId).toBe(warehouses[1]);
    // 24 wanted, 17 in Mumbai and 8 in Delhi: split, nearest first.
    const split = await h.http.post("/v1/reservations", service, {
      lines: [{ productId: p, quantity: 24 }],
      lat: "28.6139° N",
      long: "77.2090° E",
    });
    expect(split.status).toBe(201);
    expect(split.body.lines).toEqual([
      { productId: p, warehouseId: warehouses[2], quantity: 8 },
      { productId: p, warehouseId: warehouses[1], quantity: 16 },
    ]);
    // Not enough anywhere: OUT_OF_STOCK naming the line and what there is
    // (lines whose warehouse stockd chooses are checked first).
    const none = await h.http.post("/v1/reservations", service, {
      lines: [
        { productId: products[4], warehouseId: warehouses[0], quantity: 1 },
        { productId: p, quantity: 2 },
      ],
    });
    expect(none.status).toBe(409);
    expect(none.body.error.code).toBe("OUT_OF_STOCK");
    expect(none.body.error.details).toMatchObject({ lineIndex: 1, productId: p, available: 1 });
    const l = await level(p);
    expect(l).toMatchObject({ available: 1, reserved: 32 });
  });

  it("lines in several partitions are all held or none", async () => {
    const [a, b, c] = [products[5]!, products[6]!, products[7]!];
    await receive(a, warehouses[0]!, 5);
    await receive(b, warehouses[0]!, 5);
    await receive(c, warehouses[0]!, 1);
    const refused = await h.http.post("/v1/reservations", service, {
      lines: [
        { productId: a, quantity: 2 },
        { productId: b, quantity: 2 },
        { productId: c, quantity: 2 },
      ],
    });
    expect(refused.status).toBe(409);
    expect(refused.body.error.details.lineIndex).toBe(2);
    for (const p of [a, b, c]) expect((await level(p)).reserved).toBe(0);
    const held = await h.http.post("/v1/reservations", service, {
      lines: [
        { productId: a, quantity: 2 },
        { productId: b, quantity: 2 },
        { productId: c, quantity: 1 },
      ],
    });
    expect(held.status).toBe(201);
    // Fulfil part of it: the rest goes back.
    const done = await h.http.post(`/v1/reservations/${held.body.id}/fulfil`, service, {
      quantities: [1, 2, 1],
    });
    expect(done.status).toBe(200);
    expect(done.body.status).toBe("FULFILLED");
    expect(await level(a)).toMatchObject({ available: 4, reserved: 0 });
    expect(await level(b)).toMatchObject({ available: 3, reserved: 0 });
    // Fulfilling again answers the same; releasing a fulfilled hold is refused.
    const again = await h.http.post(`/v1/reservations/${held.body.id}/fulfil`, service);
    expect(again.status).toBe(200);
    const release = await h.http.post(`/v1/reservations/${held.body.id}/release`, service);
    expect(release.status).toBe(409);
    expect(release.body.error.code).toBe("HOLD_FULFILLED");
  });

  it("release is idempotent and gives the stock back", async () => {
    const p = products[4]!;
    await receive(p, warehouses[2]!, 3);
    const r = await h.http.post("/v1/reservations", service, {
      lines: [{ productId: p, warehouseId: warehouses[2], quantity: 3 }],
      holdSeconds: 60,
    });
    expect(r.status).toBe(201);
    expect(Date.parse(r.body.expiresAt) - Date.now()).toBeGreaterThan(55_000);
    for (let i = 0; i < 2; i++) {
      const rel = await h.http.post(`/v1/reservations/${r.body.id}/release`, service);
      expect(rel.status).toBe(200);
      expect(rel.body.status).toBe("RELEASED");
    }
    expect((await level(p)).warehouses.find((w) => w.warehouseId === warehouses[2])).toMatchObject({
      available: 3,
      reserved: 0,
    });
    const get = await h.http.get(`/v1/reservations/${r.body.id}`, service);
    expect(get.body.status).toBe("RELEASED");
    const unknown = await h.http.post("/v1/reservations/999999999/release", service);
    expect(unknown.status).toBe(404);
    expect(unknown.body.error.code).toBe("HOLD_NOT_FOUND");
  });

  it("gRPC: a batch answers each reservation on its own, in order", async () => {
    const p = products[0]!;
    await receive(p, warehouses[2]!, 3);
    const requests = Array.from({ length: 5 }, () => ({
      lines: [{ productId: p, warehouseId: warehouses[2]!, quantity: 1n }],
    }));
    requests.push({ lines: [{ productId: "nope", warehouseId: warehouses[2]!, quantity: 1n }] });
    const res = await grpc.call(ReservationService, "reserveBatch", { requests });
    const cases = res.results.map((r: { result: { case: string } }) => r.result.case);
    expect(cases).toEqual(["ok", "ok", "ok", "error", "error", "error"]);
    expect(res.results[3].result.value.code).toBe("OUT_OF_STOCK");
    expect(res.results[5].result.value.code).toBe("NOT_FOUND");
    const empty = await grpcFails(grpc.call(ReservationService, "reserveBatch", { requests: [] }));
    expect(empty.reason).toBe("INVALID_ARGUMENT");
  });

  it("gRPC: a batch mixing chosen and named warehouses answers in order, each all or nothing", async () => {
    const p = products[7]!;
    await receive(p, warehouses[0]!, 2);
    await receive(p, warehouses[1]!, 5);
    const line = (warehouseId: string, quantity: bigint) => ({
      lines: [{ productId: p, warehouseId, quantity }],
    });
    const res = await grpc.call(ReservationService, "reserveBatch", {
      requests: [
        line(warehouses[0]!, 1n),
        line("", 4n), // stockd chooses: the warehouse with the most available
        line(warehouses[0]!, 2n), // only 1 left there
        line("", 100n), // not anywhere
        { lines: [{ productId: p, warehouseId: warehouses[0]!, quantity: 0n }] },
        line(warehouses[1]!, 1n),
      ],
    });
    const cases = res.results.map((r: { result: { case: string } }) => r.result.case);
    expect(cases).toEqual(["ok", "ok", "error", "error", "error", "ok"]);
    expect(res.results[1].result.value.reservation.lines[0].warehouseId).toBe(warehouses[1]);
    expect(res.results[2].result.value.code).toBe("OUT_OF_STOCK");
    expect(res.results[3].result.value.code).toBe("OUT_OF_STOCK");
    expect(res.results[4].result.value.code).toBe("INVALID_ARGUMENT");
    const byWarehouse = (await level(p)).warehouses;
    expect(byWarehouse.find((x) => x.warehouseId === warehouses[0])).toMatchObject({
      available: 1,
      reserved: 1,
    });
    expect(byWarehouse.find((x) => x.warehouseId === warehouses[1])).toMatchObject({
      available: 0,
      reserved: 5,
    });
  });
});
