// Open-addressing indexes of table slots (the open-hold and remembered-
// request tables): cells hold slot + 1, 0 marks an empty cell, probing is
// linear, and deletion shifts entries back so there are no tombstones.

/** Puts `entry` (slot + 1) in the first free cell from `home`. */
export function cellInsert(cells: Int32Array, home: number, entry: number): void {
  const mask = cells.length - 1;
  let i = home;
  while (cells[i] !== 0) i = (i + 1) & mask;
  cells[i] = entry;
}

/** Empties cell `i`, shifting back the entries after it whose home the hole
 * now serves. `homeOf(entry)` is an entry's home cell. */
export function cellRemove(cells: Int32Array, i: number, homeOf: (entry: number) => number): void {
  const mask = cells.length - 1;
  for (let j = (i + 1) & mask; cells[j] !== 0; j = (j + 1) & mask) {
    const home = homeOf(cells[j]!);
    const between = i <= j ? home > i && home <= j : home > i || home <= j;
    if (!between) {
      cells[i] = cells[j]!;
      i = j;
    }
  }
  cells[i] = 0;
}
