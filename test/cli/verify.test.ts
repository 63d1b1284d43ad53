import { cpSync } from "node:fs";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { encodeSnapshot, recoverPartition, Store } from "../../src/persistence/index.ts";
import {
  buildDataDir,
  cli,
  corruptJournalRecord,
  corruptNewestSnapshot,
  type Fixture,
  lines,
  partitionCount,
  removeDir,
  tempDir,
} from "./support.ts";

// `stockd verify` and `stockd snapshot`: each test that damages the store
// works on its own copy of one data directory written by the engine.

let root: string;
let fx: Fixture;
let copies = 0;

beforeAll(async () => {
  root = tempDir();
  fx = await buildDataDir(`${root}/data`, Date.parse("2020-03-01T10:00:00.000Z"));
});

afterAll(() => removeDir(root));

function copy(): string {
  const dir = `${root}/copy-${++copies}`;
  cpSync(fx.dir, dir, { recursive: true });
  return dir;
}

const noStack = (text: string) => expect(text).not.toMatch(/\n\s+at /);

describe("verify", () => {
  it("passes a good data directory and says what it checked", async () => {
    const r = await cli(["verify", "--data", fx.dir]);
    expect(r.code, r.stdout + r.stderr).toBe(0);
    expect(r.stderr).toBe("");
    expect(lines(r.stdout)).toEqual([
      "verify: ok — 4 partitions, 14 events in 14 records, 0 snapshots checked",
    ]);
  });

  it("names the partition and seq of a corrupted journal record", async () => {
    const dir = copy();
    const seq = await corruptJournalRecord(dir, 2, 4);
    const r = await cli(["verify", "--data", dir]);
    expect(r.code, r.stdout + r.stderr).toBe(1);
    const out = lines(r.stdout);
    expect(out[0]).toMatch(
      new RegExp(
        `^partition 2 seq ${seq}: corrupted journal record \\(last good seq ${seq - 1}\\): checksum mismatch`,
      ),
    );
    expect(out.at(-1)).toMatch(/^verify: 1 problem — 4 partitions/);
    noStack(r.stdout + r.stderr);
  });

  it("lists every damaged record of a partition, not only the first", async () => {
    const dir = copy();
    const first = await corruptJournalRecord(dir, 2, 2);
    const second = await corruptJournalRecord(dir, 2, 5);
    const r = await cli(["verify", "--data", dir]);
    expect(r.code).toBe(1);
    const problems = lines(r.stdout).filter((l) => l.startsWith("partition "));
    expect(problems.map((l) => l.replace(/:.*/, ""))).toEqual([
      `partition 2 seq ${first}`,
      `partition 2 seq ${second}`,
    ]);
  });
});

