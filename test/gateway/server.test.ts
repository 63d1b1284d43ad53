import { mkdtemp, rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import * as grpc from "@grpc/grpc-js";
import { pino } from "pino";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { CatalogService, ReservationService } from "../../src/gen/stockd/v1/api_pb.ts";
import { Server } from "../../src/server.ts";
import {
  GrpcClient,
  grpcFails,
  type Harness,
  secret,
  seed,
  settled,
  startServer,
} from "./support.ts";

// The server around the API: readiness, health, metrics, reflection, search
// paging, overload and a graceful stop.

describe("readiness", () => {
  it("listens at once, answers /healthz, and is ready only after recovery", async () => {
    const dataDir = await mkdtemp(join(tmpdir(), "stockd-ready-"));
    const lines: Record<string, unknown>[] = [];
    const logger = pino({ level: "info" }, { write: (l: string) => lines.push(JSON.parse(l)) });
    let open = () => {};
    const gate = new Promise<void>((r) => {
      open = r;
    });
    const starting = Server.start({
      dataDir,
      host: "127.0.0.1",
      grpcPort: 0,
      httpPort: 0,
      workerCount: 1,
      partitionCount: 4,
      jwtSecret: secret,
      logger,
      startGate: gate,
    });
    while (!lines.some((l) => l.msg === "listening")) await new Promise((r) => setTimeout(r, 10));
    const { httpPort, grpcPort } = lines.find((l) => l.msg === "listening") as {
      httpPort: number;
      grpcPort: number;
    };
    const base = `http://127.0.0.1:${httpPort}`;
    expect((await fetch(`${base}/healthz`)).status).toBe(200);
    const notReady = await fetch(`${base}/readyz`);
    expect(notReady.status).toBe(503);
    expect(await notReady.json()).toMatchObject({ status: "not ready" });
    const early = await fetch(`${base}/v1/products/x`);
    expect(early.status).toBe(503);
    expect(((await early.json()) as { error: { code: string } }).error.code).toBe("UNAVAILABLE");
    expect(await healthOf(grpcPort)).toBe("NOT_SERVING");
    open();
    const server = await starting;
    const ready = await fetch(`${base}/readyz`);
    expect(ready.status).toBe(200);
    expect(await ready.json()).toMatchObject({ status: "ready", role: "standalone" });
    expect(await healthOf(grpcPort)).toBe("SERVING");
    await server.close();
    expect(lines.at(-1)?.msg).toBe("stopped");
    await rm(dataDir, { recursive: true, force: true });
  });
});

describe("server", () => {
  let h: Harness;
  let admin: string;
  let service: string;
  let warehouse: string;
  let product: string;

  beforeAll(async () => {
    // Short windows of the workers' event-loop lag, so that the metrics test sees them.
    h = await startServer({ loopLagWindowMs: 200 });
    const s = await seed(h, {
      warehouses: [{ name: "Pune", lat: "18.5204° N", long: "73.8567° E" }],
      products: [{ name: "Kettle", description: "Electric kettle, 1.5 litre" }],
    });
    admin = s.admin;
    warehouse = s.warehouses[0]!;
    product = s.products[0]!;
    service = await h.token("svc", "service");
    await h.http.post("/v1/inventory/receipts", admin, {
      productId: product,
      warehouseId: warehouse,
      quantity: 1000,
    });
  });
  afterAll(() => h.stop());

  it("exports Prometheus metrics: requests by method, reservations, journal, queue depth", async () => {
    for (let i = 0; i < 3; i++) {
      await h.http.post("/v1/reservations", service, {
        lines: [{ productId: product, warehouseId: warehouse, quantity: 1 }],
      });
    }
    await h.http.post("/v1/reservations", service, {
      lines: [{ productId: product, warehouseId: warehouse, quantity: 5000 }],
    });
    // Each worker's first lag window has ended (200 ms, later on a loaded
    // machine): until then its lag has no figure to export.
    const r = await settled(
      () => h.http.get("/metrics"),
      (m) =>
        ((m.body as string).match(/^stockd_worker_event_loop_lag_max_seconds\{/gm) ?? []).length >=
        2,
    );
    expect(r.status).toBe(200);
    const text = r.body as string;
    expect(text).toMatch(/stockd_requests_total\{transport="http",method="Reserve",code="OK"\} 3/);
    expect(text).toMatch(
      /stockd_requests_total\{transport="http",method="Reserve",code="OUT_OF_STOCK"\} 1/,
    );
    expect(text).toMatch(/stockd_reservations_total\{outcome="HELD"\} 3/);
    expect(text).toMatch(
      /stockd_request_duration_seconds_bucket\{le="0.01",transport="http",method="Reserve"\} \d+/,
    );
    expect(text).toMatch(/stockd_journal_commits_total [1-9]/);
    expect(text).toMatch(/stockd_journal_commit_seconds_total /);
    // The commit-time histogram: cumulative buckets, +Inf = _count = commits.
    expect(text).toMatch(/# TYPE stockd_journal_commit_duration_seconds histogram/);
    const buckets = [
      ...text.matchAll(/stockd_journal_commit_duration_seconds_bucket\{le="([^"]+)"\} (\d+)/g),
    ].map((m) => [m[1], Number(m[2])] as const);
    expect(buckets.map(([le]) => le)).toEqual([
      ...["0.0005", "0.001", "0.002", "0.005", "0.01", "0.02", "0.05", "0.1", "0.25", "0.5", "1"],
      "+Inf",
    ]);
    for (let i = 1; i < buckets.length; i++) {
      expect(buckets[i]![1]).toBeGreaterThanOrEqual(buckets[i - 1]![1]);
    }
    const commits = Number(/stockd_journal_commits_total (\d+)/.exec(text)?.[1]);
    const count = Number(/stockd_journal_commit_duration_seconds_count (\d+)/.exec(text)?.[1]);
    expect(commits).toBeGreaterThan(0);
    expect(count).toBe(commits);
    expect(buckets.at(-1)![1]).toBe(commits);
    expect(text).toMatch(/stockd_journal_commit_duration_seconds_sum \d/);
    expect(text).toMatch(/stockd_worker_queue_depth\{worker="0"\} 0/);
    expect(text).toMatch(/stockd_worker_queue_depth\{worker="1"\} 0/);
    // Commands reached each worker in messages (the metrics' own reads among them).
    expect(text).toMatch(/stockd_worker_messages_total\{worker="0"\} [1-9]/);
    expect(text).toMatch(/stockd_worker_messages_total\{worker="1"\} [1-9]/);
    expect(text).toMatch(/stockd_expired_holds_total 0/);
    // Each worker's event-loop lag over its last window.
    for (const w of ["0", "1"]) {
      expect(text).toMatch(
        new RegExp(`stockd_worker_event_loop_lag_p99_seconds\\{worker="${w}"\\} \\d`),
      );
      expect(text).toMatch(
        new RegExp(`stockd_worker_event_loop_lag_max_seconds\\{worker="${w}"\\} \\d`),
      );
    }
    // The process's own: CPU, event-loop lag, garbage collection.
    expect(text).toMatch(/process_cpu_seconds_total \d/);
    expect(text).toMatch(/nodejs_eventloop_lag_p99_seconds \d/);
    expect(text).toMatch(/# TYPE nodejs_gc_duration_seconds histogram/);
  });

  it("serves gRPC reflection, so grpcurl needs no proto files", async () => {
    const client = new grpc.Client(
      `127.0.0.1:${h.server.grpcPort}`,
      grpc.credentials.createInsecure(),
    );
    const stream = client.makeBidiStreamRequest(
      "/grpc.reflection.v1.ServerReflection/ServerReflectionInfo",
      (b: Buffer) => b,
      (b: Buffer) => b,
    );
    const answer = new Promise<Buffer>((resolve, reject) => {
      stream.on("data", resolve);
      stream.on("error", reject);
    });
    // ServerReflectionRequest { list_services: "" } (field 7, length 0).
    stream.write(Buffer.from([0x3a, 0x00]));
    const bytes = (await answer).toString("latin1");
    stream.end();
    client.close();
    for (const s of ["Catalog", "Inventory", "Reservation", "Cart", "Order"]) {
      expect(bytes).toContain(`stockd.v1.${s}Service`);
    }
    expect(bytes).toContain("grpc.health.v1.Health");
  });

  it("pages through search results with cursors, over HTTP and gRPC", async () => {
    const names = Array.from({ length: 23 }, (_, i) => `Steel bottle ${i}`);
    for (const name of names) {
      await h.http.post("/v1/products", admin, {
        name,
        description: "Keeps water cold",
        price: 499.5,
        currency: "INR",
        category: "kitchen",
      });
    }
    await h.http.post("/v1/products", admin, {
      name: "Copper jug",
      description: "A bottle-free jug; keeps water cool",
      price: 900,
      currency: "INR",
      category: "kitchen",
    });
    const seen: string[] = [];
    let cursor: string | undefined;
    let pages = 0;
    do {
      const q = `/v1/products?keyword=bottle&pageSize=10${cursor ? `&cursor=${cursor}` : ""}`;
      const r = await h.http.get(q, admin);
      expect(r.status).toBe(200);
      seen.push(...r.body.products.map((p: { name: string }) => p.name));
      cursor = r.body.nextCursor;
      pages++;
      if (pages === 1) {
        // A product created between pages comes after every page given.
        await h.http.post("/v1/products", admin, {
          name: "Steel bottle late",
          description: "",
          price: 1,
          currency: "INR",
          category: "kitchen",
        });
      }
    } while (cursor !== undefined);
    expect(pages).toBe(3);
    expect(seen).toEqual([...names, "Copper jug", "Steel bottle late"]);
    // Words of the description, several words, any case.
    const byDescription = await h.http.get("/v1/products?keyword=COLD%20water&pageSize=100", admin);
    expect(byDescription.body.products).toHaveLength(23);
    expect(byDescription.body.products[0].price).toBe(499.5);
    const none = await h.http.get("/v1/products?keyword=teapot", admin);
    expect(none.body).toEqual({ products: [] });
    // gRPC: the same pages.
    const g = new GrpcClient(() => h.server.grpcPort, admin);
    const first = await g.call(CatalogService, "searchProducts", {
      keyword: "kettle",
      pageSize: 1,
    });
    expect(first.products.map((p: { name: string }) => p.name)).toEqual(["Kettle"]);
    expect(first.nextCursor).toBe("");
    const page1 = await g.call(CatalogService, "searchProducts", {
      keyword: "steel",
      pageSize: 20,
    });
    const page2 = await g.call(CatalogService, "searchProducts", {
      keyword: "steel",
      pageSize: 20,
      cursor: page1.nextCursor,
    });
    expect(page1.products).toHaveLength(20);
    expect(page2.products).toHaveLength(4);
    expect(page2.nextCursor).toBe("");
    const bad = await grpcFails(
      g.call(CatalogService, "searchProducts", { keyword: "kettle", cursor: page1.nextCursor }),
    );
    expect(bad.reason).toBe("INVALID_ARGUMENT");
    g.close();
  });
});

describe("overload", () => {
  let h: Harness;

  beforeAll(async () => {
    h = await startServer({ queueCountMax: 4, workerCount: 1 });
  });
  afterAll(() => h.stop());

  it("answers 429 / RESOURCE_EXHAUSTED at once when a worker's queue is full, and changes nothing for them", async () => {
    const { s, warehouse, product } = await stocked(h, 1000);
    const service = await h.token("svc", "service");
    const body = { lines: [{ productId: product, warehouseId: warehouse, quantity: 1 }] };
    const answers = await Promise.all(
      Array.from({ length: 300 }, () => h.http.post("/v1/reservations", service, body)),
    );
    const held = answers.filter((a) => a.status === 201).length;
    const refused = answers.filter((a) => a.status === 429);
    expect(held + refused.length).toBe(300);
    expect(refused.length).toBeGreaterThan(0);
    expect(refused[0]!.body.error.code).toBe("OVERLOADED");
    const inv = await h.http.get(`/v1/inventory/${product}`, s.admin);
    expect(inv.body).toMatchObject({ available: 1000 - held, reserved: held });

    const g = new GrpcClient(() => h.server.grpcPort, service);
    const calls = await Promise.allSettled(
      Array.from({ length: 300 }, () =>
        g.call(ReservationService, "reserve", {
          lines: [{ productId: product, warehouseId: warehouse, quantity: 1n }],
        }),
      ),
    );
    const rejected = calls.filter((c) => c.status === "rejected") as PromiseRejectedResult[];
    expect(rejected.length).toBeGreaterThan(0);
    for (const r of rejected) {
      expect(r.reason.code).toBe(grpc.status.RESOURCE_EXHAUSTED);
      expect(r.reason.reason).toBe("OVERLOADED");
    }
    g.close();
  });
});

/** A new product with `quantity` in a new warehouse. */
async function stocked(h: Harness, quantity: number) {
  const s = await seed(h, {
    warehouses: [{ name: "Goa", lat: "15.2993° N", long: "74.1240° E" }],
    products: [{ name: "Cashews" }],
  });
  const [warehouse, product] = [s.warehouses[0]!, s.products[0]!];
  await h.http.post("/v1/inventory/receipts", s.admin, {
    productId: product,
    warehouseId: warehouse,
    quantity,
  });
  return { s, warehouse, product };
}

/** A server of its own with one product, 10,000 in one warehouse. */
async function stockedServer() {
  const h = await startServer();
  return { h, ...(await stocked(h, 10_000)) };
}

describe("graceful stop", () => {
  it("finishes requests in flight and keeps every acknowledged one", async () => {
    const { h, s, warehouse, product } = await stockedServer();
    const g = new GrpcClient(() => h.server.grpcPort, await h.token("svc", "service"));
    const body = { lines: [{ productId: product, warehouseId: warehouse, quantity: 1n }] };
    await g.call(ReservationService, "reserve", body); // connect first
    const calls = Array.from({ length: 2000 }, () => g.call(ReservationService, "reserve", body));
    // Stop once the first answers arrive, with the rest in flight.
    await Promise.race(calls);
    const closing = h.server.close();
    const settled = await Promise.allSettled(calls);
    await closing;
    const ok = settled.filter((c) => c.status === "fulfilled").length;
    expect(ok).toBeGreaterThan(0);
    // The rest were refused cleanly as the server stopped, never cut off.
    for (const c of settled) {
      if (c.status === "rejected") expect(c.reason.code).toBe(grpc.status.UNAVAILABLE);
    }
    g.close();
    await h.restart();
    const inv = await h.http.get(`/v1/inventory/${product}`, s.admin);
    expect(inv.body.reserved).toBe(ok + 1);
    await h.stop();
  });
});

describe("graceful stop over HTTP", () => {
  it("answers the reservations in flight, refuses the rest in the error shape, keeps every 201", async () => {
    const { h, s, warehouse, product } = await stockedServer();
    const token = await h.token("svc", "service");
    const body = { lines: [{ productId: product, warehouseId: warehouse, quantity: 1 }] };
    // POST /v1/reservations as plainly well-formed requests take it: the
    // fast path in front of Fastify.
    const calls = Array.from({ length: 400 }, () => h.http.post("/v1/reservations", token, body));
    await Promise.race(calls);
    const closing = h.server.close();
    const settled = await Promise.allSettled(calls);
    await closing;
    let ok = 0;
    let cut = 0;
    for (const c of settled) {
      if (c.status === "rejected") {
        // Sent on a connection the stopping server had just closed: never
        // answered (fetch does not retry a POST).
        cut++;
        continue;
      }
      if (c.value.status === 201) {
        ok++;
        continue;
      }
      expect(c.value.status, JSON.stringify(c.value.body)).toBe(503);
      expect(c.value.body.error.code).toBe("UNAVAILABLE");
      expect(c.value.body.error.message).toMatch(/stopping|closed/);
    }
    expect(ok).toBeGreaterThan(0);
    await h.restart();
    const inv = await h.http.get(`/v1/inventory/${product}`, s.admin);
    // Every 201 is durable; a request cut off unanswered may or may not
    // have been held, and nothing else was.
    expect(inv.body.reserved).toBeGreaterThanOrEqual(ok);
    expect(inv.body.reserved).toBeLessThanOrEqual(ok + cut);
    expect(inv.body.available + inv.body.reserved).toBe(10_000);
    await h.stop();
  });
});

function healthOf(port: number): Promise<string> {
  const client = new grpc.Client(`127.0.0.1:${port}`, grpc.credentials.createInsecure());
  return new Promise((resolve, reject) => {
    // HealthCheckRequest { service: "" } is the empty message.
    client.makeUnaryRequest(
      "/grpc.health.v1.Health/Check",
      (b: Buffer) => b,
      (b: Buffer) => b,
      Buffer.alloc(0),
      (err, res) => {
        client.close();
        if (err) return reject(err);
        // HealthCheckResponse { status = 1 }: 1 SERVING, 2 NOT_SERVING.
        const status = res?.[1];
        resolve(status === 1 ? "SERVING" : status === 2 ? "NOT_SERVING" : `UNKNOWN ${status}`);
      },
    );
  });
}
