import { parseArgs } from "node:util";
import {
  digestPartition,
  type Partition,
  type PartitionConfig,
  type Position,
} from "../engine/index.ts";
import {
  CorruptionError,
  decodeSnapshot,
  recoverPartition,
  type Store,
} from "../persistence/index.ts";
import { parseOrUsage, requireData } from "./args.ts";
import type { Command } from "./command.ts";
import { openDataDir } from "./datadir.ts";
import { corruptionDetail, ExitCode } from "./errors.ts";
import { isoTime } from "./format.ts";
import { untilDamage } from "./journal.ts";
import { count, counted, Output } from "./output.ts";
import { Progress } from "./progress.ts";

const usage = `Usage: stockd verify --data DIR

Checks a data directory, partition by partition, opened read-only:
  - every journal record: checksum, decoding, sequence continuity;
  - a replay of the journal from empty, and every invariant on its result;
  - every snapshot: checksum and decoding; the newest valid one must equal
    the journal replayed from empty up to its sequence number.

Prints one line per problem (partition, seq, what) and a summary. Exit
status 0 when everything holds, 1 otherwise.

Options:
  --data DIR    the data directory (required)
  -h, --help    this help
`;

/** Damaged journal records listed per partition; past this the partition is
 * beyond listing record by record, and one line says so. */
const damagedRecordReportMax = 100;

interface Problem {
  partition: number;
  seq: number | null;
  what: string;
}

interface Tally {
  partitions: number;
  records: number;
  events: number;
  snapshots: number;
  problems: Problem[];
}

type Report = (text: string) => void;

async function run(argv: string[]): Promise<number> {
  const { values } = parseOrUsage(() =>
    parseArgs({
      args: argv,
      options: { data: { type: "string" } },
      strict: true,
      allowPositionals: false,
    }),
  );
  const dir = requireData(values.data);
  const { store, meta } = await openDataDir(dir);
  const config: PartitionConfig = {
    partitionCount: meta.partitionCount,
    idempotencyWindowMs: meta.idempotencyWindowMs,
  };
  const tally: Tally = { partitions: 0, records: 0, events: 0, snapshots: 0, problems: [] };
  const progress = new Progress("verify");
  try {
    for (let id = 0; id < meta.partitionCount; id++) {
      const where = `partition ${id + 1}/${meta.partitionCount}`;
      verifyPartition(store, config, id, tally, (text) => progress.update(`${where}, ${text}`));
      tally.partitions++;
    }
  } finally {
    progress.clear();
    await store.close();
  }
  const out = new Output();
  for (const p of tally.problems) {
    out.line(`partition ${p.partition}${p.seq === null ? "" : ` seq ${p.seq}`}: ${p.what}`);
  }
  const n = tally.problems.length;
  out.line(
    `verify: ${n === 0 ? "ok" : counted(n, "problem")} — ${counted(tally.partitions, "partition")}, ` +
      `${counted(tally.events, "event")} in ${counted(tally.records, "record")}, ` +
      `${counted(tally.snapshots, "snapshot")} checked`,
  );
  await out.flush();
  return n === 0 ? ExitCode.Ok : ExitCode.Failed;
}

function verifyPartition(
  store: Store,
  config: PartitionConfig,
  id: number,
  tally: Tally,
  report: Report,
) {
  scanJournal(store, id, tally, report);
  replayFromEmpty(store, config, id, tally, report);
  checkSnapshots(store, config, id, tally);
}

/** Reads every record of the partition. It goes on past a damaged record
 * (from the seq after it), so that every damaged record is listed. */
function scanJournal(store: Store, id: number, tally: Tally, report: Report): void {
  const problem = (seq: number, what: string) => tally.problems.push({ partition: id, seq, what });
  let fromSeq = 1;
  let lastGoodSeq = 0;
  let damaged = 0;
  for (;;) {
    try {
      for (const { batch } of store.readJournal(id, fromSeq)) {
        tally.records++;
        tally.events += batch.events.length;
        lastGoodSeq = batch.lastSeq;
        report(`${count(tally.events)} events`);
      }
      return;
    } catch (err) {
      if (!(err instanceof CorruptionError)) throw err;
      tally.records++;
      if (++damaged > damagedRecordReportMax) {
        problem(
          err.seq,
          `more than ${damagedRecordReportMax} damaged journal records; the rest are not listed`,
        );
        return;
      }
      problem(
        err.seq,
        `corrupted journal record (last good seq ${lastGoodSeq}): ${corruptionDetail(err)}`,
      );
      // The error's seq is the key of a record at or after fromSeq: progress.
      fromSeq = err.seq + 1;
    }
  }
}

/** Replays the journal from empty (up to the first damaged record) and
 * checks every invariant. */
