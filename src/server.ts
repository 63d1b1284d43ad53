import * as grpc from "@grpc/grpc-js";
import type { FastifyInstance } from "fastify";
import { type Logger, pino } from "pino";
import {
  Auth,
  buildGrpc,
  buildHttp,
  Catalog,
  gatewayLimits,
  Metrics,
  Orders,
  type Role,
  Service,
  Stock,
} from "./gateway/index.ts";
import { Engine } from "./host/index.ts";
import { type Durability, RecordStore } from "./persistence/index.ts";

// stockd as a server: the engine, the gateway's records and the two
// transports, wired together here and nowhere else. Both listeners open
// first, so /healthz answers and /readyz says "not ready" while the journal
// is recovered; requests are served once recovery is done.

export interface ServerOptions {
  dataDir: string;
  /** Address to listen on (default 0.0.0.0). */
  host?: string;
  /** 0 picks a free port (default 50051). */
  grpcPort?: number;
  /** 0 picks a free port (default 8080). */
  httpPort?: number;
  /** Engine worker threads (default: one per core but one, at least one). */
  workerCount?: number;
  partitionCount?: number;
  durability?: Durability;
  holdDurationMs?: number;
  truncateDamagedTail?: boolean;
  /** Tax on carts and orders, in basis points (default 1800: 18%). */
  taxRateBps?: number;
  /** JWT signing secret (else STOCKD_JWT_SECRET, else the data directory's). */
  jwtSecret?: string;
  logger?: Logger;
  queueCountMax?: number;
  /** Recovery waits for this first (tests: to see /readyz before ready). */
  startGate?: Promise<void>;
  /** Told when the engine has recovered, before the gateway's records. */
  onRecovered?: (engine: Engine) => void;
  /** Told once when the engine breaks down (every command then fails). */
  onBroken?: (why: string) => void;
}

export class Server {
  private service: Service | null = null;
  private engine: Engine | null = null;
  private records: RecordStore | null = null;
  private orders: Orders | null = null;
  private pruneTimer: NodeJS.Timeout | null = null;
  closing: Promise<void> | null = null;
  private status = { ready: false, role: "standalone", detail: "recovering" };

  private constructor(
    readonly logger: Logger,
    private readonly http: FastifyInstance,
    private readonly grpcServer: grpc.Server,
    private readonly health: { setStatus(service: string, s: "SERVING" | "NOT_SERVING"): void },
    readonly httpPort: number,
    readonly grpcPort: number,
    readonly metrics: Metrics,
  ) {}

  static async start(options: ServerOptions): Promise<Server> {
    const logger = options.logger ?? pino({ name: "stockd" });
    const host = options.host ?? "0.0.0.0";
    let server: Server | null = null;
    const metrics = new Metrics(() => server?.engine ?? null);
    const http = buildHttp({
      logger,
      metrics,
      service: () => server?.service ?? null,
      stopping: () => server?.closing != null,
      readiness: () => server?.status ?? { ready: false, role: "standalone", detail: "starting" },
    });
    const g = buildGrpc({ logger, metrics, service: () => server?.service ?? null });
    await http.listen({ host, port: options.httpPort ?? 8080 });
    let grpcPort: number;
    try {
      grpcPort = await bind(g.server, `${host}:${options.grpcPort ?? 50051}`);
    } catch (err) {
      await http.close();
      throw err;
    }
    const address = http.server.address();
    const httpPort = typeof address === "object" && address !== null ? address.port : 0;
    server = new Server(logger, http, g.server, g.health, httpPort, grpcPort, metrics);
    logger.info({ httpPort, grpcPort, host }, "listening");
    try {
      await server.recover(options);
    } catch (err) {
      await server.close();
      throw err;
    }
    return server;
  }

