import { existsSync, mkdirSync } from "node:fs";
import { afterAll, beforeAll, describe, it } from "vitest";
import { buildDataDir, cli, type Fixture, removeDir, tempDir } from "./support.ts";

// Bad command lines and unusable data directories exit 2 with a message and
// the command's usage on stderr; help goes to stdout and exits 0.

let root: string;
let fx: Fixture;

beforeAll(async () => {
  root = tempDir();
  fx = await buildDataDir(`${root}/data`, Date.parse("2020-03-01T10:00:00.000Z"));
});

afterAll(() => removeDir(root));

describe.concurrent("usage errors exit 2", () => {
  it.for([
    [["verify", "--data", "DATA", "--bogus"], "Unknown option '--bogus'", "Usage: stockd verify"],
    [
      ["journal", "dump", "--data", "DATA", "--partition", "-1"],
      "--partition",
      "Usage: stockd journal dump",
    ],
    [
      ["journal", "dump", "--data", "DATA", "--partition=-1"],
      "--partition must be a whole number, not '-1'",
      "Usage: stockd journal dump",
    ],
    [
      ["journal", "dump", "--data", "DATA", "--from", "x"],
      "--from must be a whole number",
      "Usage: stockd journal dump",
    ],
    [
      ["replay", "--data", "DATA", "--until", "garbage"],
      "--until must be a sequence number or an ISO-8601 time",
      "Usage: stockd replay",
    ],
    [
      ["replay", "--data", "DATA", "--product", "has space"],
      "--product must be printable ASCII",
      "Usage: stockd replay",
    ],
    [
      ["serve", "--data", "NEW", "--hold-duration", "5x"],
      "--hold-duration must be a duration",
      "Usage: stockd serve",
    ],
    [["verify"], "--data DIR is required", "Usage: stockd verify"],
    [["replay"], "--data DIR is required", "Usage: stockd replay"],
    [
      ["snapshot", "--data", "DATA", "positional"],
      "Unexpected argument 'positional'",
      "Usage: stockd snapshot",
    ],
    [["frobnicate"], "unknown command 'frobnicate'", "Usage: stockd <command>"],
    [
      ["journal", "list"],
      "unknown journal subcommand 'list'",
      "Usage: stockd journal <subcommand>",
    ],
    [[], "", "Usage: stockd <command>"],
  ] as const)("%j", async ([args, message, usage], { expect }) => {
    const r = await cli(args.map((a) => a.replace("DATA", fx.dir).replace("NEW", `${root}/new`)));
    expect(r.code).toBe(2);
    expect(r.stdout).toBe("");
    expect(r.stderr).toContain(message);
    expect(r.stderr).toContain(usage);
    expect(existsSync(`${root}/new`)).toBe(false);
  });

  it("names a data directory that does not exist, and creates nothing", async ({ expect }) => {
    const missing = `${root}/missing`;
    for (const command of [["verify"], ["replay"], ["journal", "dump"], ["snapshot"]]) {
      const r = await cli([...command, "--data", missing]);
      expect(r.code).toBe(2);
      expect(r.stderr).toBe(`stockd: data directory ${missing} does not exist\n`);
    }
    expect(existsSync(missing)).toBe(false);
  });

  it("refuses a directory that is not a stockd data directory, and leaves it alone", async ({
    expect,
  }) => {
    const other = `${root}/other`;
    mkdirSync(other);
    const r = await cli(["snapshot", "--data", other]);
    expect(r.code).toBe(2);
    expect(r.stderr).toMatch(/^stockd: .*other is not a stockd data directory/);
    expect(existsSync(`${other}/stockd.mdb`)).toBe(false);
  });

  it("refuses a partition the directory does not have", async ({ expect }) => {
    const r = await cli(["journal", "dump", "--data", fx.dir, "--partition", "4"]);
    expect(r.code).toBe(2);
    expect(r.stderr).toContain("partition 4 does not exist");
  });
});

describe.concurrent("help", () => {
  it.for([
    [["--help"], "Usage: stockd <command>"],
    [["help"], "Usage: stockd <command>"],
    [["help", "replay"], "Usage: stockd replay"],
    [["help", "journal", "dump"], "Usage: stockd journal dump"],
    [["journal", "--help"], "Usage: stockd journal <subcommand>"],
    [["journal", "dump", "--help"], "Usage: stockd journal dump"],
    [["verify", "-h"], "Usage: stockd verify"],
    [["serve", "--help"], "--grpc-port N"],
    [["token", "--help"], "Usage: stockd token"],
  ] as const)("%j", async ([args, text], { expect }) => {
    const r = await cli(args);
    expect(r.code).toBe(0);
    expect(r.stderr).toBe("");
    expect(r.stdout).toContain(text);
  });
});
