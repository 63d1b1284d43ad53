import { hostname } from "node:os";
import { parseArgs } from "node:util";
import { type Logger, pino } from "pino";
import { ClusterConfigError } from "../cluster/index.ts";
import { limits } from "../engine/index.ts";
import { gatewayLimits } from "../gateway/index.ts";
import { parseTaxRate } from "../gateway/money.ts";
import { type Engine, type RecoveryReport, StartupError } from "../host/index.ts";
import type { Durability } from "../persistence/index.ts";
import { Server } from "../server.ts";
import { clusterName, natsUrls, parseOrUsage, wholeNumber } from "./args.ts";
import type { Command } from "./command.ts";
import { parseDurationMs } from "./duration.ts";
import { CliFailure, ExitCode, UsageError } from "./errors.ts";

const usage = `Usage: stockd serve [--data DIR] [--grpc-port N] [--http-port N] [--host ADDR]
                    [--workers N] [--partitions N] [--durability fsync|relaxed]
                    [--hold-duration DURATION] [--tax-rate PERCENT]
                    [--truncate-damaged-tail]
                    [--nats URL[,URL...] [--cluster NAME] [--node NAME]
                     [--lease DURATION] [--replicas N]
                     [--advertise-http URL] [--advertise-grpc HOST:PORT]]

Serves stockd: gRPC for services, HTTP/JSON for browsers and scripts. Both
listen at once (/healthz answers, /readyz says "not ready") while every
partition is recovered (newest snapshot, then the journal) and the holds
whose deadline passed while stockd was down expire; then requests are
served. On SIGTERM or SIGINT it stops accepting, finishes what is in flight,
flushes the journal and exits 0. Logs are JSON lines (pino) on stdout.

Options (a flag wins over its environment variable):
  --data DIR                data directory, created when new
                            [STOCKD_DATA; default ./data]
  --grpc-port N             gRPC port, 0 for any free one
                            [STOCKD_GRPC_PORT; default 50051]
  --http-port N             HTTP port, 0 for any free one
                            [STOCKD_HTTP_PORT; default 8080]
  --host ADDR               address to listen on [STOCKD_HOST; default 0.0.0.0]
  --tax-rate PERCENT        tax on carts and orders: 18, 18%, 7.25%
                            [STOCKD_TAX_RATE; default 18%]
  --workers N               worker threads; 0 runs the partitions in-process
                            [STOCKD_WORKERS; default: one per core but one
                            (the gateway's), at least one, at most
                            one per partition]
  --partitions N            partitions of a new data directory (fixed
                            afterwards) [STOCKD_PARTITIONS; default ${limits.partitionCountDefault}]
  --durability MODE         fsync: answer once the journal is synced to disk;
                            relaxed: once written, the sync right after
                            [STOCKD_DURABILITY; default fsync]
  --hold-duration DURATION  default hold duration: 500ms, 2s, 15m, 1h, 1h30m
                            [STOCKD_HOLD_DURATION; default 15m]
  --truncate-damaged-tail   start on a damaged journal by deleting the damaged
                            record and everything after it in its partition
                            (no environment variable: a deliberate act)

Cluster (replication over NATS JetStream; without --nats stockd runs alone):
  --nats URLS               NATS servers with JetStream, comma-separated
                            [STOCKD_NATS]
  --cluster NAME            the cluster to join [STOCKD_CLUSTER; default stockd]
  --node NAME               this node's name, unique in the cluster
                            [STOCKD_NODE; default the host name]
  --lease DURATION          partition lease time: a dead leader is replaced
                            after it (plus catching up) [STOCKD_LEASE; default 3s]
  --replicas N              JetStream replicas of the stream and buckets
                            [STOCKD_REPLICAS; default 3 on a NATS cluster, else 1]
  --advertise-http URL      the HTTP address followers name for the leader
  --advertise-grpc ADDR     the gRPC address followers name for the leader
                            [default: host name and bound ports]
  With --nats the durability is \`replicated\`: a write is answered once it
  is synced to the local journal and stored by JetStream.
  -h, --help                this help

The JWT signing secret is STOCKD_JWT_SECRET (at least 32 bytes), else
DIR/jwt.secret, generated on first start; \`stockd token\` prints tokens.
`;

