import { describe, expect, it } from "vitest";
import { parseUntil } from "../../src/cli/args.ts";
import { parseDurationMs } from "../../src/cli/duration.ts";
import { UsageError } from "../../src/cli/errors.ts";
import { serveSettings } from "../../src/cli/serve.ts";

describe("parseDurationMs", () => {
  it.each([
    ["500ms", 500],
    ["2s", 2000],
    ["15m", 900_000],
    ["1h", 3_600_000],
    ["1h30m", 5_400_000],
    ["2m5s", 125_000],
    ["1s250ms", 1250],
    ["0s", 0],
    ["5ms", 5],
  ])("reads %s as %i ms", (text, ms) => {
    expect(parseDurationMs(text)).toBe(ms);
  });

  it.each([
    "",
    "5x",
    "15",
    "m",
    "1.5h",
    "-2s",
    " 2s",
    "2s ",
    "2 s",
    "2S",
    "30m1h",
    "1h1h",
    "1d",
    "99999999999999999999h",
    "1h".repeat(20),
  ])("refuses %j", (text) => {
    expect(parseDurationMs(text)).toBeNull();
  });
});

describe("parseUntil", () => {
  it("reads digits as a sequence number", () => {
    expect(parseUntil("0")).toEqual({ seq: 0 });
    expect(parseUntil("1200")).toEqual({ seq: 1200 });
  });

  it("reads an ISO-8601 time with its zone", () => {
    expect(parseUntil("2026-11-23T10:00:00Z")).toEqual({ timeMs: Date.UTC(2026, 10, 23, 10) });
    expect(parseUntil("2026-11-23T10:00:00.250Z")).toEqual({
      timeMs: Date.UTC(2026, 10, 23, 10, 0, 0, 250),
    });
    expect(parseUntil("2026-11-23T15:30+05:30")).toEqual({ timeMs: Date.UTC(2026, 10, 23, 10) });
  });

  it.each([
    "garbage",
    "-5",
    "12a",
    "2026-11-23",
    "2026-11-23T10:00:00",
    "2026-02-30T00:00:00Z",
    "2026-11-23T24:00:00Z",
    "2026-13-01T00:00:00Z",
    "Mon, 23 Nov 2026 10:00:00 GMT",
    "99999999999999999999",
  ])("refuses %j", (text) => {
    expect(() => parseUntil(text)).toThrow(UsageError);
  });
});

