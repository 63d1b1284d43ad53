// The peer systems of the comparison benchmark, each a `Driver`
// (bench/lib/scenario.ts): PostgreSQL with the seed article's conditional
// UPDATE through node-postgres and through pgbench, each with
// synchronous_commit on (durable) and off, and Redis with the same
// check-and-move in Lua. A driver whose server or tool is missing throws
// `Skipped` from `run`, saying how to point it elsewhere (STOCKD_BENCH_PG,
// STOCKD_BENCH_REDIS, STOCKD_BENCH_PGBENCH).

import type { Driver } from "../lib/scenario.ts";
import { type PeerConfig, peerConfig } from "./common.ts";
import { pgbenchDriver } from "./pgbench.ts";
import { postgresDriver } from "./postgres.ts";
import { redisDriver } from "./redis.ts";

export { defaultPgUrl, defaultRedisUrl, type PeerConfig, peerConfig } from "./common.ts";
export type { SyncMode } from "./pg_db.ts";
export { pgbenchDriver, postgresDriver, redisDriver };

export const peerKinds = ["postgres", "pgbench", "redis"] as const;
export type PeerKind = (typeof peerKinds)[number];

/** The drivers of the given kinds, in the order of `peerKinds`: both
 * synchronous_commit settings for each PostgreSQL client. */
export function peerDrivers(
  kinds: readonly PeerKind[] = peerKinds,
  config: PeerConfig = peerConfig(),
): Driver[] {
  const drivers: Driver[] = [];
  if (kinds.includes("postgres")) {
    drivers.push(postgresDriver("on", config), postgresDriver("off", config));
  }
  if (kinds.includes("pgbench")) {
    drivers.push(pgbenchDriver("on", config), pgbenchDriver("off", config));
  }
  if (kinds.includes("redis")) drivers.push(redisDriver(config));
  return drivers;
}
