import { parseArgs } from "node:util";
import { CorruptionError } from "../persistence/index.ts";
import { optionalWholeNumber, parseOrUsage, requireData } from "./args.ts";
import type { Command } from "./command.ts";
import { openDataDir, selectPartitions } from "./datadir.ts";
import { ExitCode } from "./errors.ts";
import { eventJson, eventText } from "./format.ts";
import { Output, warn } from "./output.ts";

const usage = `Usage: stockd journal dump --data DIR [--partition N] [--from SEQ] [--json]

Prints the journal's events, one a line, in partition then sequence order.
The data directory is opened read-only; a running stockd is not disturbed.

Options:
  --data DIR       the data directory (required)
  --partition N    only partition N
  --from SEQ       only events from sequence number SEQ on (in each partition)
  --json           one JSON object a line with every field, enums by name
  -h, --help       this help

A damaged record stops its partition's listing with a message on stderr;
the other partitions are still listed, and the exit status is 3.
`;

async function run(argv: string[]): Promise<number> {
  const { values } = parseOrUsage(() =>
    parseArgs({
      args: argv,
      options: {
        data: { type: "string" },
        partition: { type: "string" },
        from: { type: "string" },
        json: { type: "boolean" },
      },
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
  const fromSeq = optionalWholeNumber("--from", values.from, 0, Number.MAX_SAFE_INTEGER) ?? 1;
  const json = values.json ?? false;
  const { store, meta } = await openDataDir(dir);
  const out = new Output();
  let damaged = false;
  try {
    for (const p of selectPartitions(dir, meta, partition)) {
      try {
        for (const { batch } of store.readJournal(p, Math.max(fromSeq, 1))) {
          for (const e of batch.events) {
            if (e.seq < fromSeq) continue;
            out.line(json ? JSON.stringify(eventJson(p, batch.epoch, e)) : eventText(p, e));
          }
          if (out.full) await out.flush();
        }
      } catch (err) {
        if (!(err instanceof CorruptionError)) throw err;
        await out.flush();
        warn(
          `${err.message} — the listing of partition ${p} stops here; run stockd verify for a full report`,
        );
        damaged = true;
      }
    }
    await out.flush();
  } finally {
    await store.close();
  }
  return damaged ? ExitCode.Damaged : ExitCode.Ok;
}

export const dumpCommand: Command = {
  name: "journal dump",
  summary: "print the journal's events, one a line",
  usage,
  run,
};
