import { existsSync } from "node:fs";
import { afterAll, beforeAll, describe, it } from "vitest";
import { Auth } from "../../src/gateway/auth.ts";
import { cli, removeDir, tempDir } from "./support.ts";

// `stockd token` as a child process: what it prints is a token that an Auth
// on the same data directory (what serve opens) accepts.

let root: string;
let dirs = 0;

beforeAll(() => {
  root = tempDir();
});

afterAll(() => removeDir(root));

const freshDir = () => `${root}/data-${++dirs}`;
const secret = "cli-token-test-secret-0123456789-abcdefgh";

describe.concurrent("stockd token", () => {
  it("prints a token that the data directory's secret verifies", async ({ expect }) => {
    const dir = freshDir();
    const r = await cli(["token", "--sub", "ops", "--role", "admin", "--data", dir]);
    expect(r.code).toBe(0);
    expect(r.stdout).toMatch(/^[\w-]+\.[\w-]+\.[\w-]+\n$/);
    expect(r.stderr).toBe(`stockd token: generated a new secret in ${dir}/jwt.secret\n`);
    const auth = await Auth.open(dir, { env: {} });
    expect(await auth.verify(`Bearer ${r.stdout.trim()}`)).toEqual({
      ok: true,
      principal: { sub: "ops", role: "admin" },
    });

    // Once the secret exists it is reused, quietly.
    const again = await cli(["token", "--sub", "svc", "--role", "service", "--data", dir]);
    expect(again.stderr).toBe("");
    expect((await auth.verify(`Bearer ${again.stdout.trim()}`)).ok).toBe(true);
  });

  it("takes STOCKD_DATA, and --ttl", async ({ expect }) => {
    const dir = freshDir();
    const r = await cli(["token", "--sub", "alice", "--role", "customer", "--ttl", "90s"], {
      STOCKD_DATA: dir,
    });
    expect(r.code).toBe(0);
    const token = r.stdout.trim();
    const claims = JSON.parse(Buffer.from(token.split(".")[1]!, "base64url").toString());
    expect(claims.exp - claims.iat).toBe(90);
    let nowMs = Date.now();
    const auth = await Auth.open(dir, { env: {}, now: () => nowMs });
    expect((await auth.verify(`Bearer ${token}`)).ok).toBe(true);
    nowMs = claims.exp * 1000;
    expect((await auth.verify(`Bearer ${token}`)).ok).toBe(false);
  });

  it("signs with STOCKD_JWT_SECRET when set, and writes no secret file", async ({ expect }) => {
    const dir = freshDir();
    const r = await cli(["token", "--sub", "svc", "--role", "service", "--data", dir], {
      STOCKD_JWT_SECRET: secret,
    });
    expect(r.code).toBe(0);
    expect(r.stderr).toBe("");
    expect(existsSync(dir)).toBe(false);
    const auth = await Auth.open(freshDir(), { secret, env: {} });
    expect(await auth.verify(`Bearer ${r.stdout.trim()}`)).toEqual({
      ok: true,
      principal: { sub: "svc", role: "service" },
    });
  });

  it("refuses a STOCKD_JWT_SECRET that is too short, exit 2", async ({ expect }) => {
    const r = await cli(["token", "--sub", "a", "--role", "admin", "--data", freshDir()], {
      STOCKD_JWT_SECRET: "short",
    });
    expect(r.code).toBe(2);
    expect(r.stdout).toBe("");
    expect(r.stderr).toBe(
      "stockd: STOCKD_JWT_SECRET is 5 bytes; a JWT secret must be at least 32 bytes\n",
    );
  });

  it.for([
    [
      ["--sub", "a", "--role", "root"],
      "--role must be one of admin, service, customer, not 'root'",
    ],
    [["--role", "admin"], "--sub ID is required"],
    [["--sub", "a"], "--role ROLE is required"],
    [["--sub", "", "--role", "admin"], "--sub must be 1 to 128 characters"],
    [["--sub", "a", "--role", "admin", "--ttl", "1d"], "--ttl must be a duration"],
    [["--sub", "a", "--role", "admin", "--ttl", "500ms"], "--ttl must be between 1s and a year"],
    [["--sub", "a", "--role", "admin", "--ttl", "8761h"], "--ttl must be between 1s and a year"],
    [["--sub", "a", "--role", "admin", "extra"], "Unexpected argument 'extra'"],
  ] as const)("usage error %j exits 2", async ([args, message], { expect }) => {
    const dir = freshDir();
    const r = await cli(["token", ...args, "--data", dir]);
    expect(r.code).toBe(2);
    expect(r.stdout).toBe("");
    expect(r.stderr).toContain(`stockd token: ${message}`);
    expect(r.stderr).toContain("Usage: stockd token --sub ID --role ROLE");
    expect(existsSync(dir)).toBe(false);
  });

  it("prints its usage for --help, and is in the overview", async ({ expect }) => {
    for (const args of [
      ["token", "--help"],
      ["help", "token"],
    ]) {
      const r = await cli(args);
      expect(r.code).toBe(0);
      expect(r.stdout).toMatch(/^Usage: stockd token --sub ID --role ROLE/);
      expect(r.stdout).toContain("STOCKD_JWT_SECRET");
    }
    const overview = await cli(["--help"]);
    expect(overview.stdout).toMatch(/\n {2}token {11}print a token/);
  });
});
