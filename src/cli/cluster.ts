import { createConnection, type Socket } from "node:net";
import { parseArgs } from "node:util";
import {
  connect,
  ErrorCode,
  type JetStreamManager,
  type KV,
  type NatsConnection,
  type StoredMsg,
} from "nats";
import {
  type ClusterNames,
  clusterNames,
  gatewayLeaseKey,
  Header,
  type LeaseValue,
  type NodeReport,
  nodeReportKey,
  partitionLeaseKey,
} from "../cluster/index.ts";
import { clusterName, natsUrls, parseOrUsage } from "./args.ts";
import type { Command } from "./command.ts";
import { parseDurationMs } from "./duration.ts";
import { CliFailure, ExitCode, UsageError } from "./errors.ts";
import { count } from "./output.ts";

// `stockd cluster status` and `stockd cluster snapshot`: a stockd cluster
// as NATS holds it (leases, stream, node reports), and the leader asked to
// publish snapshots. Neither needs a data directory.

const connectTimeoutMs = 5_000;
const snapshotTimeoutMs = 60_000;
const metaKey = "meta";

const statusUsage = `Usage: stockd cluster status --nats URL[,URL...] [--cluster NAME]
                             [--lease DURATION] [--json]

Shows a stockd cluster as NATS holds it: who leads, each partition's lease
(holder, KV revision, age), the epoch of its last journal batch, its last
journal sequence number, and how far each node that reports is behind. It
reads the cluster's stream and lease bucket and changes nothing.

Options (a flag wins over its environment variable):
  --nats URLS        NATS servers, comma-separated [STOCKD_NATS]
  --cluster NAME     the cluster [STOCKD_CLUSTER; default stockd]
  --lease DURATION   the cluster's lease time: a lease or node report
                     renewed longer ago than this (by the holder's wall
                     clock, so only a hint) is marked stale
                     [STOCKD_LEASE; default 3s]
  --json             one JSON object instead of the table
  -h, --help         this help

A partition's last journal seq is read from its last message in the
stream; when that message is a new leader's fence (it carries no seq), the
leader's own report is used instead, marked with '*'. A node's lag in a
partition is that seq minus the node's last seq there. LEASE-REV, the lease
key's revision, moves with every renewal; EPOCH is the epoch the last batch
was written with (the lease's revision when its writer took over).
`;

const snapshotUsage = `Usage: stockd cluster snapshot --nats URL[,URL...] [--cluster NAME] [--json]

Asks the cluster's leader to snapshot each partition (up to its last batch
in the stream), the records and the coordinator's decisions into the
cluster's object store, and to purge the stream below them; prints what it
published. It waits up to ${snapshotTimeoutMs / 1000} s for the answer, but stops sooner when
the leader's lease goes unrenewed for the lease time: no leader answered.

Options (a flag wins over its environment variable):
  --nats URLS        NATS servers, comma-separated [STOCKD_NATS]
  --cluster NAME     the cluster [STOCKD_CLUSTER; default stockd]
  --lease DURATION   how long to wait for a sign of a leader
                     [STOCKD_LEASE; default 3s]
  --json             the leader's answer as JSON
  -h, --help         this help
`;

const clusterUsage = `Usage: stockd cluster <subcommand> [options]

Subcommands:
  status    show who leads, each partition's lease, seq and the nodes' lag
  snapshot  ask the leader to publish snapshots and purge the stream

Run \`stockd cluster status --help\` for its options.
`;

// ---- settings -----------------------------------------------------------------

type Env = Record<string, string | undefined>;

export interface ClusterSettings {
  servers: string[];
  names: ClusterNames;
  leaseMs: number;
  json: boolean;
}

function setting(value: string | undefined, variable: string, env: Env): string | undefined {
  if (value !== undefined) return value;
  const fromEnv = env[variable];
  return fromEnv === undefined || fromEnv === "" ? undefined : fromEnv;
}

