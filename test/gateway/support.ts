import { mkdtemp, rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { create, type DescService, fromBinary } from "@bufbuild/protobuf";
import { anyUnpack } from "@bufbuild/protobuf/wkt";
import * as grpc from "@grpc/grpc-js";
import { pino } from "pino";
import { serviceDefinition } from "../../src/gateway/index.ts";
import { ErrorInfoSchema } from "../../src/gen/google/rpc/error_details_pb.ts";
import { StatusSchema } from "../../src/gen/google/rpc/status_pb.ts";
import { Server, type ServerOptions } from "../../src/server.ts";

// A real stockd server on loopback (ports 0, a temp data directory) and
// clients for both transports, for end-to-end tests.

export const secret = "test-secret-0123456789-abcdefghijklmnopqrstuvwxyz";

export interface Harness {
  server: Server;
  dataDir: string;
  http: Http;
  /** Starts the server again on the same data directory. */
  restart(options?: Partial<ServerOptions>): Promise<void>;
  token(sub: string, role: "admin" | "service" | "customer"): Promise<string>;
  stop(): Promise<void>;
}

export async function startServer(options: Partial<ServerOptions> = {}): Promise<Harness> {
  const dataDir = await mkdtemp(join(tmpdir(), "stockd-gw-"));
  const base: ServerOptions = {
    dataDir,
    host: "127.0.0.1",
    grpcPort: 0,
    httpPort: 0,
    workerCount: 2,
    partitionCount: 8,
    jwtSecret: secret,
    logger: pino({ level: "silent" }),
    ...options,
  };
  let server = await Server.start(base);
  const h: Harness = {
    server,
    dataDir,
    http: new Http(() => server.httpPort),
    async restart(more = {}) {
      await server.close();
      server = await Server.start({ ...base, ...more });
      h.server = server;
    },
    token: (sub, role) => server.token(sub, role),
    async stop() {
      await server.close();
      await rm(dataDir, { recursive: true, force: true });
    },
  };
  return h;
}

export interface HttpAnswer {
  status: number;
  // biome-ignore lint/suspicious/noExplicitAny: tests read answers by their documented shape
  body: any;
  headers: Headers;
}

export class Http {
  constructor(private readonly port: () => number) {}

  async call(
    method: string,
    path: string,
    options: {
      token?: string;
      body?: unknown;
      raw?: string;
      headers?: Record<string, string>;
    } = {},
  ): Promise<HttpAnswer> {
    const headers: Record<string, string> = { ...options.headers };
    if (options.token !== undefined) headers.authorization = `Bearer ${options.token}`;
    let body: string | undefined;
    if (options.raw !== undefined) body = options.raw;
    else if (options.body !== undefined) body = JSON.stringify(options.body);
    if (body !== undefined && headers["content-type"] === undefined) {
      headers["content-type"] = "application/json";
    }
    const res = await fetch(`http://127.0.0.1:${this.port()}${path}`, {
      method,
      headers,
      ...(body === undefined ? {} : { body }),
    });
    const text = await res.text();
    let parsed: unknown = text;
    try {
      parsed = JSON.parse(text);
    } catch {}
    return { status: res.status, body: parsed, headers: res.headers };
  }

  get(path: string, token?: string) {
    return this.call("GET", path, token === undefined ? {} : { token });
  }

  post(path: string, token: string | undefined, body?: unknown, headers?: Record<string, string>) {
    return this.call("POST", path, {
      ...(token === undefined ? {} : { token }),
      ...(body === undefined ? {} : { body }),
      ...(headers === undefined ? {} : { headers }),
    });
  }
}

/** A gRPC error with the ErrorInfo reason from the status details. */
export interface GrpcFailure {
  code: grpc.status;
  message: string;
  reason: string;
  metadata: Record<string, string>;
}

export class GrpcClient {
  private readonly clients = new Map<string, grpc.Client>();

  constructor(
    private readonly port: () => number,
    private token: string | undefined,
  ) {}

  as(token: string | undefined): GrpcClient {
    const c = new GrpcClient(this.port, token);
    return c;
  }

  /** Calls `method` (lowerCamel) of a service; rejects with a GrpcFailure. */
  // biome-ignore lint/suspicious/noExplicitAny: tests read answers by their documented shape
  call<T = any>(service: DescService, method: string, request: object): Promise<T> {
    const key = `${service.typeName}@${this.port()}`;
    let client = this.clients.get(key);
    if (client === undefined) {
      const Ctor = grpc.makeGenericClientConstructor(serviceDefinition(service), service.name);
      client = new Ctor(`127.0.0.1:${this.port()}`, grpc.credentials.createInsecure());
      this.clients.set(key, client);
    }
    const m = service.methods.find((x) => x.localName === method);
    if (m === undefined) throw new Error(`no method ${method} in ${service.typeName}`);
    const md = new grpc.Metadata();
    if (this.token !== undefined) md.set("authorization", `Bearer ${this.token}`);
    const fn = (client as unknown as Record<string, (...args: unknown[]) => void>)[method]!.bind(
      client,
    );
    return new Promise((resolve, reject) => {
      fn(create(m.input, request as never), md, (err: grpc.ServiceError | null, res: T) => {
        if (err === null) resolve(res);
        else reject(failureOf(err));
      });
    });
  }

  close(): void {
    for (const c of this.clients.values()) c.close();
  }
}

function failureOf(err: grpc.ServiceError): GrpcFailure {
  const bin = err.metadata?.get("grpc-status-details-bin")[0];
  let reason = "";
  let metadata: Record<string, string> = {};
  if (bin instanceof Buffer) {
    const status = fromBinary(StatusSchema, bin);
    const info = status.details[0] && anyUnpack(status.details[0], ErrorInfoSchema);
    if (info) {
      reason = info.reason;
      metadata = info.metadata;
    }
  }
  return { code: err.code, message: err.details, reason, metadata };
}

/** Resolves with the GrpcFailure of a call expected to fail. */
export async function grpcFails(p: Promise<unknown>): Promise<GrpcFailure> {
  try {
    await p;
  } catch (e) {
    return e as GrpcFailure;
  }
  throw new Error("the call succeeded; a failure was expected");
}

export const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

/** Sleeps until the wall clock is past `timeMs` (plus `marginMs`). */
export const sleepPast = (timeMs: number, marginMs = 100) =>
  sleep(Math.max(0, timeMs - Date.now()) + marginMs);

/**
 * Reads `probe` until `done` holds of its answer, at most `ms` (default
 * 10 s), and returns the last answer for the caller to assert on. For what
 * happens at a deadline through a timer, a worker and a synced write: on a
 * loaded machine that takes longer than any fixed sleep after the deadline.
 */
export async function settled<T>(
  probe: () => Promise<T>,
  done: (v: T) => boolean,
  ms = 10_000,
): Promise<T> {
  const deadline = Date.now() + ms;
  for (;;) {
    const v = await probe();
    if (done(v) || Date.now() > deadline) return v;
    await sleep(50);
  }
}

/** Seeds warehouses and products over HTTP; returns their ids. */
export async function seed(
  h: Harness,
  spec: {
    warehouses?: { name: string; lat: string; long: string }[];
    products?: { name: string; description?: string; price?: number; currency?: string }[];
  },
): Promise<{ admin: string; warehouses: string[]; products: string[] }> {
  const admin = await h.token("admin-1", "admin");
  const warehouses: string[] = [];
  for (const w of spec.warehouses ?? []) {
    const r = await h.http.post("/v1/warehouses", admin, { ...w, address: `${w.name} street` });
    if (r.status !== 201) throw new Error(`warehouse: ${r.status} ${JSON.stringify(r.body)}`);
    warehouses.push(r.body.id);
  }
  const products: string[] = [];
  for (const p of spec.products ?? []) {
    const r = await h.http.post("/v1/products", admin, {
      name: p.name,
      description: p.description ?? "",
      price: p.price ?? 100,
      currency: p.currency ?? "INR",
      category: "test",
    });
    if (r.status !== 201) throw new Error(`product: ${r.status} ${JSON.stringify(r.body)}`);
    products.push(r.body.id);
  }
  return { admin, warehouses, products };
}
