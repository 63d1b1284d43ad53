import { parseArgs } from "node:util";
import { CorruptionError, snapshotPartition } from "../persistence/index.ts";
import { optionalWholeNumber, parseOrUsage, requireData } from "./args.ts";
import type { Command } from "./command.ts";
import { openDataDir, selectPartitions } from "./datadir.ts";
import { corruptionDetail, ExitCode } from "./errors.ts";
import { count, Output, warn } from "./output.ts";
import { Progress } from "./progress.ts";

const usage = `Usage: stockd snapshot --data DIR [--partition N]

Writes a snapshot of each partition, built from the store alone (its newest
valid snapshot plus the journal after it), so it may run while stockd
serves. The two newest snapshots of a partition are kept.

Options:
  --data DIR       the data directory (required)
  --partition N    only partition N
  -h, --help       this help

A partition whose journal is damaged is not snapshotted: a message goes to
stderr, the other partitions are still done, and the exit status is 3.
`;

async function run(argv: string[]): Promise<number> {
  const { values } = parseOrUsage(() =>
    parseArgs({
      args: argv,
      options: { data: { type: "string" }, partition: { type: "string" } },
      strict: true,
      allowPositionals: false,
    }),
  );
  const dir = requireData(values.data);
  const partition = optionalWholeNumber(
    "--partition",
    values.partition,
    0,
    Number.MAX_SAFE_INTEGER,
  );
  const { store, meta } = await openDataDir(dir, true);
  const config = {
    partitionCount: meta.partitionCount,
    idempotencyWindowMs: meta.idempotencyWindowMs,
  };
  const out = new Output();
  const progress = new Progress("snapshot");
  let damaged = false;
  try {
    const partitions = selectPartitions(dir, meta, partition);
    for (const [i, id] of partitions.entries()) {
      const where = `partition ${i + 1}/${partitions.length}`;
      try {
        const r = await snapshotPartition(store, id, config, {
          onSkippedSnapshot: (err) => {
            progress.clear();
            warn(
              `partition ${id}: damaged snapshot at seq ${err.seq} skipped: ${corruptionDetail(err)}`,
            );
          },
          onProgress: (events) => progress.update(`${where}, ${count(events)} events`),
        });
        out.line(
          r.written
            ? `partition ${id}: snapshot at seq ${r.seq}, ${count(r.bytes)} bytes written`
            : r.seq === 0
              ? `partition ${id}: empty journal, nothing to snapshot`
              : `partition ${id}: up to date (snapshot at seq ${r.seq})`,
        );
      } catch (err) {
        if (!(err instanceof CorruptionError)) throw err;
        progress.clear();
        warn(
          `${err.message} — partition ${id} not snapshotted; run stockd verify for a full report`,
        );
        out.line(`partition ${id}: not snapshotted, journal damaged at seq ${err.seq}`);
        damaged = true;
      }
      await out.flush();
    }
  } finally {
    progress.clear();
    await store.close();
  }
  return damaged ? ExitCode.Damaged : ExitCode.Ok;
}

export const snapshotCommand: Command = {
  name: "snapshot",
  summary: "write a snapshot of each partition from its journal",
  usage,
  run,
};