  private async recover(options: ServerOptions): Promise<void> {
    await options.startGate;
    const startMs = Date.now();
    const engine = await Engine.open({
      ...defined({
        partitionCount: options.partitionCount,
        workerCount: options.workerCount,
        holdDurationMs: options.holdDurationMs,
        queueCountMax: options.queueCountMax,
      }),
      dataDir: options.dataDir,
      // The gateway's transports run on the main thread: leave it a core.
      spareCoreCount: 1,
      durability: options.durability ?? "fsync",
      truncateDamagedTail: options.truncateDamagedTail ?? false,
      onBroken: (why) => {
        this.logger.fatal({ why }, "engine broke down: every command is refused UNAVAILABLE");
        this.status = { ready: false, role: this.status.role, detail: `broken: ${why}` };
        this.health.setStatus("", "NOT_SERVING");
        options.onBroken?.(why);
      },
    });
    this.engine = engine;
    options.onRecovered?.(engine);
    const records = RecordStore.open(options.dataDir, options.durability ?? "fsync");
    this.records = records;
    const auth = await Auth.open(
      options.dataDir,
      options.jwtSecret === undefined ? {} : { secret: options.jwtSecret },
    );
    const catalog = new Catalog(records);
    const holdDurationMs = options.holdDurationMs ?? 15 * 60_000;
    const stock = new Stock(engine, catalog, records, holdDurationMs);
    const orders = new Orders(records, catalog, stock, engine, {
      holdDurationMs,
      taxRateBps: options.taxRateBps ?? gatewayLimits.taxRateBpsDefault,
      now: Date.now,
      logger: this.logger,
    });
    this.orders = orders;
    const settled = await orders.recover();
    await stock.prune(Date.now(), engine.idempotencyWindowMs);
    this.pruneTimer = setInterval(
      () => void stock.prune(Date.now(), engine.idempotencyWindowMs).catch(() => undefined),
      3_600_000,
    );
    this.pruneTimer.unref();
    this.service = new Service(auth, catalog, stock, orders, Date.now);
    this.status = { ready: true, role: "standalone", detail: "serving" };
    this.health.setStatus("", "SERVING");
    this.logger.info(
      {
        ms: Date.now() - startMs,
        partitions: engine.partitionCount,
        warehouses: catalog.warehouseCount,
        products: catalog.productCount,
        orders: settled,
        reconciled: engine.reconciled,
      },
      "ready",
    );
  }

  /** A token this server accepts (tests, benchmarks). */
  token(sub: string, role: Role, ttlMs?: number): Promise<string> {
    if (this.service === null) throw new Error("server is not ready");
    return this.service.auth.sign({ sub, role }, ttlMs);
  }

  /** The engine behind the server (tests). */
  get stockEngine(): Engine {
    if (this.engine === null) throw new Error("server is not ready");
    return this.engine;
  }

  /**
   * Stops gracefully: no new requests or connections, the ones in flight
   * are finished, then the engine flushes its journal and closes.
   */
  close(): Promise<void> {
    this.closing ??= this.shutdown();
    return this.closing;
  }

  private async shutdown(): Promise<void> {
    this.status = { ...this.status, ready: false, detail: "stopping" };
    this.health.setStatus("", "NOT_SERVING");
    if (this.pruneTimer !== null) clearInterval(this.pruneTimer);
    await Promise.all([shutdownHttp(this.http), shutdownGrpc(this.grpcServer)]);
    this.orders?.close();
    await this.engine?.close();
    await this.records?.close();
    this.logger.info("stopped");
  }
}

/** The object without its undefined properties (exactOptionalPropertyTypes). */
function defined<T extends object>(o: T): { [K in keyof T]?: Exclude<T[K], undefined> } {
  return Object.fromEntries(Object.entries(o).filter(([, v]) => v !== undefined)) as {
    [K in keyof T]?: Exclude<T[K], undefined>;
  };
}

function bind(server: grpc.Server, address: string): Promise<number> {
  return new Promise((resolve, reject) => {
    server.bindAsync(address, grpc.ServerCredentials.createInsecure(), (err, port) => {
      if (err !== null) reject(err);
      else resolve(port);
    });
  });
}

/** Waits for requests in flight, at most 10 s, then cuts what is left
 * (a keep-alive connection would otherwise hold the stop for its timeout). */
function shutdownHttp(app: FastifyInstance): Promise<void> {
  return new Promise((resolve) => {
    const timer = setTimeout(() => {
      app.server.closeAllConnections();
      resolve();
    }, 10_000);
    app.close().then(() => {
      clearTimeout(timer);
      resolve();
    });
  });
}

/** Waits for calls in flight, at most 10 s, then cuts what is left. */
function shutdownGrpc(server: grpc.Server): Promise<void> {
  return new Promise((resolve) => {
    const timer = setTimeout(() => {
      server.forceShutdown();
      resolve();
    }, 10_000);
    server.tryShutdown(() => {
      clearTimeout(timer);
      resolve();
    });
  });
}