export function clusterSettings(argv: string[], env: Env): ClusterSettings {
  const { values } = parseOrUsage(() =>
    parseArgs({
      args: argv,
      options: {
        nats: { type: "string" },
        cluster: { type: "string" },
        lease: { type: "string" },
        json: { type: "boolean" },
      },
      strict: true,
      allowPositionals: false,
    }),
  );
  const nats = setting(values.nats, "STOCKD_NATS", env);
  if (nats === undefined) throw new UsageError("--nats URL is required");
  const servers = nats
    .split(",")
    .map((u) => u.trim())
    .filter((u) => u !== "");
  if (servers.length === 0) throw new UsageError("--nats needs at least one URL");
  natsUrls(servers);
  const name = clusterName("--cluster", setting(values.cluster, "STOCKD_CLUSTER", env) ?? "stockd");
  const lease = setting(values.lease, "STOCKD_LEASE", env);
  let leaseMs = 3_000;
  if (lease !== undefined) {
    const ms = parseDurationMs(lease);
    if (ms === null || ms < 1 || ms > 3_600_000) {
      throw new UsageError(`--lease must be a duration such as 500ms, 3s or 1m, not '${lease}'`);
    }
    leaseMs = ms;
  }
  return { servers, names: clusterNames(name), leaseMs, json: values.json ?? false };
}

// ---- NATS ------------------------------------------------------------------------

const message = (err: unknown) => (err instanceof Error ? err.message : String(err));

