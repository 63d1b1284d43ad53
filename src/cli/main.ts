import { AuthConfigError } from "../gateway/auth.ts";
import { StartupError } from "../host/index.ts";
import { CorruptionError, DataDirError } from "../persistence/index.ts";
import { clusterCommand, clusterSubcommands } from "./cluster.ts";
import type { Command } from "./command.ts";
import { dumpCommand } from "./dump.ts";
import { CliFailure, ExitCode, UsageError } from "./errors.ts";
import { replayCommand } from "./replay.ts";
import { serveCommand } from "./serve.ts";
import { snapshotCommand } from "./snapshot.ts";
import { tokenCommand } from "./token.ts";
import { verifyCommand } from "./verify.ts";

// The stockd operator command line. Output meant for the user goes to
// stdout; diagnostics and progress to stderr.

const commands: Command[] = [
  serveCommand,
  dumpCommand,
  replayCommand,
  verifyCommand,
  snapshotCommand,
  tokenCommand,
  clusterCommand,
];

const overview = `Usage: stockd <command> [options]

stockd is a stock reservation engine: it never sells what it does not have.

Commands:
${commands.map((c) => `  ${c.name.padEnd(16)}${c.summary}`).join("\n")}
  help [command]  this help, or a command's

Run \`stockd <command> --help\` for a command's options.

Exit status:
  0  done (verify: everything holds)
  1  verify found problems, a cluster command failed, or stockd failed unexpectedly
  2  usage error, or a data directory that cannot be used
  3  damaged journal: serve refuses to start, the readers stop at the damage

Set STOCKD_DEBUG=1 to see the stack of an unexpected error.
`;

const journalUsage = `Usage: stockd journal <subcommand> [options]

Subcommands:
  dump    ${dumpCommand.summary}

Run \`stockd journal dump --help\` for its options.
`;

/** The command named at the head of argv, and the arguments after its name. */
function resolve(argv: string[]): { command: Command; rest: string[] } {
  const [first, second] = argv;
  if (first === "cluster") {
    const sub = clusterSubcommands.find((c) => c.name === `cluster ${second}`);
    if (sub !== undefined) return { command: sub, rest: argv.slice(2) };
    throw new UsageError(
      second === undefined || second === "--help" || second === "-h"
        ? "cluster needs a subcommand"
        : `unknown cluster subcommand '${second}'`,
    );
  }
  if (first === "journal") {
    if (second === "dump") return { command: dumpCommand, rest: argv.slice(2) };
    throw new UsageError(
      second === undefined || second === "--help" || second === "-h"
        ? "journal needs a subcommand"
        : `unknown journal subcommand '${second}'`,
    );
  }
  const command = commands.find((c) => c.name === first);
  if (command === undefined) throw new UsageError(`unknown command '${first}'`);
  return { command, rest: argv.slice(1) };
}

function usageOf(argv: string[]): string {
  if (argv[0] === "cluster") return clusterCommand.usage;
  return argv[0] === "journal" ? journalUsage : overview;
}

function help(topic: string[]): number {
  if (topic.length === 0) {
    process.stdout.write(overview);
    return ExitCode.Ok;
  }
  if (topic.length === 1 && topic[0] === "journal") {
    process.stdout.write(journalUsage);
    return ExitCode.Ok;
  }
  if (topic.length === 1 && topic[0] === "cluster") {
    process.stdout.write(clusterCommand.usage);
    return ExitCode.Ok;
  }
  process.stdout.write(resolve(topic).command.usage);
  return ExitCode.Ok;
}

const wantsHelp = (argv: string[]) => argv.includes("--help") || argv.includes("-h");

async function main(argv: string[]): Promise<number> {
  const first = argv[0];
  if (first === undefined) {
    process.stderr.write(overview);
    return ExitCode.Usage;
  }
  if (first === "--help" || first === "-h") return help([]);
  if (argv[0] === "journal" && wantsHelp(argv.slice(1, 2))) return help(["journal"]);
  if (argv[0] === "cluster" && wantsHelp(argv.slice(1, 2))) return help(["cluster"]);
  let command: Command;
  let rest: string[];
  try {
    if (first === "help") return help(argv.slice(1));
    ({ command, rest } = resolve(argv));
  } catch (err) {
    if (!(err instanceof UsageError)) throw err;
    process.stderr.write(
      `stockd: ${err.message}\n\n${usageOf(first === "help" ? argv.slice(1) : argv)}`,
    );
    return ExitCode.Usage;
  }
  if (wantsHelp(rest)) {
    process.stdout.write(command.usage);
    return ExitCode.Ok;
  }
  try {
    return await command.run(rest);
  } catch (err) {
    return failed(command, err);
  }
}

/** The one place where errors become messages and exit codes. A damaged
 * or unusable store is an expected outcome: one line, never a stack. */
function failed(command: Command, err: unknown): number {
  const say = (line: string) => process.stderr.write(`stockd: ${line}\n`);
  if (err instanceof UsageError) {
    process.stderr.write(`stockd ${command.name}: ${err.message}\n\n${command.usage}`);
    return ExitCode.Usage;
  }
  if (err instanceof CliFailure) {
    say(err.message);
    return err.exitCode;
  }
  if (err instanceof DataDirError || err instanceof AuthConfigError) {
    say(err.message);
    return ExitCode.Usage;
  }
  if ((err as NodeJS.ErrnoException).code === "EADDRINUSE") {
    say(`cannot listen: ${(err as Error).message} (another server on that port?)`);
    return ExitCode.Usage;
  }
  if (err instanceof CorruptionError || err instanceof StartupError) {
    say(`${err.message} — run stockd verify for a full report`);
    return ExitCode.Damaged;
  }
  const e = err instanceof Error ? err : new Error(String(err));
  say(`unexpected error: ${e.message}`);
  if (process.env.STOCKD_DEBUG) process.stderr.write(`${e.stack}\n`);
  return ExitCode.Failed;
}

// `stockd journal dump | head` closes the pipe early: that is not an error.
process.stdout.on("error", (err: NodeJS.ErrnoException) => {
  if (err.code === "EPIPE") process.exit(ExitCode.Ok);
  throw err;
});

process.exitCode = await main(process.argv.slice(2));
