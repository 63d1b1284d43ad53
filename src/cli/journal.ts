import { CorruptionError, type Store } from "../persistence/index.ts";

/**
 * A view of a store whose journal ends, quietly, just before the first
 * damaged record, and which remembers that record's error. Replays over it
 * return the state up to the damage instead of throwing; the caller decides
 * whether that state is what was asked for.
 */
export function untilDamage(store: Store): { store: Store; damage: () => CorruptionError | null } {
  let damage: CorruptionError | null = null;
  function* readJournal(partition: number, fromSeq?: number) {
    try {
      yield* store.readJournal(partition, fromSeq);
    } catch (err) {
      if (!(err instanceof CorruptionError)) throw err;
      damage = err;
    }
  }
  const view = new Proxy(store, {
    get(target, property) {
      if (property === "readJournal") return readJournal;
      const value: unknown = Reflect.get(target, property, target);
      return typeof value === "function" ? value.bind(target) : value;
    },
  });
  return { store: view, damage: () => damage };
}