describe("serveSettings", () => {
  it("defaults", () => {
    expect(serveSettings([], {})).toEqual({
      dataDir: "./data",
      workerCount: undefined,
      partitionCount: undefined,
      durability: "fsync",
      holdDurationMs: 900_000,
      truncateDamagedTail: false,
      grpcPort: 50051,
      httpPort: 8080,
      host: "0.0.0.0",
      taxRateBps: 1800,
    });
  });

  it("reads the listeners and the tax rate", () => {
    expect(
      serveSettings(["--grpc-port", "0", "--tax-rate", "7.25%"], {
        STOCKD_HTTP_PORT: "9090",
        STOCKD_HOST: "127.0.0.1",
        STOCKD_GRPC_PORT: "1",
      }),
    ).toMatchObject({ grpcPort: 0, httpPort: 9090, host: "127.0.0.1", taxRateBps: 725 });
  });

  it("reads the environment, and a flag wins over its variable", () => {
    const env = {
      STOCKD_DATA: "/srv/stockd",
      STOCKD_WORKERS: "3",
      STOCKD_PARTITIONS: "16",
      STOCKD_DURABILITY: "relaxed",
      STOCKD_HOLD_DURATION: "10m",
    };
    expect(serveSettings([], env)).toMatchObject({
      dataDir: "/srv/stockd",
      workerCount: 3,
      partitionCount: 16,
      durability: "relaxed",
      holdDurationMs: 600_000,
    });
    expect(
      serveSettings(
        ["--data", "d", "--workers", "0", "--hold-duration", "500ms", "--truncate-damaged-tail"],
        env,
      ),
    ).toMatchObject({
      dataDir: "d",
      workerCount: 0,
      holdDurationMs: 500,
      truncateDamagedTail: true,
    });
  });

  it("reads the cluster settings, with replicated durability", () => {
    expect(
      serveSettings(
        ["--nats", "nats://n1:4222, nats://n2:4222", "--node", "a", "--lease", "1500ms"],
        {
          STOCKD_CLUSTER: "shop",
          STOCKD_REPLICAS: "3",
        },
      ),
    ).toMatchObject({
      durability: "fsync",
      cluster: {
        nats: "nats://n1:4222,nats://n2:4222",
        name: "shop",
        node: "a",
        leaseMs: 1_500,
        replicas: 3,
      },
    });
    expect(
      serveSettings(["--nats", "nats://n1:4222", "--durability", "replicated"], {}).cluster,
    ).toMatchObject({ name: "stockd", leaseMs: 3_000, replicas: undefined });
  });

  it.each([
    [["--hold-duration", "5x"], {}, "--hold-duration must be a duration"],
    [["--hold-duration", "0s"], {}, "--hold-duration must be between 1ms and 720h"],
    [["--hold-duration", "721h"], {}, "--hold-duration must be between 1ms and 720h"],
    [[], { STOCKD_HOLD_DURATION: "soon" }, "STOCKD_HOLD_DURATION must be a duration"],
    [[], { STOCKD_WORKERS: "two" }, "STOCKD_WORKERS must be a whole number"],
    [["--partitions", "0"], {}, "--partitions must be between 1 and 1024"],
    [["--durability", "sometimes"], {}, "--durability must be fsync or relaxed"],
    [["--bogus"], {}, "Unknown option '--bogus'"],
    [["extra"], {}, "Unexpected argument 'extra'"],
    [["--http-port", "65536"], {}, "--http-port must be between 0 and 65535"],
    [[], { STOCKD_GRPC_PORT: "-1" }, "STOCKD_GRPC_PORT must be"],
    [["--tax-rate", "101"], {}, "--tax-rate must be a percentage"],
    [[], { STOCKD_TAX_RATE: "lots" }, "STOCKD_TAX_RATE must be a percentage"],
    [["--node", "a"], {}, "--node needs --nats"],
    [["--cluster", "c"], {}, "--cluster needs --nats"],
    [["--lease", "2s"], {}, "--lease needs --nats"],
    [
      ["--durability", "replicated"],
      {},
      "--durability must be fsync or relaxed, not 'replicated' (replicated needs --nats)",
    ],
    [
      ["--nats", "nats://h:4222", "--durability", "fsync"],
      {},
      "with --nats the durability is replicated, not 'fsync'",
    ],
    [
      ["--nats", "http://h:4222"],
      {},
      "--nats must be URLs such as nats://127.0.0.1:4222, not 'http://h:4222'",
    ],
    [["--nats", "nats://h:4222,"], {}, "--nats must be URLs"],
    [
      ["--nats", "nats://h:4222", "--node", "a.b"],
      {},
      "--node must be 1-64 letters, digits, '-' or '_', not 'a.b'",
    ],
    [["--nats", "nats://h:4222", "--cluster", ""], {}, "--cluster must be 1-64 letters"],
    [
      ["--nats", "nats://h:4222", "--lease", "100ms"],
      {},
      "--lease must be a duration from 500ms to 1m, not '100ms'",
    ],
    [
      [],
      { STOCKD_NATS: "nats://h:4222", STOCKD_LEASE: "forever" },
      "STOCKD_LEASE must be a duration",
    ],
    [["--nats", "nats://h:4222", "--replicas", "7"], {}, "--replicas must be between 1 and 5"],
  ])("refuses %j %j", (argv, env, message) => {
    expect(() => serveSettings(argv, env)).toThrow(message);
  });
});
