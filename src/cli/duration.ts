// Durations on the command line: `500ms`, `2s`, `15m`, `1h`, or a sum of
// them from the largest unit down, such as `1h30m`.

const units = [
  ["h", 3_600_000],
  ["m", 60_000],
  ["s", 1000],
  ["ms", 1],
] as const;

/** Longer texts are garbage, not durations (bounds the parse). */
const durationTextLengthMax = 32;

/** Milliseconds, or null when the text is not a duration. */
export function parseDurationMs(text: string): number | null {
  if (text.length === 0 || text.length > durationTextLengthMax) return null;
  // `ms` before `m` and `s`, so that `5ms` is not read as 5 minutes.
  const part = /(\d+)(ms|h|m|s)/y;
  let totalMs = 0;
  let lastRank = -1;
  let at = 0;
  while (at < text.length) {
    part.lastIndex = at;
    const m = part.exec(text);
    if (m === null) return null;
    const rank = units.findIndex(([unit]) => unit === m[2]);
    // Each unit at most once, largest first: `30m1h` and `1h1h` are typos.
    if (rank <= lastRank) return null;
    lastRank = rank;
    totalMs += Number(m[1]) * units[rank]![1];
    at = part.lastIndex;
  }
  return Number.isSafeInteger(totalMs) ? totalMs : null;
}
