import { mkdtemp, rm } from "node:fs/promises";
import { createServer } from "node:net";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { setTimeout as sleep } from "node:timers/promises";
import { connect } from "nats";
import { pino } from "pino";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import type { ClusterStatus } from "../../src/cli/cluster.ts";
import { partitionOf } from "../../src/engine/index.ts";
import { Server } from "../../src/server.ts";
import { type NatsCluster, startNats } from "../cluster/nats.ts";
import { Http, secret } from "../gateway/support.ts";
import { cli } from "./support.ts";

// `stockd cluster status` and `stockd cluster snapshot`, the real binary
// against a real nats-server and two in-process stockd nodes of cluster "t":
// "a" leads, "b" follows; then "a" stops and "b" takes over.

const partitionCount = 4;
const name = "t";

let nats: NatsCluster;
const dirs: string[] = [];
const servers = new Map<string, Server>();

async function startNode(node: string): Promise<Server> {
  const dataDir = await mkdtemp(join(tmpdir(), `stockd-cluster-${node}-`));
  dirs.push(dataDir);
  const server = await Server.start({
    dataDir,
    host: "127.0.0.1",
    grpcPort: 0,
    httpPort: 0,
    workerCount: 1,
    partitionCount,
    jwtSecret: secret,
    logger: pino({ level: "silent" }),
    cluster: { nats: nats.url, name, node, leaseMs: 1000 },
  });
  servers.set(node, server);
  return server;
}

async function stopNode(node: string): Promise<void> {
  await servers.get(node)?.close();
  servers.delete(node);
}

/** Polls until `f` returns a value (not undefined), or fails after `ms`. */
async function until<T>(what: string, ms: number, f: () => Promise<T | undefined>): Promise<T> {
  const deadline = Date.now() + ms;
  for (;;) {
    const v = await f();
    if (v !== undefined) return v;
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await sleep(200);
  }
}

const args = (...more: string[]) => ["--nats", nats.url, "--cluster", name, ...more];

async function status(...more: string[]): Promise<ClusterStatus> {
  const r = await cli(["cluster", "status", ...args("--json", "--lease", "1s", ...more)]);
  if (r.code !== 0) throw new Error(`cluster status failed (${r.code}): ${r.stderr}`);
  return JSON.parse(r.stdout) as ClusterStatus;
}

/** A port nothing listens on (free a moment ago). */
async function closedPort(): Promise<number> {
  const s = createServer();
  await new Promise<void>((resolve) => s.listen(0, "127.0.0.1", resolve));
  const address = s.address();
  await new Promise((resolve) => s.close(resolve));
  if (address === null || typeof address === "string") throw new Error("no port");
  return address.port;
}

beforeAll(async () => {
  nats = await startNats();
  const a = await startNode("a");
  const admin = await until("node a to lead", 30_000, async () =>
    a.clusterNode?.role === "leader"
      ? await a.token("ops", "admin").catch(() => undefined)
      : undefined,
  );
  // A receipt in every partition, so that each has a journal batch in the stream.
  const http = new Http(() => a.httpPort);
  const w = await until("the leader to take writes", 15_000, async () => {
    const r = await http.post("/v1/warehouses", admin, {
      name: "Bengaluru",
      address: "Bengaluru street",
      lat: "12.9716° N",
      long: "77.5946° E",
    });
    return r.status === 201 ? (r.body.id as string) : undefined;
  });
  const written = new Set<number>();
  for (let i = 0; written.size < partitionCount; i++) {
    if (i >= 64) throw new Error(`64 products landed only in partitions ${[...written]}`);
    const p = await http.post("/v1/products", admin, {
      name: `Widget ${i}`,
      description: "a widget",
      price: 100,
      currency: "INR",
      category: "test",
    });
    expect(p.status).toBe(201);
    const r = await http.post("/v1/inventory/receipts", admin, {
      productId: p.body.id,
      warehouseId: w,
      quantity: 10 + i,
    });
    expect(r.status).toBe(200);
    written.add(partitionOf(p.body.id as string, partitionCount));
  }
  await startNode("b");
});

afterAll(async () => {
  for (const node of [...servers.keys()]) await stopNode(node);
  await nats?.stop();
  for (const dir of dirs) await rm(dir, { recursive: true, force: true });
});

