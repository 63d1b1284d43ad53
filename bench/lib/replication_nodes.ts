// The processes of the replication benchmark: stockd nodes (`bin/stockd.js
// serve`, alone in fsync mode or as cluster nodes over NATS JetStream) on
// data directories this module owns, so that a killed node can be started
// again on its own data; the NATS it uses (a nats-server started here, or
// one given by URL); the nodes' /readyz and /metrics; and the CPU time of
// several processes over a measured window.

import { mkdirSync, mkdtempSync, readdirSync, readFileSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { setTimeout as sleep } from "node:timers/promises";
import { connect } from "nats";
import { type NatsCluster, startNats } from "../../test/cluster/nats.ts";
import { type ServerChild, serverNodeArgs, startChild } from "./server_child.ts";

/** How long a node may take to lead or follow once it listens. */
const roleTimeoutMs = 60_000;

// ---- data directories --------------------------------------------------------------

const roots = new Set<string>();
process.on("exit", () => {
  for (const dir of roots) rmSync(dir, { recursive: true, force: true });
});

/** A temporary directory holding the nodes' data directories; removed on
 * exit whatever happens. */
export function dataRoot(): { dir(name: string): string; remove(): void } {
  const root = mkdtempSync(join(tmpdir(), "stockd-bench-replication-"));
  roots.add(root);
  return {
    dir(name) {
      const d = join(root, name);
      mkdirSync(d, { recursive: true });
      return d;
    },
    remove() {
      rmSync(root, { recursive: true, force: true });
      roots.delete(root);
    },
  };
}

// ---- NATS ----------------------------------------------------------------------------

export interface Nats {
  /** What the nodes get as --nats. */
  url: string;
  /** "started here (1 server)" or "given: URL". */
  description: string;
  /** The nats-server processes started here (for their CPU); empty for a
   * NATS given by URL. */
  pids: number[];
  /** Removes what a cluster left in the NATS (a given one), stops it (one
   * started here). */
  stop(clusterNames: string[]): Promise<void>;
}

/** A nats-server (or a cluster of 3) on free loopback ports, from the
 * tests' harness, or the NATS at `url`. */
export async function openNats(url: string | undefined, size: 1 | 3): Promise<Nats> {
  if (url !== undefined) {
    return {
      url,
      description: `given: ${url}`,
      pids: [],
      stop: (clusters) => removeClusters(url, clusters),
    };
  }
  const cluster: NatsCluster = await startNats({ size });
  return {
    url: cluster.url,
    description: `started here: ${size === 1 ? "1 nats-server" : "a cluster of 3 nats-servers"} (${cluster.url})`,
    pids: natsPids(cluster.dir),
    stop: () => cluster.stop(),
  };
}

/** The processes whose command line names a config file in `dir`: the
 * harness starts each server with `-c DIR/nI.conf`. */
function natsPids(dir: string): number[] {
  const pids: number[] = [];
  let entries: string[];
  try {
    entries = readdirSync("/proc");
  } catch {
    return pids;
  }
  for (const e of entries) {
    if (!/^\d+$/.test(e)) continue;
    try {
      const cmd = readFileSync(`/proc/${e}/cmdline`, "utf8");
      if (cmd.includes(`${dir}/n`) && cmd.includes(".conf")) pids.push(Number(e));
    } catch {
      // Gone meanwhile.
    }
  }
  return pids;
}

/** Deletes the stream, lease bucket and snapshot store of each cluster
 * (named as src/cluster/names.ts names them) from a NATS this run did not
 * start, so that runs leave nothing behind in it. */
async function removeClusters(url: string, clusters: string[]): Promise<void> {
  const nc = await connect({ servers: url.split(","), timeout: 5_000 });
  try {
    const jsm = await nc.jetstreamManager();
    for (const c of clusters) {
      for (const stream of [`STOCKD_${c}`, `KV_stockd_${c}_leases`, `OBJ_stockd_${c}_snapshots`]) {
        await jsm.streams.delete(stream).catch(() => false);
      }
    }
  } finally {
    await nc.close();
  }
}

// ---- stockd nodes ------------------------------------------------------------------------

export interface NodeSettings {
  jwtSecret: string;
  holdDuration: string;
  workerCount: number | undefined;
  partitionCount: number | undefined;
}

export interface ClusterSettings {
  nats: string;
  cluster: string;
  /** As --lease takes it: "3s". */
  lease: string;
}

export interface StockdNode {
  name: string;
  dataDir: string;
  child: ServerChild;
  httpUrl: string;
  grpcAddress: string;
}

/** The environment of a node: none of the caller's STOCKD_ variables (a
 * STOCKD_NATS would make the standalone node a cluster node), the secret. */
function nodeEnv(secret: string): Record<string, string> {
  const env: Record<string, string> = {};
  for (const k of Object.keys(process.env)) if (k.startsWith("STOCKD_")) env[k] = "";
  env.STOCKD_JWT_SECRET = secret;
  return env;
}

/**
 * Starts `stockd serve` on `dataDir` (kept when the node stops: a killed
 * node starts again on it). Alone: in fsync mode, started once ready.
 * In a cluster, `role` says what to wait for: "leader" (its "leading" log
 * line: the first node of a cluster takes every lease) or "follower"
 * (/readyz says so).
 */
export async function startNode(
  name: string,
  dataDir: string,
  s: NodeSettings,
  cluster: ClusterSettings | null,
  role: "leader" | "follower" | null,
): Promise<StockdNode> {
  const args = [
    ...serverNodeArgs(),
    "bin/stockd.js",
    "serve",
    ...["--data", dataDir, "--host", "127.0.0.1", "--http-port", "0", "--grpc-port", "0"],
    ...["--hold-duration", s.holdDuration],
  ];
  if (s.workerCount !== undefined) args.push("--workers", String(s.workerCount));
  if (s.partitionCount !== undefined) args.push("--partitions", String(s.partitionCount));
  if (cluster === null) args.push("--durability", "fsync");
  else {
    args.push("--nats", cluster.nats, "--cluster", cluster.cluster, "--node", name);
    args.push("--lease", cluster.lease);
  }
  const child = await startChild({
    name,
    args,
    env: nodeEnv(s.jwtSecret),
    ...(cluster === null
      ? { readyMsg: "ready" }
      : role === "leader"
        ? { readyMsg: "leading" }
        : {}),
  });
  const node: StockdNode = {
    name,
    dataDir,
    child,
    httpUrl: `http://127.0.0.1:${child.httpPort}`,
    grpcAddress: `127.0.0.1:${child.grpcPort}`,
  };
  try {
    if (role === "follower") await waitRole(node, "follower", roleTimeoutMs);
  } catch (err) {
    await child.stop();
    throw err;
  }
  return node;
}

/** SIGKILL; resolves once the process is gone (its data stays). */
export async function killNode(node: StockdNode): Promise<void> {
  try {
    process.kill(node.child.pid, "SIGKILL");
  } catch {
    // Already gone.
  }
  await node.child.stop();
}

export interface Readiness {
  status: string;
  role: string;
  detail: string;
}

export async function readyz(node: StockdNode): Promise<Readiness | null> {
  try {
    const res = await fetch(`${node.httpUrl}/readyz`, { signal: AbortSignal.timeout(1_000) });
    return (await res.json()) as Readiness;
  } catch {
    return null;
  }
}

export async function waitRole(node: StockdNode, role: string, timeoutMs: number): Promise<void> {
  const deadline = performance.now() + timeoutMs;
  let last: Readiness | null = null;
  for (;;) {
    last = await readyz(node);
    if (last?.role === role && last.status === "ready") return;
    if (performance.now() > deadline) {
      throw new Error(
        `${node.name} is not ${role} after ${timeoutMs} ms (last /readyz: ${JSON.stringify(last)})\n  ` +
          node.child.logTail().join("\n  "),
      );
    }
    await sleep(100);
  }
}

/** The node's log records so far with this msg, or all of them (its last
 * 40 lines only). */
export function logRecords(node: StockdNode, msg: string | null): Record<string, unknown>[] {
  const out: Record<string, unknown>[] = [];
  for (const line of node.child.logTail()) {
    if (!line.startsWith("{") || (msg !== null && !line.includes(msg))) continue;
    try {
      const r = JSON.parse(line) as Record<string, unknown>;
      if (msg === null || r.msg === msg) out.push(r);
    } catch {
      // Not a log record.
    }
  }
  return out;
}

// ---- /metrics -------------------------------------------------------------------------------

export interface LagReading {
  /** stockd_replication_lag_ms */
  lagMs: number;
  /** stockd_replication_lag_events, summed over partitions. */
  lagEvents: number;
}

/** The follower's replication gauges, from its /metrics; null when it did
 * not answer (or has no such gauge). */
export async function lagReading(node: StockdNode, timeoutMs = 1_000): Promise<LagReading | null> {
  let text: string;
  try {
    const res = await fetch(`${node.httpUrl}/metrics`, { signal: AbortSignal.timeout(timeoutMs) });
    if (!res.ok) return null;
    text = await res.text();
  } catch {
    return null;
  }
  let lagMs: number | null = null;
  let lagEvents = 0;
  for (const line of text.split("\n")) {
    if (line.startsWith("stockd_replication_lag_ms ")) {
      lagMs = Number(line.slice(line.lastIndexOf(" ") + 1));
    } else if (line.startsWith("stockd_replication_lag_events{")) {
      const v = Number(line.slice(line.lastIndexOf(" ") + 1));
      if (Number.isFinite(v)) lagEvents += v;
    }
  }
  return lagMs === null || !Number.isFinite(lagMs) ? null : { lagMs, lagEvents };
}

/** Counters of a node's journal and replication, from its /metrics. */
export interface NodeCounters {
  commits: number;
  events: number;
  commitSeconds: number;
  /** JetStream publishes acknowledged (a leader's), and their time. */
  publishes: number;
  publishSeconds: number;
}

/** The counters in a /metrics text. */
export function countersOf(text: string): NodeCounters {
  const value = (name: string) => {
    const line = text.split("\n").find((l) => l.startsWith(`${name} `));
    const v = line === undefined ? 0 : Number(line.slice(line.lastIndexOf(" ") + 1));
    return Number.isFinite(v) ? v : 0;
  };
  return {
    commits: value("stockd_journal_commits_total"),
    events: value("stockd_journal_events_total"),
    commitSeconds: value("stockd_journal_commit_seconds_total"),
    publishes: value("stockd_replication_publish_seconds_count"),
    publishSeconds: value("stockd_replication_publish_seconds_sum"),
  };
}
