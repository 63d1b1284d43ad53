import { existsSync } from "node:fs";
import { join } from "node:path";
import { parseArgs } from "node:util";
import {
  Auth,
  AuthConfigError,
  authLimits,
  type Principal,
  Role,
  secretFileName,
} from "../gateway/auth.ts";
import { parseOrUsage } from "./args.ts";
import type { Command } from "./command.ts";
import { parseDurationMs } from "./duration.ts";
import { CliFailure, ExitCode, UsageError } from "./errors.ts";

const roles: readonly string[] = Object.values(Role);

const usage = `Usage: stockd token --sub ID --role ROLE [--data DIR] [--ttl DURATION]

Prints a token (a JWT) that stockd serve on the same data directory, or with
the same STOCKD_JWT_SECRET, accepts: the token and a newline on stdout, so
that scripts can write TOKEN=$(stockd token --sub ops --role admin).

The signing secret is STOCKD_JWT_SECRET (at least 32 bytes), else
DIR/jwt.secret, generated here (as serve would) when missing.

Options:
  --sub ID          whom the token names: 1 to ${authLimits.subjectLengthMax} characters
  --role ROLE       ${roles.join(", ")}
  --data DIR        data directory [STOCKD_DATA; default ./data]
  --ttl DURATION    how long the token is good for: 30s, 15m, 1h, 8760h
                    [default 1h; from 1s to a year]
  -h, --help        this help
`;

export interface TokenSettings {
  principal: Principal;
  dataDir: string;
  ttlMs: number;
}

export function tokenSettings(
  argv: string[],
  env: Record<string, string | undefined>,
): TokenSettings {
  const { values } = parseOrUsage(() =>
    parseArgs({
      args: argv,
      options: {
        sub: { type: "string" },
        role: { type: "string" },
        data: { type: "string" },
        ttl: { type: "string" },
      },
      strict: true,
      allowPositionals: false,
    }),
  );
  const { sub, role } = values;
  if (sub === undefined) throw new UsageError("--sub ID is required");
  if (sub.length === 0 || sub.length > authLimits.subjectLengthMax) {
    throw new UsageError(`--sub must be 1 to ${authLimits.subjectLengthMax} characters`);
  }
  if (role === undefined) throw new UsageError("--role ROLE is required");
  if (!roles.includes(role)) {
    throw new UsageError(`--role must be one of ${roles.join(", ")}, not '${role}'`);
  }
  if (values.data === "") throw new UsageError("--data must not be empty");
  const fromEnv = env.STOCKD_DATA;
  const dataDir = values.data ?? (fromEnv === undefined || fromEnv === "" ? "./data" : fromEnv);
  return {
    principal: { sub, role: role as Role },
    dataDir,
    ttlMs: values.ttl === undefined ? authLimits.tokenTtlMsDefault : ttl(values.ttl),
  };
}

function ttl(text: string): number {
  const ms = parseDurationMs(text);
  if (ms === null) {
    throw new UsageError(`--ttl must be a duration such as 30s, 15m, 1h or 8760h, not '${text}'`);
  }
  if (ms < authLimits.tokenTtlMsMin || ms > authLimits.tokenTtlMsMax) {
    throw new UsageError(`--ttl must be between 1s and a year (8760h), not ${text}`);
  }
  return ms;
}

async function run(argv: string[]): Promise<number> {
  const settings = tokenSettings(argv, process.env);
  const secretPath = join(settings.dataDir, secretFileName);
  const secretFromEnv = (process.env.STOCKD_JWT_SECRET ?? "") !== "";
  const generating = !secretFromEnv && !existsSync(secretPath);
  let auth: Auth;
  try {
    auth = await Auth.open(settings.dataDir);
  } catch (err) {
    if (err instanceof AuthConfigError) throw new CliFailure(err.message, ExitCode.Usage);
    throw err;
  }
  // A mistyped --data makes a new secret that no server knows: say so.
  if (generating) process.stderr.write(`stockd token: generated a new secret in ${secretPath}\n`);
  process.stdout.write(`${await auth.sign(settings.principal, settings.ttlMs)}\n`);
  return ExitCode.Ok;
}

export const tokenCommand: Command = {
  name: "token",
  summary: "print a token (JWT) that serve accepts, for a subject and role",
  usage,
  run,
};
