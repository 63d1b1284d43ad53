import { cpSync } from "node:fs";
import { afterAll, afterEach, beforeAll, describe, expect, it } from "vitest";
import {
  buildDataDir,
  cli,
  corruptJournalRecord,
  type Fixture,
  type LogLine,
  lines,
  removeDir,
  type Served,
  serve,
  tempDir,
} from "./support.ts";

// `stockd serve` as a child process: recovery, the ready line, a clean stop
// on SIGTERM/SIGINT, and start-up on a damaged journal.

let root: string;
/** Written just before the tests: its open holds are not yet due. */
let recent: Fixture;
/** Written on a clock in 2020: its open holds fell due long ago. */
let old: Fixture;
let copies = 0;
const children: Served[] = [];

beforeAll(async () => {
  root = tempDir();
  recent = await buildDataDir(`${root}/recent`, Date.now() - 10 * 60_000);
  old = await buildDataDir(`${root}/old`, Date.parse("2020-03-01T10:00:00.000Z"));
});

afterEach(() => {
  for (const s of children.splice(0)) if (s.child.exitCode === null) s.child.kill("SIGKILL");
});

afterAll(() => removeDir(root));

function copy(fx: Fixture): string {
  const dir = `${root}/copy-${++copies}`;
  cpSync(fx.dir, dir, { recursive: true });
  return dir;
}

/** Free ports on loopback unless the test says otherwise. */
function start(args: string[], env: Record<string, string> = {}): Served {
  const s = serve(args, {
    STOCKD_HOST: "127.0.0.1",
    STOCKD_GRPC_PORT: "0",
    STOCKD_HTTP_PORT: "0",
    ...env,
  });
  children.push(s);
  return s;
}

const isReady = (l: LogLine) => typeof l.msg === "string" && l.msg.startsWith("ready");

async function positionsOf(dir: string, productId: string) {
  const r = await cli(["replay", "--data", dir, "--product", productId]);
  expect(r.code, r.stderr).toBe(0);
  const state = JSON.parse(r.stdout) as { partitions: { positions: Record<string, unknown>[] }[] };
  return state.partitions[0]!.positions.map(({ holds, ...numbers }) => numbers);
}

describe("serve", () => {
  it("recovers, says where it listens and that it is ready, and on SIGTERM stops and exits 0", async () => {
    const dir = copy(recent);
    const s = start(["--data", dir, "--workers", "2"]);
    const ready = await s.waitForLog(isReady, "ready");
    expect(ready).toMatchObject({ partitions: 4, warehouses: 0, products: 0 });
    const listening = s.logs.find((l) => l.msg === "listening") as LogLine & {
      httpPort: number;
      grpcPort: number;
    };
    expect(listening.httpPort).toBeGreaterThan(0);
    expect(listening.grpcPort).toBeGreaterThan(0);
    const readyz = await fetch(`http://127.0.0.1:${listening.httpPort}/readyz`);
    expect(readyz.status).toBe(200);
    expect(await readyz.json()).toMatchObject({ status: "ready", role: "standalone" });
    expect(s.logs.find((l) => l.msg === "recovered")).toMatchObject({
      partitions: 4,
      eventsReplayed: 14,
      holdsExpiredAtStart: 0,
      snapshotSeqs: [0, 0, 0, 0],
      seqs: recent.eventCounts,
    });
    s.child.kill("SIGTERM");
    const exit = await s.exit;
    expect(exit.code, exit.stderr).toBe(0);
    expect(exit.stderr).toBe("");
    expect(s.logs.at(-1)?.msg).toBe("stopped");
    expect(await positionsOf(dir, recent.a)).toEqual([
      recent.positions.get(`${recent.a}@blr`),
      recent.positions.get(`${recent.a}@del`),
    ]);
    const v = await cli(["verify", "--data", dir]);
    expect(v.code, v.stdout).toBe(0);
  });

  it("creates a new data directory from the environment and stops on SIGINT", async () => {
    const dir = `${root}/fresh`;
    const s = start([], {
      STOCKD_DATA: dir,
      STOCKD_WORKERS: "0",
      STOCKD_PARTITIONS: "4",
      STOCKD_DURABILITY: "relaxed",
      STOCKD_HOLD_DURATION: "2s",
    });
    await s.waitForLog(isReady, "ready");
    expect(s.logs[0]).toMatchObject({
      msg: "starting",
      dataDir: dir,
      workerCount: 0,
      partitionCount: 4,
      durability: "relaxed",
      holdDurationMs: 2000,
    });
    s.child.kill("SIGINT");
    expect((await s.exit).code).toBe(0);
    const v = await cli(["verify", "--data", dir]);
    expect(lines(v.stdout)).toEqual([
      "verify: ok — 4 partitions, 0 events in 0 records, 0 snapshots checked",
    ]);
  });

  it("refuses a partition count other than the directory's with exit 2", async () => {
    const s = start(["--data", copy(recent), "--partitions", "8", "--workers", "0"]);
    const exit = await s.exit;
    expect(exit.code).toBe(2);
    expect(exit.stderr).toMatch(/^stockd: .* has 4 partitions; the partition count is fixed/);
  });

  it("expires at start the holds that fell due while it was down", async () => {
    const dir = copy(old);
    const s = start(["--data", dir, "--workers", "0"]);
    await s.waitForLog(isReady, "ready");
    expect(s.logs.find((l) => l.msg === "recovered")).toMatchObject({ holdsExpiredAtStart: 2 });
    s.child.kill("SIGTERM");
    expect((await s.exit).code).toBe(0);
    const [blr] = await positionsOf(dir, old.a);
    expect(blr).toMatchObject({ available: 10, reserved: 0 });
  });
});

describe("serve on a damaged journal", () => {
  it("exits 3 with one clear line, and starts with --truncate-damaged-tail", async () => {
    const dir = copy(recent);
    const seq = await corruptJournalRecord(dir, 2, 4);
    const refused = start(["--data", dir], { STOCKD_WORKERS: "1" });
    const exit = await refused.exit;
    expect(exit.code).toBe(3);
    expect(lines(exit.stderr)).toEqual([
      expect.stringMatching(
        new RegExp(
          `^stockd: corrupted journal record in partition 2 at seq ${seq} \\(last good seq ${seq - 1}\\): ` +
            "checksum mismatch.* — start with --truncate-damaged-tail to drop it and everything after it in that partition$",
        ),
      ),
    ]);
    expect(refused.logs.find((l) => l.msg?.includes("journal damaged"))).toMatchObject({
      partition: 2,
      seq,
    });

    const s = start(["--data", dir, "--truncate-damaged-tail"], { STOCKD_WORKERS: "1" });
    await s.waitForLog(isReady, "ready");
    expect(s.logs.find((l) => l.msg?.startsWith("damaged journal tail dropped"))).toMatchObject({
      partition: 2,
      truncatedRecords: recent.eventCounts[2]! - seq + 1,
      seq: seq - 1,
    });
    s.child.kill("SIGTERM");
    expect((await s.exit).code).toBe(0);
    const v = await cli(["verify", "--data", dir]);
    expect(v.code, v.stdout).toBe(0);
    const dump = await cli(["journal", "dump", "--data", dir, "--partition", "2"]);
    expect(lines(dump.stdout)).toHaveLength(seq - 1);
  });
});
