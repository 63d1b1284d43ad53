import assert from "node:assert/strict";
import { createHash } from "node:crypto";
import { Encoder, Index } from "flexsearch";

// Full-text search over products, kept in step with the catalog, with
// cursors that stay valid while products are added. Products are known here
// by their ordinal, the creation sequence number the catalog gives each one
// (1, 2, 3...), so a page is "the matches after ordinal N in increasing
// order" and a product created later sorts after every cursor given before.
//
// Flexsearch ranks matches by relevance, not by ordinal; a search therefore
// asks it for every match up to `searchMatchCountMax`, sorts them by ordinal
// and keeps those after the cursor.

/** Matches one search considers: a page of a 10,000-match keyword costs
 * about half a millisecond (collect, sort, slice); without a bound one short prefix ("a") over a million
 * products would sort a million on every page.
 *
 * Limitation: a keyword matching more products than this pages through only
 * the `searchMatchCountMax` most relevant ones (the result says `truncated`).
 * Pages over that subset are still in order with no repeats (every page
 * starts strictly after the cursor), but a product added between pages can
 * push an unseen one out of the subset, so that one may be skipped. A
 * keyword this broad is better narrowed than paged. */
export const searchMatchCountMax = 10_000;

/** Characters in a keyword: a few words. The caller validates it (as
 * INVALID_ARGUMENT) before searching; a longer one here is a bug. */
export const keywordLengthMax = 200;

/** Characters of a word that are indexed. Forward tokenization indexes every
 * prefix of a word, so one 5,000-character "word" in a description would
 * otherwise add 5,000 keys; no real word is longer than 32 characters, and a
 * longer query word matches on its first 32. */
export const termLengthMax = 32;

/** Characters in a cursor: ours are at most 60; anything longer is not one
 * of ours and is refused before it is decoded. */
export const cursorLengthMax = 128;

// Words are runs of letters, marks and digits: keeping marks (\p{M}) inside
// words keeps Devanagari and other scripts whose vowel signs are marks in
// one piece. Case and Latin accents are folded away: "Café" is "cafe".
const wordSplit = /[^\p{L}\p{M}\p{N}]+/u;
const combiningAccents = /[\u0300-\u036f]/g;
const longWord = new RegExp(`[\\p{L}\\p{M}\\p{N}]{${termLengthMax + 1},}`, "gu");

function fold(text: string): string {
  return text
    .normalize("NFKD")
    .replace(combiningAccents, "")
    .toLowerCase()
    .replace(longWord, (word) => word.slice(0, termLengthMax));
}

// One encoder for every index and for cursors: stateless with its cache off
// (the cache would start a timer on every miss).
const encoder = new Encoder({
  normalize: fold,
  split: wordSplit,
  numeric: false, // "123456" is one word, found by "123", not by "456"
  dedupe: false, // "aple" does not find "apple"
  cache: false,
});

/** The words a keyword is searched by, as one string: two keywords with
 * the same words ("iPhone  Café", "iphone cafe") find the same products. */
export function normalizeKeyword(keyword: string): string {
  return encoder.encode(keyword).join(" ");
}

export interface ProductText {
  name: string;
  description: string;
}

export interface SearchPage {
  /** Matching ordinals after the cursor, increasing, at most `limit`. */
  ordinals: number[];
  /** Another page follows the last ordinal here. */
  more: boolean;
  /** The keyword matched more than `searchMatchCountMax` products and only
   * the most relevant of them were considered (see there). */
  truncated: boolean;
}

const emptyPage: SearchPage = { ordinals: [], more: false, truncated: false };

export class ProductIndex {
  // Name and description in one field, so a keyword's words may fall in
  // either. fastupdate keeps each product's index entries, so removing or
  // updating one does not scan the whole index.
  private readonly index = new Index({ tokenize: "forward", encoder, fastupdate: true });
  // Kept here, not asked of flexsearch: it registers no product whose text
  // has no words, so its `contain` would deny one the catalog holds.
  private readonly ordinals = new Set<number>();

  /** ordinal: the product's creation sequence number (unique, increasing,
   * assigned by the catalog). */
  add(ordinal: number, text: ProductText): void {
    assertOrdinal(ordinal);
    assert(!this.ordinals.has(ordinal), `search: product ${ordinal} is already indexed`);
    this.index.add(ordinal, searchableText(text));
    this.ordinals.add(ordinal);
  }

  /** Replace a product's text (re-index). */
  update(ordinal: number, text: ProductText): void {
    assertOrdinal(ordinal);
    assert(this.ordinals.has(ordinal), `search: product ${ordinal} is not indexed`);
    this.index.update(ordinal, searchableText(text));
  }

