import { mkdirSync } from "node:fs";
import { join } from "node:path";
import { type Database, open, type RootDatabase } from "lmdb";
import { DataDirError, type Durability } from "./store.ts";

// The gateway's records: warehouses, products, carts, orders and the
// idempotency keys of checkouts, in their own LMDB environment beside the
// journal (`DIR/gateway.mdb`). Records are JSON values under string keys.
// A write resolves once durable: LMDB groups the writes of one event-loop
// turn into one transaction and, in fsync mode, syncs it before resolving.

export const RecordKind = {
  Warehouse: "warehouses",
  Product: "products",
  Cart: "carts",
  Order: "orders",
  Key: "keys",
} as const;
export type RecordKind = (typeof RecordKind)[keyof typeof RecordKind];

export interface RecordWrite {
  kind: RecordKind;
  key: string;
  /** null removes the record. */
  value: unknown;
}

/** Replicates the gateway's record writes: stores them in the cluster,
 * then here (`writeLocal`), so that this store never holds a write the
 * cluster does not. */
export interface RecordReplica {
  replicateRecords(writes: RecordWrite[]): Promise<void>;
}

export class RecordStore {
  /** Where writes are replicated (a cluster node's), else null. */
  replica: RecordReplica | null = null;

  private constructor(
    private readonly root: RootDatabase,
    private readonly dbs: Record<RecordKind, Database<unknown, string>>,
    private readonly meta: Database<unknown, string>,
  ) {}

  static open(dir: string, durability: Durability = "fsync"): RecordStore {
    let root: RootDatabase;
    try {
      mkdirSync(dir, { recursive: true });
      root = open({
        path: join(dir, "gateway.mdb"),
        overlappingSync: durability === "relaxed",
        maxDbs: 8,
        mapSize: 1 << 30,
      });
    } catch (err) {
      throw new DataDirError(`cannot open data directory ${dir}: ${(err as Error).message}`);
    }
    const dbs = {} as Record<RecordKind, Database<unknown, string>>;
    for (const kind of Object.values(RecordKind)) {
      dbs[kind] = root.openDB<unknown, string>(kind, { encoding: "json" });
    }
    return new RecordStore(root, dbs, root.openDB<unknown, string>("meta", { encoding: "json" }));
  }

  get<T>(kind: RecordKind, key: string): T | undefined {
    return this.dbs[kind].get(key) as T | undefined;
  }

  /** Every record of a kind, in key order. */
  *all<T>(kind: RecordKind): Generator<{ key: string; value: T }> {
    for (const { key, value } of this.dbs[kind].getRange()) yield { key, value: value as T };
  }

  /** Writes (and removes) every record in one transaction; resolves once
   * the transaction is durable and, with a replica, replicated. */
  async write(writes: RecordWrite[]): Promise<void> {
    if (this.replica === null) return this.writeLocal(writes);
    await this.replica.replicateRecords(writes);
  }

  /** Writes records in one transaction without replicating them (a
   * follower applying the leader's), with `meta` entries in the same one. */
  async writeLocal(
    writes: RecordWrite[],
    meta: [key: string, value: unknown][] = [],
  ): Promise<void> {
    await this.root.transaction(() => {
      for (const w of writes) {
        const db = this.dbs[w.kind];
        if (w.value === null) db.removeSync(w.key);
        else db.putSync(w.key, w.value);
      }
      for (const [k, v] of meta) this.meta.putSync(k, v);
    });
  }

  getMeta<T>(key: string): T | undefined {
    return this.meta.get(key) as T | undefined;
  }

  /** Deletes every record of every kind (a node rebuilt from a snapshot). */
  async clear(): Promise<void> {
    await this.root.transaction(() => {
      for (const db of Object.values(this.dbs)) for (const k of db.getKeys()) db.removeSync(k);
    });
  }

  async close(): Promise<void> {
    await this.root.close();
  }
}
