import { hostname } from "node:os";
import * as grpc from "@grpc/grpc-js";
import type { FastifyInstance } from "fastify";
import { type Logger, pino } from "pino";
import { ClusterConfigError, ClusterNode, type DataMode, leaseMsDefault } from "./cluster/index.ts";
import { limits } from "./engine/index.ts";
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
import { type Durability, RecordStore, type RecordWrite } from "./persistence/index.ts";

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
  /** The window of the workers' event-loop lag figures (default 10 s). */
  loopLagWindowMs?: number;
  /** Recovery waits for this first (tests: to see /readyz before ready). */
  startGate?: Promise<void>;
  /** Told when the engine has recovered, before the gateway's records. */
  onRecovered?: (engine: Engine) => void;
  /** Told once when the engine breaks down (every command then fails). */
  onBroken?: (why: string) => void;
  /** Join a cluster over NATS JetStream (durability `replicated`). */
  cluster?: {
    /** NATS URLs, comma-separated. */
    nats: string;
    name: string;
    node: string;
    leaseMs?: number;
    replicas?: number;
    /** Addresses followers give clients for the leader (default: this
     * host's name and the bound ports). */
    advertiseHttp?: string;
    advertiseGrpc?: string;
  };
}

export class Server {
  private service: Service | null = null;
  private engine: Engine | null = null;
  private records: RecordStore | null = null;
  private orders: Orders | null = null;
  private pruneTimer: NodeJS.Timeout | null = null;
  closing: Promise<void> | null = null;
  private status = { ready: false, role: "standalone", detail: "recovering" };
  private options!: ServerOptions;
  private cluster: ClusterNode | null = null;

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
    this.options = options;
    const c = options.cluster;
    if (c === undefined) {
      await this.openData({ kind: "standalone" });
      return;
    }
    const env = process.env.STOCKD_JWT_SECRET;
    if (options.jwtSecret === undefined && (env === undefined || env === "")) {
      // A secret generated per node would make a token from one node fail on the next leader.
      throw new ClusterConfigError(
        "the nodes of a cluster must share their JWT signing secret: set STOCKD_JWT_SECRET on every node",
      );
    }
    const advertiseHost =
      options.host === undefined || options.host === "0.0.0.0" ? hostname() : options.host;
    this.cluster = await ClusterNode.start(this, {
      servers: c.nats,
      cluster: c.name,
      node: c.node,
      ...defined({ replicas: c.replicas, partitionCount: options.partitionCount }),
      leaseMs: c.leaseMs ?? leaseMsDefault,
      dataDir: options.dataDir,
      advertise: {
        http: c.advertiseHttp ?? `http://${advertiseHost}:${this.httpPort}`,
        grpc: c.advertiseGrpc ?? `${advertiseHost}:${this.grpcPort}`,
      },
      holdDurationMs: options.holdDurationMs ?? limits.holdDurationMsDefault,
      logger: this.logger,
      registry: this.metrics.registry,
    });
  }

  /** The cluster node this server runs (null when it runs alone). */
  get clusterNode(): ClusterNode | null {
    return this.cluster;
  }

  /** Opens the engine, the records and the gateway: alone, as a cluster
   * follower (reads only, no expiry, no recovery of orders) or as a leader. */
  async openData(
    mode: DataMode | { kind: "standalone" },
  ): Promise<{ engine: Engine; records: RecordStore; learn: (w: RecordWrite[]) => void }> {
    const options = this.options;
    const startMs = Date.now();
    const leader = mode.kind === "leader" ? mode : null;
    const engine = await Engine.open({
      ...defined({
        partitionCount: options.partitionCount,
        workerCount: options.workerCount,
        holdDurationMs: options.holdDurationMs,
        queueCountMax: options.queueCountMax,
        loopLagWindowMs: options.loopLagWindowMs,
        epochs: leader?.epochs,
        replicate: leader?.replicate,
      }),
      ...(leader === null ? {} : { coordinatorReplica: leader.coordinatorReplica }),
      follower: mode.kind === "follower",
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
        this.cluster?.engineBroken(why);
      },
    });
    this.engine = engine;
    options.onRecovered?.(engine);
    const records = RecordStore.open(options.dataDir, options.durability ?? "fsync");
    this.records = records;
    if (leader !== null) records.replica = leader.recordReplica(records);
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
    const service = new Service(auth, catalog, stock, orders, Date.now);
    const learn = (w: RecordWrite[]) => catalog.learn(w);
    if (mode.kind === "follower") {
      service.readOnly = mode.readOnly;
      this.service = service;
      return { engine, records, learn };
    }
    const settled = await orders.recover();
    await this.startPruning(stock, engine);
    this.service = service;
    if (mode.kind === "standalone") this.setRole("standalone", "serving");
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
    return { engine, records, learn };
  }

  /** Turns the follower's open data into the leader's, in place: nothing
   * is reloaded. Overdue holds expire, interrupted orders are re-driven,
   * pending orders get their deadlines, writes are accepted. */
  async promoteData(mode: Extract<DataMode, { kind: "leader" }>): Promise<void> {
    const engine = this.engine;
    const records = this.records;
    const orders = this.orders;
    const service = this.service;
    if (engine === null || records === null || orders === null || service === null) {
      throw new Error("nothing open to promote");
    }
    const startMs = Date.now();
    records.replica = mode.recordReplica(records);
    const { expired } = await engine.promote(mode);
    const settled = await orders.recover();
    await this.startPruning(service.stock, engine);
    service.readOnly = null;
    this.logger.info({ ms: Date.now() - startMs, expired, orders: settled }, "promoted in place");
  }

  /** Forgets request ids older than the idempotency window, now and hourly
   * (a leader's or a lone node's job: it writes). */
  private async startPruning(stock: Stock, engine: Engine): Promise<void> {
    await stock.prune(Date.now(), engine.idempotencyWindowMs);
    this.pruneTimer = setInterval(
      () => void stock.prune(Date.now(), engine.idempotencyWindowMs).catch(() => undefined),
      3_600_000,
    );
    this.pruneTimer.unref();
  }

  /** Closes what openData opened; requests meanwhile get 503. */
  async closeData(): Promise<void> {
    this.service = null;
    if (this.pruneTimer !== null) clearInterval(this.pruneTimer);
    this.pruneTimer = null;
    this.orders?.close();
    this.orders = null;
    await this.engine?.close();
    this.engine = null;
    await this.records?.close();
    this.records = null;
  }

  setRole(role: string, detail: string): void {
    const ready = role === "standalone" || role === "leader" || role === "follower";
    this.status = { ready, role, detail };
    this.health.setStatus("", ready ? "SERVING" : "NOT_SERVING");
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
    await Promise.all([shutdownHttp(this.http), shutdownGrpc(this.grpcServer)]);
    if (this.cluster !== null) await this.cluster.close();
    else await this.closeData();
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

/** How long a stopping server keeps reading its open connections, so that
 * requests already sent are refused in the error shape (503 "stockd is
 * stopping", `Connection: close`) instead of being cut off with their
 * connection. */
const httpDrainMs = 250;

/**
 * Stops HTTP gracefully: requests already on the wire are read and refused
 * (httpDrainMs), then the listener closes; requests in flight are finished,
 * each connection is closed once it has no request in flight, and whatever
 * is left after 10 s is cut.
 */
async function shutdownHttp(app: FastifyInstance): Promise<void> {
  const server = app.server;
  const open = await new Promise<number>((resolve) =>
    server.getConnections((err, n) => resolve(err === null ? n : 1)),
  );
  if (open > 0) await new Promise((resolve) => setTimeout(resolve, httpDrainMs));
  // A keep-alive connection whose last request finishes after the close
  // began is idle from then on: close it then, not after keepAliveTimeout.
  const idle = setInterval(() => server.closeIdleConnections(), 50);
  await new Promise<void>((resolve) => {
    const timer = setTimeout(() => {
      server.closeAllConnections();
      resolve();
    }, 10_000);
    app.close().then(() => {
      clearTimeout(timer);
      resolve();
    });
  });
  clearInterval(idle);
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
