import { hostname } from "node:os";
import {
  connect,
  DiscardPolicy,
  type JetStreamClient,
  type JetStreamManager,
  type KV,
  type NatsConnection,
  nanos,
  type ObjectStore,
  RetentionPolicy,
  StorageType,
  type StreamConfig,
} from "nats";
import { type ClusterNames, clusterMetaKey, clusterNames, namePattern } from "./names.ts";

/** Whether JetStream refused a write because its subject (or key) no longer
 * ends where the writer expected: another writer appended meanwhile, or an
 * earlier try of the same write was stored with its answer lost. */
export function refusedAsNotLast(err: unknown): boolean {
  return /wrong last sequence/i.test((err as Error).message);
}

/** A cluster setting that cannot work, found at start-up: said clearly,
 * never a hang or a stack trace. */
export class ClusterConfigError extends Error {
  override name = "ClusterConfigError";
}

export interface ClusterOptions {
  /** NATS URLs, comma-separated. */
  servers: string;
  cluster: string;
  node: string;
  /** Stream, bucket and object-store replicas (default: 3 when the NATS
   * server is part of a cluster, else 1). */
  replicas?: number;
  /** How long to try to reach NATS and JetStream before giving up. */
  connectTimeoutMs?: number;
}

export interface ClusterMeta {
  partitionCount: number;
  idempotencyWindowMs: number;
}

/** An open connection to a cluster's NATS state. */
export interface ClusterLink {
  nc: NatsConnection;
  js: JetStreamClient;
  jsm: JetStreamManager;
  kv: KV;
  objects: ObjectStore;
  names: ClusterNames;
  node: string;
  replicas: number;
}

/**
 * Connects, checks that the node's name is free, and creates (or checks)
 * the stream, the lease bucket and the snapshot store.
 */
export async function openCluster(options: ClusterOptions): Promise<ClusterLink> {
  for (const [what, name] of [
    ["cluster", options.cluster],
    ["node", options.node],
  ] as const) {
    if (!namePattern.test(name)) {
      throw new ClusterConfigError(
        `${what} name ${JSON.stringify(name)} must be 1-64 letters, digits, '-' or '_'`,
      );
    }
  }
  const timeoutMs = options.connectTimeoutMs ?? 5_000;
  const servers = options.servers
    .split(",")
    .map((s) => s.trim())
    .filter((s) => s !== "");
  if (servers.length === 0) throw new ClusterConfigError("--nats needs at least one URL");
  let nc: NatsConnection;
  try {
    nc = await connect({
      servers,
      name: `stockd ${options.cluster}/${options.node}`,
      timeout: timeoutMs,
      maxReconnectAttempts: -1,
      reconnectTimeWait: 250,
      pingInterval: 2_000,
      // Each request would otherwise capture an Error for its stack: ~5% of
      // a leader's main thread under load, measured.
      noAsyncTraces: true,
    });
  } catch (err) {
    throw new ClusterConfigError(
      `cannot reach NATS at ${servers.join(",")}: ${(err as Error).message}`,
    );
  }
  try {
    return await setUp(nc, options, timeoutMs);
  } catch (err) {
    await nc.close().catch(() => undefined);
    throw err;
  }
}

async function setUp(
  nc: NatsConnection,
  options: ClusterOptions,
  timeoutMs: number,
): Promise<ClusterLink> {
  const names = clusterNames(options.cluster);
  await refuseTakenName(nc, names, options.node);
  const jsm = await jetStream(nc, timeoutMs);
  const replicas = options.replicas ?? (nc.info?.cluster === undefined ? 1 : 3);
  if (!(Number.isInteger(replicas) && replicas >= 1 && replicas <= 5)) {
    throw new ClusterConfigError("replicas must be 1..5");
  }
  await ensureStream(jsm, names, replicas);
  const js = nc.jetstream({ timeout: timeoutMs });
  const kv = await js.views.kv(names.leases, { history: 1, replicas });
  const objects = await js.views.os(names.snapshots, { replicas });
  // Answer "is this name taken?" for as long as this node runs.
  nc.subscribe(names.node(options.node), {
    callback: (_err, m) => {
      m.respond(JSON.stringify({ node: options.node, pid: process.pid, host: hostname() }));
    },
  });
  return { nc, js, jsm, kv, objects, names, node: options.node, replicas };
}