export interface ServeSettings {
  dataDir: string;
  workerCount: number | undefined;
  partitionCount: number | undefined;
  durability: Durability;
  holdDurationMs: number;
  truncateDamagedTail: boolean;
  grpcPort: number;
  httpPort: number;
  host: string;
  taxRateBps: number;
  cluster:
    | {
        nats: string;
        name: string;
        node: string;
        leaseMs: number;
        replicas: number | undefined;
        advertiseHttp: string | undefined;
        advertiseGrpc: string | undefined;
      }
    | undefined;
}

type Env = Record<string, string | undefined>;

/** The flag's value, else the environment variable's (empty counts as
 * unset), named as the user wrote it for messages. */
function setting(flag: string, value: string | undefined, variable: string, env: Env) {
  if (value !== undefined) return { what: flag, text: value };
  const fromEnv = env[variable];
  if (fromEnv !== undefined && fromEnv !== "") return { what: variable, text: fromEnv };
  return undefined;
}

export function serveSettings(argv: string[], env: Env): ServeSettings {
  const { values } = parseOrUsage(() =>
    parseArgs({
      args: argv,
      options: {
        data: { type: "string" },
        workers: { type: "string" },
        partitions: { type: "string" },
        durability: { type: "string" },
        "hold-duration": { type: "string" },
        "truncate-damaged-tail": { type: "boolean" },
        "grpc-port": { type: "string" },
        "http-port": { type: "string" },
        host: { type: "string" },
        "tax-rate": { type: "string" },
        nats: { type: "string" },
        cluster: { type: "string" },
        node: { type: "string" },
        lease: { type: "string" },
        replicas: { type: "string" },
        "advertise-http": { type: "string" },
        "advertise-grpc": { type: "string" },
      },
      strict: true,
      allowPositionals: false,
    }),
  );
  const data = setting("--data", values.data, "STOCKD_DATA", env);
  if (data?.text === "") throw new UsageError("--data must not be empty");
  const workers = setting("--workers", values.workers, "STOCKD_WORKERS", env);
  const partitions = setting("--partitions", values.partitions, "STOCKD_PARTITIONS", env);
  const durability = setting("--durability", values.durability, "STOCKD_DURABILITY", env);
  const nats = setting("--nats", values.nats, "STOCKD_NATS", env);
  if (nats === undefined) {
    for (const flag of [
      "cluster",
      "node",
      "lease",
      "replicas",
      "advertise-http",
      "advertise-grpc",
    ] as const) {
      if (values[flag] !== undefined) throw new UsageError(`--${flag} needs --nats`);
    }
  }
  const modes = nats === undefined ? ["fsync", "relaxed"] : ["replicated"];
  if (durability !== undefined && !modes.includes(durability.text)) {
    throw new UsageError(
      nats === undefined
        ? `${durability.what} must be fsync or relaxed, not '${durability.text}'` +
            (durability.text === "replicated" ? " (replicated needs --nats)" : "")
        : `with --nats the durability is replicated, not '${durability.text}'`,
    );
  }
  const hold = setting("--hold-duration", values["hold-duration"], "STOCKD_HOLD_DURATION", env);
  const grpcPort = setting("--grpc-port", values["grpc-port"], "STOCKD_GRPC_PORT", env);
  const httpPort = setting("--http-port", values["http-port"], "STOCKD_HTTP_PORT", env);
  const host = setting("--host", values.host, "STOCKD_HOST", env);
  const tax = setting("--tax-rate", values["tax-rate"], "STOCKD_TAX_RATE", env);
  const taxRateBps = tax === undefined ? gatewayLimits.taxRateBpsDefault : parseTaxRate(tax.text);
  if (taxRateBps === null) {
    throw new UsageError(
      `${tax?.what} must be a percentage from 0 to 100 such as 18 or 7.25%, not '${tax?.text}'`,
    );
  }
  return {
    grpcPort: grpcPort === undefined ? 50051 : wholeNumber(grpcPort.what, grpcPort.text, 0, 65535),
    httpPort: httpPort === undefined ? 8080 : wholeNumber(httpPort.what, httpPort.text, 0, 65535),
    host: host?.text ?? "0.0.0.0",
    taxRateBps,
    dataDir: data?.text ?? "./data",
    workerCount: workers && wholeNumber(workers.what, workers.text, 0, limits.partitionCountMax),
    partitionCount:
      partitions && wholeNumber(partitions.what, partitions.text, 1, limits.partitionCountMax),
    // With --nats the local journal is fsynced and JetStream must store each write too.
    durability: (nats === undefined ? (durability?.text ?? "fsync") : "fsync") as Durability,
    holdDurationMs:
      hold === undefined ? limits.holdDurationMsDefault : holdDuration(hold.what, hold.text),
    truncateDamagedTail: values["truncate-damaged-tail"] ?? false,
    cluster: nats === undefined ? undefined : clusterSettings(nats.text, values, env),
  };
}