function replayFromEmpty(
  store: Store,
  config: PartitionConfig,
  id: number,
  tally: Tally,
  report: Report,
): void {
  const view = untilDamage(store);
  let partition: Partition;
  try {
    partition = recoverPartition(view.store, id, config, {
      fromEmpty: true,
      onProgress: (events) => report(`replaying, ${count(events)} events`),
    }).partition;
  } catch (err) {
    if (!(err instanceof CorruptionError)) throw err;
    tally.problems.push({
      partition: id,
      seq: err.seq,
      what: `event does not apply in a replay from empty: ${corruptionDetail(err)}`,
    });
    return;
  }
  try {
    partition.checkInvariants();
  } catch (err) {
    tally.problems.push({
      partition: id,
      seq: partition.seq,
      what: `invariant broken after a replay from empty: ${(err as Error).message}`,
    });
  }
}

/** Decodes every snapshot and compares the newest valid one with the
 * journal replayed from empty to its seq. */
function checkSnapshots(store: Store, config: PartitionConfig, id: number, tally: Tally): void {
  const problem = (seq: number, what: string) => tally.problems.push({ partition: id, seq, what });
  let newest: Partition | null = null;
  for (const s of store.snapshotsNewestFirst(id)) {
    tally.snapshots++;
    if (s instanceof CorruptionError) {
      problem(s.seq, `damaged snapshot: ${corruptionDetail(s)}`);
      continue;
    }
    try {
      const p = decodeSnapshot(s.payload, config);
      if (p.id !== id || p.seq !== s.seq) {
        throw new Error(
          `stored under partition ${id} seq ${s.seq}, it holds partition ${p.id} seq ${p.seq}`,
        );
      }
      newest ??= p;
    } catch (err) {
      problem(s.seq, `damaged snapshot: ${(err as Error).message}`);
    }
  }
  if (newest === null) return;
  const replayed = replayTo(store, config, id, newest.seq);
  if (replayed.seq < newest.seq) {
    problem(
      newest.seq,
      `snapshot not compared: the journal replays only up to seq ${replayed.seq}`,
    );
    return;
  }
  if (digestPartition(replayed) !== digestPartition(newest)) {
    problem(
      newest.seq,
      `snapshot differs from the journal replayed from empty to seq ${newest.seq}: ${difference(replayed, newest)}`,
    );
  }
}

/** The journal replayed from empty up to `seq`, or as far as it goes: up to
 * a damaged record or an event that does not apply (both reported apart). */
function replayTo(store: Store, config: PartitionConfig, id: number, seq: number): Partition {
  try {
    return recoverPartition(untilDamage(store).store, id, config, {
      fromEmpty: true,
      untilSeq: seq,
    }).partition;
  } catch (err) {
    if (!(err instanceof CorruptionError)) throw err;
    return recoverPartition(untilDamage(store).store, id, config, {
      fromEmpty: true,
      untilSeq: err.seq - 1,
    }).partition;
  }
}

/** The first difference found between the journal's state and a
 * snapshot's, in words. */
function difference(journal: Partition, snapshot: Partition): string {
  if (journal.seq !== snapshot.seq || journal.timeMs !== snapshot.timeMs) {
    return `journal at seq ${journal.seq} ${isoTime(journal.timeMs)}, snapshot at seq ${snapshot.seq} ${isoTime(snapshot.timeMs)}`;
  }
  for (const a of journal.positions.values()) {
    const b = snapshot.positions.get(a.productId, a.warehouseId);
    if (b === undefined) return `${a.productId}@${a.warehouseId} is missing from the snapshot`;
    if (positionText(a) !== positionText(b)) {
      return `${a.productId}@${a.warehouseId}: journal ${positionText(a)}; snapshot ${positionText(b)}`;
    }
  }
  for (const b of snapshot.positions.values()) {
    if (journal.positions.get(b.productId, b.warehouseId) === undefined) {
      return `${b.productId}@${b.warehouseId} is in the snapshot only`;
    }
  }
  const inSnapshot = new Set(snapshot.holdsInOrder().map((h) => h.id));
  const inJournal = new Set(journal.holdsInOrder().map((h) => h.id));
  for (const id of inJournal) {
    if (!inSnapshot.has(id)) return `hold ${id} is open in the journal, not in the snapshot`;
  }
  for (const id of inSnapshot) {
    if (!inJournal.has(id)) return `hold ${id} is open in the snapshot, not in the journal`;
  }
  return "open holds, ended holds or remembered request ids differ";
}

function positionText(p: Position): string {
  return (
    `available=${p.available} reserved=${p.reserved} received=${p.received} ` +
    `adjusted=${p.adjusted} fulfilled=${p.fulfilled}`
  );
}

export const verifyCommand: Command = {
  name: "verify",
  summary: "check journal records, a replay from empty, invariants and snapshots",
  usage,
  run,
};