/** Where a --nats URL points: `nats://host:port`, `tls://host`, `host:port`. */
function hostPort(url: string): { host: string; port: number } {
  const u = new URL(/^[a-z]+:\/\//.test(url) ? url : `nats://${url}`);
  return { host: u.hostname.replace(/^\[(.*)\]$/, "$1"), port: Number(u.port || 4222) };
}

/** The servers that greet a connection as NATS servers do (INFO) within
 * `ms`, all tried at once (a TLS-first server: that takes the connection).
 * Done here rather than left to the client, whose connect timeout leaves
 * its socket open: a host that never answers would hold the CLI until the
 * system gives up on it, minutes later. */
async function reachable(servers: string[], ms: number): Promise<string[]> {
  const sockets: Socket[] = [];
  const errors: string[] = [];
  const ok = await Promise.all(
    servers.map(
      (server) =>
        new Promise<boolean>((resolve) => {
          const { host, port } = hostPort(server);
          const socket = createConnection({ host, port });
          sockets.push(socket);
          const done = (up: boolean, why = "") => {
            clearTimeout(timer);
            socket.removeAllListeners();
            socket.on("error", () => undefined);
            if (!up) errors.push(`${server}: ${why}`);
            resolve(up);
          };
          const timer = setTimeout(() => done(false, `no answer in ${ms / 1000} s`), ms);
          socket.once("connect", () => {
            if (server.startsWith("tls://")) done(true);
          });
          socket.once("data", (data: Buffer) => {
            if (data.toString("latin1", 0, 4) === "INFO") done(true);
            else done(false, "not a NATS server (it did not greet with INFO)");
          });
          socket.once("close", () => done(false, "closed the connection"));
          socket.once("error", (err: NodeJS.ErrnoException) =>
            done(false, err.code ?? err.message),
          );
        }),
    ),
  );
  for (const socket of sockets) socket.destroy();
  const up = servers.filter((_, i) => ok[i]);
  if (up.length === 0) {
    throw new CliFailure(`cannot reach NATS: ${errors.join("; ")}`, ExitCode.Failed);
  }
  return up;
}

/** Connects once (no reconnects: a CLI fails rather than waits). */
async function dial(s: ClusterSettings): Promise<NatsConnection> {
  const servers = await reachable(s.servers, connectTimeoutMs);
  try {
    return await connect({
      servers,
      name: `stockd cluster ${s.names.cluster}`,
      timeout: connectTimeoutMs,
      reconnect: false,
      maxReconnectAttempts: 0,
      ignoreClusterUpdates: true,
    });
  } catch (err) {
    throw new CliFailure(
      `cannot connect to NATS at ${servers.join(",")}: ${message(err)}`,
      ExitCode.Failed,
    );
  }
}

async function withConnection<T>(
  s: ClusterSettings,
  f: (nc: NatsConnection) => Promise<T>,
): Promise<T> {
  const nc = await dial(s);
  try {
    return await f(nc);
  } catch (err) {
    if (err instanceof CliFailure) throw err;
    throw new CliFailure(
      `cluster ${s.names.cluster} at ${s.servers.join(",")}: ${message(err)}`,
      ExitCode.Failed,
    );
  } finally {
    await nc.close().catch(() => undefined);
  }
}

const notFound = (err: unknown) => /not found/i.test(message(err));

/** The JetStream manager, after checking that the cluster's stream and
 * lease bucket exist: a mistyped --cluster or --nats is said as such. */
async function clusterManager(nc: NatsConnection, s: ClusterSettings): Promise<JetStreamManager> {
  const where = `no stockd cluster ${s.names.cluster} at ${s.servers.join(",")}`;
  let jsm: JetStreamManager;
  try {
    jsm = await nc.jetstreamManager({ timeout: connectTimeoutMs });
  } catch (err) {
    throw new CliFailure(
      `${where}: NATS has no usable JetStream (${message(err)})`,
      ExitCode.Failed,
    );
  }
  for (const [what, stream] of [
    ["stream", s.names.stream],
    ["lease bucket", `KV_${s.names.leases}`],
  ] as const) {
    try {
      await jsm.streams.info(stream);
    } catch (err) {
      if (notFound(err)) {
        throw new CliFailure(`${where} (no ${what} ${stream})`, ExitCode.Failed);
      }
      throw new CliFailure(`cannot read ${what} ${stream}: ${message(err)}`, ExitCode.Failed);
    }
  }
  return jsm;
}

async function entryJson<T>(kv: KV, key: string): Promise<{ value: T; revision: number } | null> {
  const e = await kv.get(key);
  if (e === null || e.operation !== "PUT") return null;
  try {
    return { value: e.json<T>(), revision: e.revision };
  } catch {
    return null; // not stockd's: shown as absent
  }
}

async function lastMessage(
  jsm: JetStreamManager,
  stream: string,
  subject: string,
): Promise<StoredMsg | null> {
  try {
    return await jsm.streams.getMessage(stream, { last_by_subj: subject });
  } catch (err) {
    if (/no message found/i.test(message(err))) return null;
    throw err;
  }
}

// ---- status ------------------------------------------------------------------------

export interface LeaseStatus {
  node: string;
  http: string;
  grpc: string;
  /** The KV revision: it moves with every renewal; a partition's epoch is
   * the revision its holder took it at. */
  revision: number;
  renewTimeMs: number;
  /** Now minus renewTimeMs, by this machine's clock and the holder's. */
  ageMs: number;
  stale: boolean;
}

/** A node's report (its per-partition seqs go into the partitions), aged. */
export interface NodeStatus extends Omit<NodeReport, "seqs"> {
  reportAgeMs: number;
  stale: boolean;
}

export interface PartitionStatus {
  partition: number;
  lease: LeaseStatus | null;
  /** The epoch of the partition's last journal batch in the stream (null
   * when its last message is a fence, or it has none). */
  epoch: number | null;
  /** The last journal seq, and where it was read. */
  lastSeq: number | null;
  lastSeqFrom: "stream" | "leader-report" | null;
  /** The partition's last message in the stream. */
  lastMessage: {
    streamSeq: number;
    kind: "batch" | "fence";
    node: string | null;
    /** A fence's epoch (the gateway lease's revision at that takeover). */
    fenceEpoch: number | null;
  } | null;
  nodes: { node: string; role: string; seq: number | null; lag: number | null }[];
}

export interface ClusterStatus {
  cluster: string;
  nats: string[];
  timeMs: number;
  leaseMs: number;
  partitionCount: number;
  idempotencyWindowMs: number | null;
  stream: {
    name: string;
    messages: number;
    bytes: number;
    firstSeq: number;
    lastSeq: number;
    subjects: number;
  };
  leader: LeaseStatus | null;
  nodes: NodeStatus[];
  partitions: PartitionStatus[];
}

function leaseStatus(
  e: { value: LeaseValue; revision: number } | null,
  nowMs: number,
  leaseMs: number,
): LeaseStatus | null {
  if (e === null) return null;
  const ageMs = nowMs - e.value.renewTimeMs;
  return {
    node: e.value.node,
    http: e.value.http,
    grpc: e.value.grpc,
    revision: e.revision,
    renewTimeMs: e.value.renewTimeMs,
    ageMs,
    stale: ageMs > leaseMs,
  };
}

async function readStatus(nc: NatsConnection, s: ClusterSettings): Promise<ClusterStatus> {
  const jsm = await clusterManager(nc, s);
  const names = s.names;
  const js = nc.jetstream({ timeout: connectTimeoutMs });
  const kv = await js.views.kv(names.leases, { bindOnly: true });
  // A key updated while the listing runs can be listed twice.
  const keySet = new Set<string>();
  for await (const k of await kv.keys()) keySet.add(k);
  const keys = [...keySet];
  const meta = await entryJson<{ partitionCount: number; idempotencyWindowMs: number }>(
    kv,
    metaKey,
  );
  // Without the metadata (a cluster being created), the leases say how many.
  const leased = keys
    .map((k) => /^lease\.p\.(\d+)$/.exec(k)?.[1])
    .filter((n) => n !== undefined)
    .map(Number);
  const partitionCount = meta?.value.partitionCount ?? Math.max(0, ...leased.map((n) => n + 1));
  const nodeNames = keys
    .filter((k) => k.startsWith("node."))
    .map((k) => k.slice("node.".length))
    .sort();
  const partitions = Array.from({ length: partitionCount }, (_, p) => p);
  const [info, gateway, leases, reports, lasts] = await Promise.all([
    jsm.streams.info(names.stream),
    entryJson<LeaseValue>(kv, gatewayLeaseKey),
    Promise.all(partitions.map((p) => entryJson<LeaseValue>(kv, partitionLeaseKey(p)))),
    Promise.all(nodeNames.map((n) => entryJson<NodeReport>(kv, nodeReportKey(n)))),
    Promise.all(partitions.map((p) => lastMessage(jsm, names.stream, names.partition(p)))),
  ]);
  const nowMs = Date.now();
  const nodes: NodeStatus[] = [];
  const seqsOf = new Map<string, number[]>();
  for (const r of reports) {
    if (r === null) continue;
    const v = r.value;
    seqsOf.set(v.node, Array.isArray(v.seqs) ? v.seqs : []);
    const reportAgeMs = nowMs - v.updateTimeMs;
    nodes.push({
      node: v.node,
      role: v.role,
      http: v.http,
      grpc: v.grpc,
      pid: v.pid,
      host: v.host,
      appliedStreamSeq: v.appliedStreamSeq,
      lagMs: v.lagMs,
      updateTimeMs: v.updateTimeMs,
      reportAgeMs,
      stale: reportAgeMs > s.leaseMs,
    });
  }
  const leader = leaseStatus(gateway, nowMs, s.leaseMs);
  return {
    cluster: names.cluster,
    nats: s.servers,
    timeMs: nowMs,
    leaseMs: s.leaseMs,
    partitionCount,
    idempotencyWindowMs: meta?.value.idempotencyWindowMs ?? null,
    stream: {
      name: names.stream,
      messages: info.state.messages,
      bytes: info.state.bytes,
      firstSeq: info.state.first_seq,
      lastSeq: info.state.last_seq,
      subjects: info.state.num_subjects ?? 0,
    },
    leader,
    nodes,
    partitions: partitions.map((p) => {
      const lease = leaseStatus(leases[p] ?? null, nowMs, s.leaseMs);
      const m = lasts[p] ?? null;
      const fence = m?.header?.get(Header.Fence) ?? "";
      let lastSeq: number | null = null;
      let lastSeqFrom: PartitionStatus["lastSeqFrom"] = null;
      let epoch: number | null = null;
      if (m !== null && fence === "") {
        const last = Number((m.header?.get(Header.Seq) ?? "").split("-")[1]);
        if (Number.isSafeInteger(last)) {
          lastSeq = last;
          lastSeqFrom = "stream";
        }
        const e = Number(m.header?.get(Header.Epoch));
        epoch = Number.isSafeInteger(e) && e > 0 ? e : null;
      }
      if (lastSeq === null) {
        // A fence (or nothing): the partition's leader says how far it is.
        const holder = lease?.node ?? leader?.node;
        const seq = holder === undefined ? undefined : seqsOf.get(holder)?.[p];
        if (typeof seq === "number") {
          lastSeq = seq;
          lastSeqFrom = "leader-report";
        } else if (m === null) {
          lastSeq = 0; // nothing was ever written, or it was all purged
          lastSeqFrom = "stream";
        }
      }
      return {
        partition: p,
        lease,
        epoch,
        lastSeq,
        lastSeqFrom,
        lastMessage:
          m === null
            ? null
            : {
                streamSeq: m.seq,
                kind: fence === "" ? "batch" : "fence",
                node: m.header?.get(Header.Node) || null,
                fenceEpoch: fence === "" ? null : Number(fence),
              },
        nodes: nodes.map((n) => {
          const seq = seqsOf.get(n.node)?.[p];
          const known = typeof seq === "number";
          return {
            node: n.node,
            role: n.role,
            seq: known ? seq : null,
            lag: known && lastSeq !== null ? lastSeq - seq : null,
          };
        }),
      };
    }),
  };
}

/** 850 -> "0.9s", 75_000 -> "1m15s"; negative (clock skew) as "-0.2s". */
function ageText(ms: number): string {
  const sign = ms < 0 ? "-" : "";
  const a = Math.abs(ms);
  if (a < 10_000) return `${sign}${(a / 1000).toFixed(1)}s`;
  if (a < 60_000) return `${sign}${Math.round(a / 1000)}s`;
  if (a < 3_600_000) return `${sign}${Math.floor(a / 60_000)}m${Math.floor((a % 60_000) / 1000)}s`;
  if (a < 86_400_000)
    return `${sign}${Math.floor(a / 3_600_000)}h${Math.floor((a % 3_600_000) / 60_000)}m`;
  return `${sign}${Math.floor(a / 86_400_000)}d`;
}

/** Rows of cells as columns, each as wide as its widest cell; numbers
 * (and "-") right-aligned. */
function table(rows: string[][]): string[] {
  const widths: number[] = [];
  for (const row of rows) {
    row.forEach((cell, i) => {
      widths[i] = Math.max(widths[i] ?? 0, cell.length);
    });
  }
  return rows.map((row, r) =>
    row
      .map((cell, i) => {
        const w = widths[i]!;
        const right = r > 0 && /^-?[\d,]+\*?$|^-$|^\?$/.test(cell);
        return right ? cell.padStart(w) : cell.padEnd(w);
      })
      .join("  ")
      .trimEnd(),
  );
}

export function statusText(st: ClusterStatus): string {
  const out: string[] = [];
  const stale = (x: { stale: boolean }) => (x.stale ? ", stale" : "");
  out.push(`cluster ${st.cluster} at ${st.nats.join(",")}`);
  const l = st.leader;
  out.push(
    l === null
      ? "leader: none (no gateway lease)"
      : `leader: ${l.node} (HTTP ${l.http}, gRPC ${l.grpc}), lease renewed ${ageText(l.ageMs)} ago${stale(l)}, revision ${l.revision}`,
  );
  out.push(
    `stream ${st.stream.name}: ${count(st.stream.messages)} messages, ${count(st.stream.bytes)} bytes, seq ${st.stream.firstSeq}..${st.stream.lastSeq}`,
  );
  if (st.nodes.length === 0) out.push("nodes: none has reported");
  else {
    out.push("nodes:");
    const rows = st.nodes.map((n) => [
      n.node,
      n.role,
      `pid ${n.pid} on ${n.host}`,
      `HTTP ${n.http}`,
      n.role === "leader" ? "" : `applied stream seq ${n.appliedStreamSeq}`,
      n.role === "leader" ? "" : `lag ${ageText(n.lagMs)}`,
      `report ${ageText(n.reportAgeMs)} ago${stale(n)}`,
    ]);
    for (const line of table([[], ...rows]).slice(1)) out.push(`  ${line}`);
  }
  out.push(`partitions (${st.partitionCount}; lag = events behind the last seq, per node):`);
  const head = [
    "P",
    "LEADER",
    "EPOCH",
    "LEASE-REV",
    "RENEWED",
    "LAST-SEQ",
    ...st.nodes.map((n) => n.node),
  ];
  const rows = st.partitions.map((p) => [
    String(p.partition),
    p.lease === null ? "-" : `${p.lease.node}${p.lease.stale ? " (stale)" : ""}`,
    p.epoch === null ? "-" : String(p.epoch),
    p.lease === null ? "-" : String(p.lease.revision),
    p.lease === null ? "-" : `${ageText(p.lease.ageMs)} ago`,
    p.lastSeq === null ? "?" : `${p.lastSeq}${p.lastSeqFrom === "leader-report" ? "*" : ""}`,
    ...p.nodes.map((n) => (n.lag === null ? "?" : String(n.lag))),
  ]);
  for (const line of table([head, ...rows])) out.push(`  ${line}`);
  if (st.partitions.some((p) => p.lastSeqFrom === "leader-report")) {
    out.push("  * last message is a fence: last seq from the leader's report");
  }
  if (st.partitions.some((p) => p.epoch === null && p.lastMessage?.kind === "fence")) {
    out.push("  EPOCH -: no batch since the last takeover's fence");
  }
  return `${out.join("\n")}\n`;
}

async function status(argv: string[]): Promise<number> {
  const s = clusterSettings(argv, process.env);
  const st = await withConnection(s, (nc) => readStatus(nc, s));
  process.stdout.write(s.json ? `${JSON.stringify(st, null, 2)}\n` : statusText(st));
  return ExitCode.Ok;
}

// ---- snapshot ------------------------------------------------------------------------

interface SnapshotAnswer {
  ok: boolean;
  node?: string;
  error?: string;
  partitions?: { partition: number; journalSeq: number; streamSeq: number; bytes: number }[];
  records?: { streamSeq: number } | null;
  coordinator?: { streamSeq: number } | null;
  purgedMessages?: number;
}

/** Rejects once the gateway lease has gone `leaseMs` without a renewal
 * (nobody leads, so nobody will answer); never resolves otherwise. */
async function noLeaderWithin(kv: KV, leaseMs: number, stopped: () => boolean): Promise<never> {
  let revision = (await kv.get(gatewayLeaseKey))?.revision ?? 0;
  let since = performance.now();
  for (;;) {
    await new Promise((r) => setTimeout(r, Math.min(250, leaseMs)));
    if (stopped()) return new Promise<never>(() => undefined);
    const e = await kv.get(gatewayLeaseKey);
    const r = e !== null && e.operation === "PUT" ? e.revision : 0;
    if (r !== revision && r !== 0) {
      revision = r;
      since = performance.now();
    } else if (performance.now() - since >= leaseMs) {
      const holder =
        r === 0
          ? "nobody holds the gateway lease"
          : `the leader's lease (revision ${r}) was not renewed in ${ageText(leaseMs)}`;
      throw new CliFailure(`no leader answered: ${holder}`, ExitCode.Failed);
    }
  }
}

async function askSnapshot(nc: NatsConnection, s: ClusterSettings): Promise<SnapshotAnswer> {
  await clusterManager(nc, s);
  const js = nc.jetstream({ timeout: connectTimeoutMs });
  const kv = await js.views.kv(s.names.leases, { bindOnly: true });
  let done = false;
  const request = nc
    .request(s.names.snapshotRequest, "", { timeout: snapshotTimeoutMs })
    .then((m) => m.json<SnapshotAnswer>())
    .catch((err: unknown) => {
      const code = (err as { code?: unknown }).code;
      if (code === ErrorCode.NoResponders) {
        throw new CliFailure(
          `no leader answered: no node of cluster ${s.names.cluster} is running`,
          ExitCode.Failed,
        );
      }
      if (code === ErrorCode.Timeout) {
        throw new CliFailure(
          `no leader answered within ${snapshotTimeoutMs / 1000} s`,
          ExitCode.Failed,
        );
      }
      throw err;
    });
  try {
    return await Promise.race([request, noLeaderWithin(kv, s.leaseMs, () => done)]);
  } finally {
    done = true;
    request.catch(() => undefined);
  }
}

export function snapshotText(a: SnapshotAnswer): string {
  const out = [`snapshots published by the leader, node ${a.node ?? "?"}:`];
  const parts = a.partitions ?? [];
  if (parts.length === 0) out.push("  partitions: none (no journal batch in the stream)");
  for (const p of parts) {
    out.push(
      `  partition ${p.partition}: journal seq ${p.journalSeq} (stream seq ${p.streamSeq}), ${count(p.bytes)} bytes`,
    );
  }
  const where = (x: { streamSeq: number } | null | undefined) =>
    x == null ? "none" : `stream seq ${x.streamSeq}`;
  out.push(`  records: ${where(a.records)}`);
  out.push(`  coordinator: ${where(a.coordinator)}`);
  out.push(`  purged ${count(a.purgedMessages ?? 0)} messages from the stream`);
  return `${out.join("\n")}\n`;
}

async function snapshot(argv: string[]): Promise<number> {
  const s = clusterSettings(argv, process.env);
  const answer = await withConnection(s, (nc) => askSnapshot(nc, s));
  if (s.json) {
    process.stdout.write(`${JSON.stringify(answer, null, 2)}\n`);
    if (!answer.ok) process.stderr.write(`stockd: the leader could not publish snapshots\n`);
    return answer.ok ? ExitCode.Ok : ExitCode.Failed;
  }
  if (!answer.ok) {
    throw new CliFailure(
      `the leader, node ${answer.node ?? "?"}, could not publish snapshots: ${answer.error ?? "no reason given"}`,
      ExitCode.Failed,
    );
  }
  process.stdout.write(snapshotText(answer));
  return ExitCode.Ok;
}

// ---- commands ------------------------------------------------------------------------

export const clusterStatusCommand: Command = {
  name: "cluster status",
  summary: "show who leads a cluster, each partition's lease and seq, the nodes' lag",
  usage: statusUsage,
  run: status,
};

export const clusterSnapshotCommand: Command = {
  name: "cluster snapshot",
  summary: "ask a cluster's leader to publish snapshots and purge the stream",
  usage: snapshotUsage,
  run: snapshot,
};

export const clusterSubcommands: readonly Command[] = [
  clusterStatusCommand,
  clusterSnapshotCommand,
];

/** `stockd cluster <subcommand>`: main.ts resolves the subcommand itself
 * (for its usage and help); `run` does the same for other callers. */
export const clusterCommand: Command = {
  name: "cluster",
  summary: "a NATS cluster: status (leases, seqs, lag), snapshot",
  usage: clusterUsage,
  async run(argv: string[]): Promise<number> {
    const [sub, ...rest] = argv;
    const command = clusterSubcommands.find((c) => c.name === `cluster ${sub}`);
    if (command === undefined) {
      throw new UsageError(
        sub === undefined ? "cluster needs a subcommand" : `unknown cluster subcommand '${sub}'`,
      );
    }
    return command.run(rest);
  },
};
