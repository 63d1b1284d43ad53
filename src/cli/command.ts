/** One command of the stockd CLI. `run` returns the exit code; it throws
 * UsageError for a bad command line, and lets DataDirError and
 * CorruptionError through to the one handler in main.ts. */
export interface Command {
  /** As typed: `verify`, `journal dump`. */
  name: string;
  /** One line for the overview. */
  summary: string;
  usage: string;
  run(argv: string[]): Promise<number>;
}