function clusterSettings(
  natsText: string,
  values: Record<string, string | boolean | undefined>,
  env: Env,
): NonNullable<ServeSettings["cluster"]> {
  const str = (flag: string, variable: string) =>
    setting(`--${flag}`, values[flag] as string | undefined, variable, env);
  const urls = natsUrls(natsText.split(",").map((u) => u.trim()));
  const name = clusterName("--cluster", str("cluster", "STOCKD_CLUSTER")?.text ?? "stockd");
  const node = clusterName(
    "--node",
    str("node", "STOCKD_NODE")?.text ?? hostname().replace(/[^A-Za-z0-9_-]/g, "-"),
  );
  const lease = str("lease", "STOCKD_LEASE");
  let leaseMs = 3_000;
  if (lease !== undefined) {
    const ms = parseDurationMs(lease.text);
    if (ms === null || ms < 500 || ms > 60_000) {
      throw new UsageError(
        `${lease.what} must be a duration from 500ms to 1m, not '${lease.text}'`,
      );
    }
    leaseMs = ms;
  }
  const replicas = str("replicas", "STOCKD_REPLICAS");
  return {
    nats: urls.join(","),
    name,
    node,
    leaseMs,
    replicas: replicas && wholeNumber(replicas.what, replicas.text, 1, 5),
    advertiseHttp: str("advertise-http", "STOCKD_ADVERTISE_HTTP")?.text,
    advertiseGrpc: str("advertise-grpc", "STOCKD_ADVERTISE_GRPC")?.text,
  };
}

function holdDuration(what: string, text: string): number {
  const ms = parseDurationMs(text);
  if (ms === null) {
    throw new UsageError(
      `${what} must be a duration such as 500ms, 2s, 15m, 1h or 1h30m, not '${text}'`,
    );
  }
  if (ms < 1 || ms > limits.holdDurationMsMax) {
    throw new UsageError(
      `${what} must be between 1ms and ${limits.holdDurationMsMax / 3_600_000}h, not ${text}`,
    );
  }
  return ms;
}

async function run(argv: string[]): Promise<number> {
  const settings = serveSettings(argv, process.env);
  const logger = pino({ name: "stockd" });
  // Listening from the start: a signal during recovery stops stockd as soon
  // as the engine is open, cleanly, instead of killing it mid-recovery.
  const stop = stopSignal(logger);
  logger.info({ ...settings }, "starting");
  let server: Server;
  try {
    server = await Server.start({
      dataDir: settings.dataDir,
      host: settings.host,
      grpcPort: settings.grpcPort,
      httpPort: settings.httpPort,
      durability: settings.durability,
      holdDurationMs: settings.holdDurationMs,
      truncateDamagedTail: settings.truncateDamagedTail,
      taxRateBps: settings.taxRateBps,
      logger,
      // Alone, a broken engine stops the process; in a cluster the node steps down.
      ...(settings.cluster === undefined ? { onBroken: () => stop.broken() } : {}),
      ...(settings.cluster === undefined
        ? {}
        : {
            cluster: {
              nats: settings.cluster.nats,
              name: settings.cluster.name,
              node: settings.cluster.node,
              leaseMs: settings.cluster.leaseMs,
              ...(settings.cluster.replicas === undefined
                ? {}
                : { replicas: settings.cluster.replicas }),
              ...(settings.cluster.advertiseHttp === undefined
                ? {}
                : { advertiseHttp: settings.cluster.advertiseHttp }),
              ...(settings.cluster.advertiseGrpc === undefined
                ? {}
                : { advertiseGrpc: settings.cluster.advertiseGrpc }),
            },
          }),
      onRecovered: (engine) => logRecovery(logger, engine.recovered, engine.reconciled),
      ...(settings.workerCount === undefined ? {} : { workerCount: settings.workerCount }),
      ...(settings.partitionCount === undefined ? {} : { partitionCount: settings.partitionCount }),
    });
  } catch (err) {
    stop.dispose();
    throw startFailure(logger, err, settings);
  }
  const signal = await stop.received;
  logger.info({ signal }, "stopping: finishing requests in flight, flushing the journal");
  await server.close();
  stop.dispose();
  return signal === "BROKEN" ? ExitCode.Failed : ExitCode.Ok;
}