describe("cluster status", () => {
  it("shows the leader, each partition's lease and seq, and the follower caught up", async () => {
    const st = await until("node b to catch up", 30_000, async () => {
      const s = await status();
      const b = s.nodes.find((n) => n.node === "b");
      // Read again while a renewal or a report is late (a loaded machine).
      const caughtUp =
        b?.role === "follower" &&
        s.leader?.stale === false &&
        s.partitions.every((p) => p.nodes.every((n) => n.lag === 0));
      return caughtUp ? s : undefined;
    });
    expect(st.cluster).toBe(name);
    expect(st.leader?.node).toBe("a");
    expect(st.leader?.stale).toBe(false);
    expect(st.partitionCount).toBe(partitionCount);
    expect(st.stream.name).toBe("STOCKD_t");
    expect(st.stream.messages).toBeGreaterThan(0);
    expect(st.stream.bytes).toBeGreaterThan(0);
    expect(st.nodes.map((n) => [n.node, n.role])).toEqual([
      ["a", "leader"],
      ["b", "follower"],
    ]);
    expect(st.partitions.map((p) => p.partition)).toEqual([0, 1, 2, 3]);
    for (const p of st.partitions) {
      expect(p.lease?.node).toBe("a");
      expect(p.lease?.revision).toBeGreaterThan(0);
      // Every partition has a batch since a took over: its epoch, its seq.
      expect(p.lastMessage?.kind).toBe("batch");
      expect(p.epoch).toBeGreaterThan(0);
      expect(p.lastSeqFrom).toBe("stream");
      expect(p.lastSeq).toBeGreaterThan(0);
      expect(p.nodes).toEqual([
        { node: "a", role: "leader", seq: p.lastSeq, lag: 0 },
        { node: "b", role: "follower", seq: p.lastSeq, lag: 0 },
      ]);
    }
  });

  it("prints a table for people", async () => {
    const r = await cli(["cluster", "status", ...args()]);
    expect(r.stderr).toBe("");
    expect(r.code).toBe(0);
    expect(r.stdout).toMatch(/^cluster t at nats:\/\//);
    expect(r.stdout).toMatch(/^leader: a \(HTTP http:\/\/127\.0\.0\.1:\d+/m);
    expect(r.stdout).toMatch(/^ {2}P +LEADER +EPOCH +LEASE-REV +RENEWED +LAST-SEQ +a +b$/m);
    for (let p = 0; p < partitionCount; p++) {
      expect(r.stdout).toMatch(new RegExp(`^ {2}${p} +a +\\d+ +\\d+ +\\S+ ago +\\d+ +0 +0$`, "m"));
    }
  });
});

describe("cluster snapshot", () => {
  it("has the leader publish every partition's snapshot", async () => {
    const before = await status();
    const r = await cli(["cluster", "snapshot", ...args("--json")]);
    expect(r.stderr).toBe("");
    expect(r.code).toBe(0);
    const answer = JSON.parse(r.stdout);
    expect(answer.ok).toBe(true);
    expect(answer.node).toBe("a");
    expect(
      answer.partitions.map((p: { partition: number; journalSeq: number }) => [
        p.partition,
        p.journalSeq,
      ]),
    ).toEqual(before.partitions.map((p) => [p.partition, p.lastSeq]));
    expect(answer.records.streamSeq).toBeGreaterThan(0);
    expect(answer.purgedMessages).toBeGreaterThan(0);
    // The purge keeps each subject's last message: the seqs still read.
    const after = await status();
    expect(after.stream.messages).toBeLessThan(before.stream.messages);
    expect(after.partitions.map((p) => p.lastSeq)).toEqual(before.partitions.map((p) => p.lastSeq));
  });

  it("prints what the leader published", async () => {
    const r = await cli(["cluster", "snapshot", ...args()]);
    expect(r.stderr).toBe("");
    expect(r.code).toBe(0);
    expect(r.stdout).toMatch(/^snapshots published by the leader, node a:$/m);
    expect(r.stdout).toMatch(
      /^ {2}partition 0: journal seq \d+ \(stream seq \d+\), [\d,]+ bytes$/m,
    );
  });
});

describe.concurrent("bad command lines", () => {
  it.for([
    [["cluster", "status"], "--nats URL is required", "Usage: stockd cluster status"],
    [
      ["cluster", "snapshot", "--cluster", "t"],
      "--nats URL is required",
      "Usage: stockd cluster snapshot",
    ],
    [
      ["cluster", "status", "--nats", "nats://x:1", "--cluster", "a.b"],
      "--cluster must be",
      "Usage: stockd cluster status",
    ],
    [
      ["cluster", "status", "--nats", "nats://x:1", "--lease", "3x"],
      "--lease must be a duration",
      "Usage: stockd cluster status",
    ],
    [
      ["cluster", "frob"],
      "unknown cluster subcommand 'frob'",
      "Usage: stockd cluster <subcommand>",
    ],
    [["cluster"], "cluster needs a subcommand", "Usage: stockd cluster <subcommand>"],
  ] as const)("%j exits 2", async ([argv, message, usage], { expect }) => {
    const r = await cli(argv);
    expect(r.code).toBe(2);
    expect(r.stdout).toBe("");
    expect(r.stderr).toContain(message);
    expect(r.stderr).toContain(usage);
  });

  it.for([
    [["cluster", "--help"], "Usage: stockd cluster <subcommand>"],
    [["cluster", "status", "--help"], "Usage: stockd cluster status"],
    [["help", "cluster", "snapshot"], "Usage: stockd cluster snapshot"],
    [["--help"], "  cluster "],
  ] as const)("%j prints help", async ([argv, text], { expect }) => {
    const r = await cli(argv);
    expect(r.code).toBe(0);
    expect(r.stderr).toBe("");
    expect(r.stdout).toContain(text);
  });
});

describe("clusters that cannot be read", () => {
  it("says so quickly when NATS is unreachable", async () => {
    const url = `nats://127.0.0.1:${await closedPort()}`;
    for (const sub of ["status", "snapshot"]) {
      const started = Date.now();
      const r = await cli(["cluster", sub, "--nats", url, "--cluster", name]);
      // A child process's start-up alone takes up to 7 s on a loaded machine;
      // the refusal itself is immediate (ECONNREFUSED below, not a timeout).
      expect(Date.now() - started).toBeLessThan(20_000);
      expect(r.code).toBe(1);
      expect(r.stdout).toBe("");
      expect(r.stderr).toBe(`stockd: cannot reach NATS: ${url}: ECONNREFUSED\n`);
    }
  });

  it("says so when the cluster does not exist", async () => {
    for (const sub of ["status", "snapshot"]) {
      const r = await cli(["cluster", sub, "--nats", nats.url, "--cluster", "nope"]);
      expect(r.code).toBe(1);
      expect(r.stdout).toBe("");
      expect(r.stderr).toBe(
        `stockd: no stockd cluster nope at ${nats.url} (no stream STOCKD_nope)\n`,
      );
    }
  });
});

// Last: stops the nodes.
describe("after the leader stops", () => {
  it("shows the new leader, the fences, and then no leader to answer", async () => {
    const before = await status();
    await stopNode("a");
    // a's clean stop frees its leases at once, so b may lead before a's last
    // report is a lease old: wait for both.
    const st = await until("node b to lead and a's report to age", 30_000, async () => {
      const s = await status();
      const a = s.nodes.find((n) => n.node === "a");
      return s.leader?.node === "b" && !s.leader.stale && a?.stale === true ? s : undefined;
    });
    expect(st.nodes.find((n) => n.node === "a")?.stale).toBe(true); // its last report
    expect(st.nodes.find((n) => n.node === "b")?.role).toBe("leader");
    for (const p of st.partitions) {
      expect(p.lease?.node).toBe("b");
      // b's fence is the last message: the seq comes from b's report.
      expect(p.lastMessage?.kind).toBe("fence");
      expect(p.lastMessage?.node).toBe("b");
      expect(p.epoch).toBe(null);
      expect(p.lastSeqFrom).toBe("leader-report");
      expect(p.lastSeq).toBe(before.partitions[p.partition]!.lastSeq);
      expect(p.nodes.find((n) => n.node === "b")?.lag).toBe(0);
    }
    const human = await cli(["cluster", "status", ...args()]);
    expect(human.stdout).toMatch(/^leader: b /m);
    expect(human.stdout).toContain("* last message is a fence");

    const again = await cli(["cluster", "snapshot", ...args("--json")]);
    expect(again.code).toBe(0);
    expect(JSON.parse(again.stdout)).toMatchObject({ ok: true, node: "b" });

    await stopNode("b");
    // A node that does not lead keeps quiet; the lease (released by b's
    // clean stop) says why.
    const follower = await connect({ servers: nats.url });
    try {
      follower.subscribe("stockd-ctl.t.snapshot", { callback: () => undefined });
      await follower.flush();
      const started = Date.now();
      const r = await cli(["cluster", "snapshot", ...args("--lease", "1s")]);
      expect(Date.now() - started).toBeLessThan(20_000);
      expect(r.code).toBe(1);
      expect(r.stdout).toBe("");
      expect(r.stderr).toBe("stockd: no leader answered: nobody holds the gateway lease\n");
    } finally {
      await follower.close();
    }
    // Nobody listens at all.
    const r = await cli(["cluster", "snapshot", ...args()]);
    expect(r.code).toBe(1);
    expect(r.stderr).toBe("stockd: no leader answered: no node of cluster t is running\n");
  });
});
