import { statSync } from "node:fs";
import { DataDirError, Store, type StoreMeta } from "../persistence/index.ts";

export interface OpenedDataDir {
  store: Store;
  meta: StoreMeta;
}

/**
 * Opens an existing data directory for the offline tools. It is always
 * checked read-only first, so that a mistyped path is reported rather than
 * turned into a new, empty data directory; `writable` then reopens it for
 * writing (snapshots).
 */
export async function openDataDir(dir: string, writable = false): Promise<OpenedDataDir> {
  const stat = statSync(dir, { throwIfNoEntry: false });
  if (stat === undefined) throw new DataDirError(`data directory ${dir} does not exist`);
  if (!stat.isDirectory()) throw new DataDirError(`${dir} is not a directory`);
  let store: Store;
  try {
    store = Store.open(dir, { readOnly: true });
  } catch (err) {
    const detail = (err as Error).message.replace(/^cannot open data directory .*?: /, "");
    throw new DataDirError(`${dir} is not a stockd data directory, or cannot be read (${detail})`);
  }
  let meta: StoreMeta | null;
  try {
    meta = store.readMeta();
  } catch (err) {
    await store.close();
    throw err;
  }
  if (meta === null) {
    await store.close();
    throw new DataDirError(`${dir} is not a stockd data directory (it has no stockd metadata)`);
  }
  if (!writable) return { store, meta };
  await store.close();
  return { store: Store.open(dir), meta };
}

/** The partitions a command covers: all, or the one asked for. */
export function selectPartitions(dir: string, meta: StoreMeta, partition?: number): number[] {
  if (partition === undefined) return [...Array(meta.partitionCount).keys()];
  if (partition >= meta.partitionCount) {
    throw new DataDirError(
      `partition ${partition} does not exist: ${dir} has ${meta.partitionCount} partitions (0..${meta.partitionCount - 1})`,
    );
  }
  return [partition];
}