/** Two nodes with one name would each think the other's writes are its own. */
async function refuseTakenName(
  nc: NatsConnection,
  names: ClusterNames,
  node: string,
): Promise<void> {
  let answer: string;
  try {
    const m = await nc.request(names.node(node), "", { timeout: 750 });
    answer = m.string();
  } catch {
    return; // no responders, or nobody answered in time: the name is free
  }
  const who = JSON.parse(answer) as { pid: number; host: string };
  throw new ClusterConfigError(
    `node name ${JSON.stringify(node)} is already used in cluster ${names.cluster} ` +
      `by a running node (pid ${who.pid} on ${who.host}); give each node its own --node`,
  );
}

/** Waits for JetStream to answer (a new NATS cluster elects its meta leader
 * first), within the time allowed. */
async function jetStream(nc: NatsConnection, timeoutMs: number): Promise<JetStreamManager> {
  const deadline = Date.now() + timeoutMs;
  let last: Error | null = null;
  while (Date.now() < deadline) {
    try {
      const jsm = await nc.jetstreamManager({ timeout: Math.min(2_000, timeoutMs) });
      await jsm.getAccountInfo();
      return jsm;
    } catch (err) {
      last = err as Error;
      if (/not enabled/i.test(last.message)) break;
      await new Promise((r) => setTimeout(r, 250));
    }
  }
  throw new ClusterConfigError(
    `NATS at ${nc.getServer()} has no usable JetStream: ${last?.message ?? "timed out"}`,
  );
}

function wantedStream(names: ClusterNames, replicas: number): Partial<StreamConfig> {
  return {
    name: names.stream,
    subjects: names.subjects,
    storage: StorageType.File,
    retention: RetentionPolicy.Limits,
    discard: DiscardPolicy.Old,
    num_replicas: replicas,
    // A publish retried within this window is stored once.
    duplicate_window: nanos(120_000),
    // Leaders purge what snapshots cover; nothing else removes messages.
    max_msgs: -1,
    max_bytes: -1,
    max_age: 0,
    deny_delete: true,
    allow_direct: true,
  };
}

/** Creates the stream, or checks that the one there has stockd's settings:
 * a stream made otherwise would lose or reorder acknowledged writes. */
async function ensureStream(
  jsm: JetStreamManager,
  names: ClusterNames,
  replicas: number,
): Promise<void> {
  const wanted = wantedStream(names, replicas);
  let info: Awaited<ReturnType<JetStreamManager["streams"]["info"]>> | null = null;
  try {
    info = await jsm.streams.info(names.stream);
  } catch (err) {
    if (!/not found/i.test((err as Error).message)) throw err;
  }
  if (info === null) {
    await jsm.streams.add(wanted);
    return;
  }
  const c = info.config;
  const diffs: string[] = [];
  const same = (a: unknown, b: unknown) => JSON.stringify(a) === JSON.stringify(b);
  if (!same([...(c.subjects ?? [])].sort(), [...names.subjects].sort())) {
    diffs.push(
      `subjects ${JSON.stringify(c.subjects)} (stockd uses ${JSON.stringify(names.subjects)})`,
    );
  }
  for (const key of ["storage", "retention", "discard", "num_replicas", "max_age"] as const) {
    if (!same(c[key], wanted[key])) {
      diffs.push(`${key} ${JSON.stringify(c[key])} (stockd uses ${JSON.stringify(wanted[key])})`);
    }
  }
  if (c.max_msgs !== -1 || c.max_bytes !== -1 || (c.max_msgs_per_subject ?? -1) !== -1) {
    diffs.push(
      "a message or byte limit (stockd needs every message kept until a snapshot covers it)",
    );
  }
  if (diffs.length > 0) {
    throw new ClusterConfigError(
      `stream ${names.stream} exists with other settings: ${diffs.join("; ")}. ` +
        "Remove it or start stockd with matching --replicas.",
    );
  }
}

/** The cluster's fixed settings: written by the first node, checked by the rest. */
export async function clusterMeta(link: ClusterLink, mine: ClusterMeta): Promise<ClusterMeta> {
  const entry = await link.kv.get(clusterMetaKey);
  if (entry === null || entry.operation !== "PUT") {
    try {
      await link.kv.create(clusterMetaKey, JSON.stringify(mine));
      return mine;
    } catch {
      // Another node wrote it first: read theirs.
    }
  }
  const known = (await link.kv.get(clusterMetaKey))?.json<ClusterMeta>();
  if (known === undefined) throw new ClusterConfigError("cluster metadata could not be read");
  return known;
}