  remove(ordinal: number): void {
    assertOrdinal(ordinal);
    assert(this.ordinals.has(ordinal), `search: product ${ordinal} is not indexed`);
    this.index.remove(ordinal);
    this.ordinals.delete(ordinal);
  }

  /** Ordinals of products matching every word of `keyword` (in name or
   * description), case- and accent-insensitive, each word a prefix of an
   * indexed word ("iph" finds "iPhone"), in increasing ordinal order,
   * strictly after `afterOrdinal` (0: from the start), at most `limit`.
   *
   * A keyword without words ("", "  ", "!!") is not a search: it finds
   * nothing, and the caller lists all products itself. The caller bounds
   * the keyword at `keywordLengthMax` and `limit` at its page size. */
  search(keyword: string, afterOrdinal: number, limit: number): SearchPage {
    assert(keyword.length <= keywordLengthMax, "search: keyword too long");
    assert(Number.isSafeInteger(afterOrdinal) && afterOrdinal >= 0, "search: bad afterOrdinal");
    assert(Number.isInteger(limit) && limit >= 1 && limit <= searchMatchCountMax, "search: limit");
    if (normalizeKeyword(keyword) === "") return emptyPage;
    // One more than the bound tells whether the bound cut the matches off.
    // Flexsearch 0.8 answers undefined rather than [] for a word whose
    // products were all removed. Its array may be the index's own: read only.
    const found = this.index.search(keyword, { limit: searchMatchCountMax + 1 }) ?? [];
    const truncated = found.length > searchMatchCountMax;
    const after: number[] = [];
    for (const id of truncated ? found.slice(0, searchMatchCountMax) : found) {
      assert(typeof id === "number", "search: non-numeric id in the index");
      if (id > afterOrdinal) after.push(id);
    }
    after.sort((a, b) => a - b);
    return { ordinals: after.slice(0, limit), more: after.length > limit, truncated };
  }

  get size(): number {
    return this.ordinals.size;
  }
}

function assertOrdinal(ordinal: number): void {
  assert(Number.isSafeInteger(ordinal) && ordinal >= 1, `search: bad ordinal ${ordinal}`);
}

function searchableText(text: ProductText): string {
  // A newline between the two so the last word of the name and the first of
  // the description never join into one.
  return `${text.name}\n${text.description}`;
}

// A cursor is base64url of {"a": afterOrdinal, "h": check}, where check is
// a hash of the ordinal and the normalized keyword. The hash binds the cursor
// to its keyword without carrying the keyword (cursors stay short whatever
// the keyword's length or script) and catches a cursor edited by hand or
// damaged in transit. It has no secret: a client can forge a cursor, which
// only moves its own place in its own results.
const cursorCheckBytes = 12;
const cursorText = /^[A-Za-z0-9_-]+$/;

function cursorCheck(afterOrdinal: number, keyword: string): string {
  return createHash("sha256")
    .update(`stockd-cursor-v1\n${afterOrdinal}\n${normalizeKeyword(keyword)}`)
    .digest()
    .subarray(0, cursorCheckBytes)
    .toString("base64url");
}

/** An opaque cursor for the page after `afterOrdinal` of `keyword`'s
 * results. */
export function encodeCursor(afterOrdinal: number, keyword: string): string {
  assert(Number.isSafeInteger(afterOrdinal) && afterOrdinal >= 0, "search: bad cursor ordinal");
  const body = JSON.stringify({ a: afterOrdinal, h: cursorCheck(afterOrdinal, keyword) });
  return Buffer.from(body, "utf8").toString("base64url");
}

/** The ordinal a cursor continues after, or null for a cursor that is
 * malformed, altered, or made for another keyword. */
export function decodeCursor(cursor: string, keyword: string): number | null {
  if (cursor.length > cursorLengthMax || !cursorText.test(cursor)) return null;
  const bytes = Buffer.from(cursor, "base64url");
  // Buffer decoding skips what it cannot read; only the canonical text of
  // the bytes is a cursor.
  if (bytes.toString("base64url") !== cursor) return null;
  let body: unknown;
  try {
    body = JSON.parse(bytes.toString("utf8"));
  } catch {
    return null;
  }
  if (typeof body !== "object" || body === null || Array.isArray(body)) return null;
  if (Object.keys(body).length !== 2 || !("a" in body) || !("h" in body)) return null;
  const { a, h } = body;
  if (typeof a !== "number" || !Number.isSafeInteger(a) || a < 0) return null;
  if (typeof h !== "string" || h !== cursorCheck(a, keyword)) return null;
  return a;
}
