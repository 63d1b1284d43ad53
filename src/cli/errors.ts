import { CorruptionError } from "../persistence/index.ts";

// Exit codes and the errors that map to them. One table, so that scripts
// around stockd can rely on the numbers.

export const ExitCode = {
  /** Done; for verify: everything holds. */
  Ok: 0,
  /** verify found problems, or stockd failed unexpectedly. */
  Failed: 1,
  /** Bad command line, or a data directory that cannot be used. */
  Usage: 2,
  /** A damaged journal: serve refuses to start, the readers stop at the damage. */
  Damaged: 3,
} as const;
export type ExitCode = (typeof ExitCode)[keyof typeof ExitCode];

/** A bad command line; the command's usage is printed after the message. */
export class UsageError extends Error {
  override name = "UsageError";
}

/** The detail of a CorruptionError, without the "in partition P at seq S"
 * prefix that the caller already prints in its own words. */
export function corruptionDetail(err: Error): string {
  return err instanceof CorruptionError ? err.detail : err.message;
}

/** A failure already put in words for the operator: main prints the
 * message, one line, and exits with the code. */
export class CliFailure extends Error {
  override name = "CliFailure";
  constructor(
    message: string,
    readonly exitCode: ExitCode,
  ) {
    super(message);
  }
}