function startFailure(logger: Logger, err: unknown, settings: ServeSettings): unknown {
  if (err instanceof ClusterConfigError) {
    logger.fatal({ err: err.message }, "cannot start");
    return new CliFailure(err.message, ExitCode.Failed);
  }
  if (!(err instanceof StartupError)) {
    logger.fatal({ err: (err as Error).message }, "cannot start");
    return err;
  }
  logger.fatal(
    { partition: err.partition, seq: err.seq, err: err.message },
    "journal damaged; not starting",
  );
  const hint = settings.truncateDamagedTail
    ? ""
    : " — start with --truncate-damaged-tail to drop it and everything after it in that partition";
  return new CliFailure(`${err.message}${hint}`, ExitCode.Damaged);
}

function logRecovery(
  logger: Logger,
  reports: RecoveryReport[],
  reconciled: Engine["reconciled"],
): void {
  let eventsReplayed = 0;
  let holdsExpiredAtStart = 0;
  for (const r of reports) {
    eventsReplayed += r.eventsReplayed;
    holdsExpiredAtStart += r.expiredAtStart;
    if (r.truncatedRecords > 0) {
      logger.warn(
        { partition: r.partition, truncatedRecords: r.truncatedRecords, seq: r.seq },
        "damaged journal tail dropped (--truncate-damaged-tail)",
      );
    }
    for (const detail of r.skippedSnapshots) {
      logger.warn({ partition: r.partition, detail }, "damaged snapshot skipped");
    }
    logger.debug({ ...r }, "partition recovered");
  }
  logger.info(
    {
      partitions: reports.length,
      eventsReplayed,
      holdsExpiredAtStart,
      snapshotSeqs: reports.map((r) => r.snapshotSeq),
      seqs: reports.map((r) => r.seq),
      reservationsAcrossPartitions: reconciled,
    },
    "recovered",
  );
}

/** Resolves on the first SIGTERM or SIGINT. A second one while the engine
 * closes exits at once: what was acknowledged is already durable. */
function stopSignal(logger: Logger) {
  let resolve: (signal: NodeJS.Signals | "BROKEN") => void = () => {};
  const received = new Promise<NodeJS.Signals | "BROKEN">((r) => {
    resolve = r;
  });
  let first: NodeJS.Signals | null = null;
  const onSignal = (signal: NodeJS.Signals) => {
    if (first !== null) {
      logger.warn({ signal }, "second signal: exiting without closing the engine");
      process.exit(ExitCode.Failed);
    }
    first = signal;
    resolve(signal);
  };
  // The engine's own handles keep the process alive in practice; this makes
  // "runs until a signal" not depend on them.
  const keepAlive = setInterval(() => {}, 1 << 30);
  process.on("SIGTERM", onSignal);
  process.on("SIGINT", onSignal);
  return {
    received,
    /** The engine broke down: stop as if signalled, and exit non-zero. */
    broken: () => resolve("BROKEN"),
    dispose: () => {
      clearInterval(keepAlive);
      process.off("SIGTERM", onSignal);
      process.off("SIGINT", onSignal);
    },
  };
}

export const serveCommand: Command = {
  name: "serve",
  summary: "serve gRPC and HTTP on a data directory until SIGTERM or SIGINT",
  usage,
  run,
};
