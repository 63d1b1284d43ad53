// names.ts alone: every command checks arguments, and the cluster module
// would load the NATS client for all of them.
import { namePattern } from "../cluster/names.ts";
import { idError } from "../engine/index.ts";
import { UsageError } from "./errors.ts";

// Checks of command-line values. Each throws UsageError with a message that
// names the flag, so that the user sees what to fix.

/** Runs node:util parseArgs, turning its errors into usage errors. */
export function parseOrUsage<T>(parse: () => T): T {
  try {
    return parse();
  } catch (err) {
    const code = (err as { code?: unknown }).code;
    if (typeof code === "string" && code.startsWith("ERR_PARSE_ARGS_")) {
      throw new UsageError((err as Error).message.replace(/\s*\n\s*/g, " "));
    }
    throw err;
  }
}

export function requireData(value: string | undefined): string {
  if (value === undefined || value === "") throw new UsageError("--data DIR is required");
  return value;
}

/** A whole number written in digits only, within [min, max]. */
export function wholeNumber(what: string, text: string, min: number, max: number): number {
  if (!/^\d+$/.test(text)) throw new UsageError(`${what} must be a whole number, not '${text}'`);
  const n = Number(text);
  if (!(Number.isSafeInteger(n) && n >= min && n <= max)) {
    throw new UsageError(`${what} must be between ${min} and ${max}, not ${text}`);
  }
  return n;
}

export function optionalWholeNumber(
  what: string,
  text: string | undefined,
  min: number,
  max: number,
): number | undefined {
  return text === undefined ? undefined : wholeNumber(what, text, min, max);
}

/** A product or warehouse id, as the engine accepts them. */
export function optionalId(what: string, text: string | undefined): string | undefined {
  if (text === undefined) return undefined;
  const error = idError(what, text);
  if (error !== null) throw new UsageError(error);
  return text;
}

/** Where a replay stops: after a sequence number (per partition) or after
 * every event at or before a time. */
export type Until = { seq: number } | { timeMs: number };

const isoPattern =
  /^(\d{4})-(\d{2})-(\d{2})T(\d{2}):(\d{2})(?::(\d{2})(?:\.\d{1,9})?)?(?:Z|[+-](\d{2}):(\d{2}))$/;

/** Digits only: a sequence number. Otherwise an ISO-8601 date and time with
 * its zone (`2026-11-23T10:00:00Z`, `...+05:30`); a time without a zone is
 * ambiguous and refused, as is any impossible date. */
export function parseUntil(text: string): Until {
  if (/^\d+$/.test(text)) return { seq: wholeNumber("--until", text, 0, Number.MAX_SAFE_INTEGER) };
  const m = isoPattern.exec(text);
  const timeMs = m === null ? Number.NaN : Date.parse(text);
  if (m === null || !Number.isFinite(timeMs) || !validFields(m) || timeMs < 0) {
    throw new UsageError(
      `--until must be a sequence number or an ISO-8601 time with its zone (e.g. 2026-11-23T10:00:00Z), not '${text}'`,
    );
  }
  return { timeMs };
}

function validFields(m: RegExpExecArray): boolean {
  const [year, month, day, hour, minute, second, zoneHour, zoneMinute] = m
    .slice(1)
    .map((x) => (x === undefined ? 0 : Number(x)));
  // Date.parse rolls 2026-02-30 over to March and accepts 24:00: refuse both.
  const date = new Date(Date.UTC(year!, month! - 1, day!));
  return (
    date.getUTCMonth() === month! - 1 &&
    date.getUTCDate() === day &&
    hour! < 24 &&
    minute! < 60 &&
    second! < 60 &&
    zoneHour! < 24 &&
    zoneMinute! < 60
  );
}

/** NATS server addresses: `nats://host:port`, `tls://host`, `host:port`. */
export function natsUrls(urls: string[]): string[] {
  for (const u of urls) {
    if (!/^(nats|tls):\/\/[^\s/]+$/.test(u) && !/^[^\s/:]+:\d+$/.test(u)) {
      throw new UsageError(`--nats must be URLs such as nats://127.0.0.1:4222, not '${u}'`);
    }
  }
  return urls;
}

/** A cluster or node name, as NATS subjects and bucket names take it. */
export function clusterName(what: string, name: string): string {
  if (!namePattern.test(name)) {
    throw new UsageError(`${what} must be 1-64 letters, digits, '-' or '_', not '${name}'`);
  }
  return name;
}
