import { parseArgs } from "node:util";
import {
  HoldFlag,
  type OpenHold,
  type Partition,
  type PartitionConfig,
  type Position,
  partitionOf,
} from "../engine/index.ts";
import { type RecoverOptions, recoverPartition, type Store } from "../persistence/index.ts";
import {
  optionalId,
  optionalWholeNumber,
  parseOrUsage,
  parseUntil,
  requireData,
  type Until,
} from "./args.ts";
import type { Command } from "./command.ts";
import { openDataDir, selectPartitions } from "./datadir.ts";
import { ExitCode, UsageError } from "./errors.ts";
import { isoTime } from "./format.ts";
import { untilDamage } from "./journal.ts";
import { count, Output } from "./output.ts";
import { Progress } from "./progress.ts";

const usage = `Usage: stockd replay --data DIR [--until SEQ|TIME] [--product P] [--warehouse W] [--partition N]

Rebuilds the state from the journal alone (snapshots are not read) and prints
it as JSON: each partition's last sequence number and time, and its SKU
positions with their open holds.

Options:
  --data DIR        the data directory (required); opened read-only
  --until SEQ       stop after sequence number SEQ (in each partition)
  --until TIME      stop after the last event at or before TIME, an ISO-8601
                    time with its zone, e.g. 2026-11-23T10:00:00Z
  --product P       only product P (only its partition is replayed)
  --warehouse W     only positions in warehouse W
  --partition N     only partition N
  -h, --help        this help
`;

interface ReplayFilter {
  productId: string | undefined;
  warehouseId: string | undefined;
}

async function run(argv: string[]): Promise<number> {
  const { values } = parseOrUsage(() =>
    parseArgs({
      args: argv,
      options: {
        data: { type: "string" },
        until: { type: "string" },
        product: { type: "string" },
        warehouse: { type: "string" },
        partition: { type: "string" },
      },
      strict: true,
      allowPositionals: false,
    }),
  );
  const dir = requireData(values.data);
  const until = values.until === undefined ? undefined : parseUntil(values.until);
  const filter: ReplayFilter = {
    productId: optionalId("--product", values.product),
    warehouseId: optionalId("--warehouse", values.warehouse),
  };
  const partition = optionalWholeNumber(
    "--partition",
    values.partition,
    0,
    Number.MAX_SAFE_INTEGER,
  );
  const { store, meta } = await openDataDir(dir);
  try {
    let partitions = selectPartitions(dir, meta, partition);
    if (filter.productId !== undefined) {
      const home = partitionOf(filter.productId, meta.partitionCount);
      if (partition !== undefined && partition !== home) {
        throw new UsageError(
          `product ${filter.productId} is in partition ${home}, not ${partition}`,
        );
      }
      partitions = [home];
    }
    await replayAll(
      store,
      { partitionCount: meta.partitionCount, idempotencyWindowMs: meta.idempotencyWindowMs },
      partitions,
      until,
      filter,
    );
  } finally {
    await store.close();
  }
  return ExitCode.Ok;
}

async function replayAll(
  store: Store,
  config: PartitionConfig,
  partitions: number[],
  until: Until | undefined,
  filter: ReplayFilter,
): Promise<void> {
  const out = new Output();
  const progress = new Progress("replay");
  const untilJson = until === undefined ? null : "seq" in until ? until.seq : isoTime(until.timeMs);
  out.line(`{"until":${JSON.stringify(untilJson)},"partitions":[`);
  let eventsBefore = 0;
  for (const [i, id] of partitions.entries()) {
    const p = replayOne(store, config, id, until, (events) =>
      progress.update(
        `partition ${i + 1}/${partitions.length}, ${count(eventsBefore + events)} events`,
      ),
    );
    eventsBefore += p.seq;
    const head = {
      partition: p.id,
      seq: p.seq,
      timeMs: p.timeMs,
      time: p.seq === 0 ? null : isoTime(p.timeMs),
    };
    out.line(` ${JSON.stringify(head).slice(0, -1)},"positions":[`);
    const positions = selected(p, filter);
    const holds = holdsByPosition(p);
    for (const [j, position] of positions.entries()) {
      const sep = j + 1 < positions.length ? "," : "";
      out.line(`  ${JSON.stringify(positionJson(position, holds.get(position) ?? []))}${sep}`);
      if (out.full) await out.flush();
    }
    out.line(` ]}${i + 1 < partitions.length ? "," : ""}`);
  }
  out.line("]}");
  progress.clear();
  await out.flush();
}

/** Replays one partition from empty; throws CorruptionError when a damaged
 * record stands before the point asked for. */
function replayOne(
  store: Store,
  config: PartitionConfig,
  id: number,
  until: Until | undefined,
  onProgress: (events: number) => void,
): Partition {
  const view = untilDamage(store);
  const options: RecoverOptions = { fromEmpty: true, onProgress };
  if (until !== undefined && "seq" in until) options.untilSeq = until.seq;
  if (until !== undefined && "timeMs" in until) options.untilTimeMs = until.timeMs;
  const { partition } = recoverPartition(view.store, id, config, options);
  const damage = view.damage();
  // Stopping at the damage is enough only when the state asked for ends
  // before it, which is known only for a sequence number.
  if (damage !== null && !(options.untilSeq !== undefined && partition.seq >= options.untilSeq)) {
    throw damage;
  }
  return partition;
}

function selected(p: Partition, filter: ReplayFilter): Position[] {
  const out: Position[] = [];
  for (const x of p.positions.values()) {
    if (filter.productId !== undefined && x.productId !== filter.productId) continue;
    if (filter.warehouseId !== undefined && x.warehouseId !== filter.warehouseId) continue;
    out.push(x);
  }
  return out.sort((a, b) =>
    a.productId === b.productId
      ? compare(a.warehouseId, b.warehouseId)
      : compare(a.productId, b.productId),
  );
}

interface HeldLine {
  hold: OpenHold;
  quantity: number;
}

function holdsByPosition(p: Partition): Map<Position, HeldLine[]> {
  const out = new Map<Position, HeldLine[]>();
  for (const hold of p.holdsInOrder()) {
    for (const line of hold.lines) {
      const position = p.positions.get(line.productId, line.warehouseId)!;
      const list = out.get(position) ?? [];
      const known = list.find((x) => x.hold === hold);
      if (known !== undefined) known.quantity += line.quantity;
      else list.push({ hold, quantity: line.quantity });
      out.set(position, list);
    }
  }
  return out;
}

function positionJson(x: Position, held: HeldLine[]) {
  return {
    productId: x.productId,
    warehouseId: x.warehouseId,
    available: x.available,
    reserved: x.reserved,
    received: x.received,
    adjusted: x.adjusted,
    fulfilled: x.fulfilled,
    holds: [...held]
      .sort((a, b) => a.hold.id - b.hold.id)
      .map(({ hold, quantity }) => ({
        holdId: hold.id,
        expireTimeMs: hold.expireTimeMs,
        expireTime: isoTime(hold.expireTimeMs),
        requestId: hold.requestId,
        quantity,
        prepared: (hold.flags & HoldFlag.Prepared) !== 0,
        pinned: (hold.flags & HoldFlag.Pinned) !== 0,
      })),
  };
}

function compare(a: string, b: string): number {
  return a < b ? -1 : a > b ? 1 : 0;
}

export const replayCommand: Command = {
  name: "replay",
  summary: "rebuild the state from the journal alone and print it as JSON",
  usage,
  run,
};