describe("snapshot", () => {
  it("writes one snapshot per partition with events, then is up to date; verify checks them", async () => {
    const dir = copy();
    const first = await cli(["snapshot", "--data", dir]);
    expect(first.code, first.stderr).toBe(0);
    const out = lines(first.stdout);
    expect(out).toHaveLength(partitionCount);
    for (const [p, n] of fx.eventCounts.entries()) {
      expect(out[p]).toMatch(
        n === 0
          ? `partition ${p}: empty journal, nothing to snapshot`
          : new RegExp(`^partition ${p}: snapshot at seq ${n}, [\\d,]+ bytes written$`),
      );
    }
    const again = await cli(["snapshot", "--data", dir, "--partition", "1"]);
    expect(lines(again.stdout)).toEqual(["partition 1: up to date (snapshot at seq 3)"]);
    const v = await cli(["verify", "--data", dir]);
    expect(v.code, v.stdout).toBe(0);
    expect(v.stdout).toContain("14 events in 14 records, 3 snapshots checked");
  });

  it("verify reports a damaged snapshot by partition and seq", async () => {
    const dir = copy();
    expect((await cli(["snapshot", "--data", dir])).code).toBe(0);
    const seq = await corruptNewestSnapshot(dir, 0);
    const r = await cli(["verify", "--data", dir]);
    expect(r.code, r.stdout + r.stderr).toBe(1);
    expect(lines(r.stdout)[0]).toMatch(
      new RegExp(`^partition 0 seq ${seq}: damaged snapshot: checksum mismatch`),
    );
    noStack(r.stdout + r.stderr);
    // A later snapshot skips the damaged one and replaces it.
    const s = await cli(["snapshot", "--data", dir, "--partition", "0"]);
    expect(s.code).toBe(0);
    expect(s.stderr).toContain(`partition 0: damaged snapshot at seq ${seq} skipped`);
    expect((await cli(["verify", "--data", dir])).code).toBe(0);
  });

  it("verify does not compare a snapshot the damaged journal cannot reach", async () => {
    const dir = copy();
    expect((await cli(["snapshot", "--data", dir, "--partition", "2"])).code).toBe(0);
    const seq = await corruptJournalRecord(dir, 2, 3);
    const r = await cli(["verify", "--data", dir]);
    expect(r.code).toBe(1);
    expect(lines(r.stdout)).toEqual([
      expect.stringMatching(new RegExp(`^partition 2 seq ${seq}: corrupted journal record`)),
      `partition 2 seq 6: snapshot not compared: the journal replays only up to seq ${seq - 1}`,
      expect.stringMatching(
        /^verify: 2 problems — 4 partitions, 13 events in 14 records, 1 snapshot checked$/,
      ),
    ]);
  });

  it("verify reports a snapshot that disagrees with the journal", async () => {
    const dir = copy();
    const store = Store.open(dir);
    try {
      const { partition } = recoverPartition(store, 2, { partitionCount }, { fromEmpty: true });
      const p = partition.positions.get(fx.c, "blr")!;
      p.received += 5;
      p.available += 5;
      await store.putSnapshot(2, partition.seq, encodeSnapshot(partition));
    } finally {
      await store.close();
    }
    const r = await cli(["verify", "--data", dir]);
    expect(r.code).toBe(1);
    const c = fx.positions.get(`${fx.c}@blr`)!;
    const text = (available: number, received: number) =>
      `available=${available} reserved=${c.reserved} received=${received} adjusted=${c.adjusted} fulfilled=${c.fulfilled}`;
    expect(lines(r.stdout)[0]).toBe(
      `partition 2 seq 6: snapshot differs from the journal replayed from empty to seq 6: ${fx.c}@blr: ` +
        `journal ${text(c.available, c.received)}; snapshot ${text(c.available + 5, c.received + 5)}`,
    );
  });
});

describe("a damaged journal in the readers", () => {
  it("dump lists up to the damage and exits 3; replay before the damage still works", async () => {
    const dir = copy();
    const seq = await corruptJournalRecord(dir, 2, 4);
    const dump = await cli(["journal", "dump", "--data", dir]);
    expect(dump.code).toBe(3);
    expect(lines(dump.stdout).filter((l) => l.startsWith("p=2 "))).toHaveLength(seq - 1);
    expect(lines(dump.stdout).filter((l) => l.startsWith("p=0 "))).toHaveLength(5);
    expect(dump.stderr).toContain(
      `corrupted journal record in partition 2 at seq ${seq} (last good seq ${seq - 1})`,
    );
    noStack(dump.stderr);
    const whole = await cli(["replay", "--data", dir, "--product", fx.c]);
    expect(whole.code).toBe(3);
    expect(lines(whole.stderr)).toHaveLength(1);
    const before = await cli([
      "replay",
      "--data",
      dir,
      "--product",
      fx.c,
      "--until",
      String(seq - 1),
    ]);
    expect(before.code, before.stderr).toBe(0);
    expect(JSON.parse(before.stdout).partitions[0].seq).toBe(seq - 1);
  });
});
