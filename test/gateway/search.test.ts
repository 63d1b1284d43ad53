import fc from "fast-check";
import { describe, expect, it } from "vitest";
import {
  decodeCursor,
  encodeCursor,
  normalizeKeyword,
  ProductIndex,
  searchMatchCountMax,
} from "../../src/gateway/search.ts";

function catalog(): ProductIndex {
  const index = new ProductIndex();
  index.add(1, { name: "iPhone 15", description: "Smartphone by Apple, 128 GB" });
  index.add(2, { name: "Galaxy S24", description: "Android phone by Samsung" });
  index.add(3, { name: "Café crème beans", description: "Arabica, roasted in Chikmagalur" });
  index.add(4, { name: "Apple pie", description: "Baked fresh every morning" });
  index.add(5, { name: "हिन्दी किताब", description: "A Hindi book" });
  return index;
}

function find(index: ProductIndex, keyword: string): number[] {
  return index.search(keyword, 0, 100).ordinals;
}

/** Every page of a search, following `more` as a client follows cursors. */
function allPages(index: ProductIndex, keyword: string, limit: number): number[][] {
  const pages: number[][] = [];
  let after = 0;
  for (;;) {
    const page = index.search(keyword, after, limit);
    pages.push(page.ordinals);
    if (!page.more) return pages;
    after = page.ordinals.at(-1)!;
  }
}

describe("ProductIndex.search", () => {
  it("finds products by words of the name and of the description", () => {
    const index = catalog();
    expect(find(index, "galaxy")).toEqual([2]);
    expect(find(index, "samsung")).toEqual([2]);
    expect(find(index, "chikmagalur")).toEqual([3]);
    expect(find(index, "apple")).toEqual([1, 4]);
    expect(find(index, "15")).toEqual([1]);
    expect(find(index, "nokia")).toEqual([]);
  });

  it("matches every word, across name and description together", () => {
    const index = catalog();
    expect(find(index, "apple iphone")).toEqual([1]);
    expect(find(index, "iphone apple")).toEqual([1]);
    expect(find(index, "apple pie")).toEqual([4]);
    expect(find(index, "by phone")).toEqual([2]); // "phone" is no prefix of "iphone"
    expect(find(index, "apple samsung")).toEqual([]);
    expect(find(index, "iphone nokia")).toEqual([]);
  });

  it("ignores case and accents", () => {
    const index = catalog();
    expect(find(index, "IPHONE")).toEqual([1]);
    expect(find(index, "cafe creme")).toEqual([3]);
    expect(find(index, "CAFÉ")).toEqual([3]);
    expect(find(index, "Crème")).toEqual([3]);
  });

  it("matches words by prefix, not by infix", () => {
    const index = catalog();
    expect(find(index, "iph")).toEqual([1]);
    expect(find(index, "i")).toEqual([1, 3]); // "iphone", "in"
    expect(find(index, "gal s2")).toEqual([2]);
    expect(find(index, "phone")).toEqual([2]); // "smartphone" does not start with it
    expect(find(index, "12")).toEqual([1]);
    expect(find(index, "28")).toEqual([]);
  });

  it("splits words on punctuation, keeps non-Latin words whole", () => {
    const index = catalog();
    expect(find(index, "arabica,")).toEqual([3]);
    expect(find(index, "smartphone-apple")).toEqual([1]);
    expect(find(index, "हिन्दी")).toEqual([5]);
    expect(find(index, "किताब")).toEqual([5]);
  });

  it("treats a keyword without words as no search (empty result)", () => {
    const index = catalog();
    for (const keyword of ["", "   ", "!!", "-"]) {
      expect(index.search(keyword, 0, 20)).toEqual({ ordinals: [], more: false, truncated: false });
    }
  });

  it("is correct past flexsearch's default limit of 100", () => {
    const index = new ProductIndex();
    for (let o = 1; o <= 150; o++) index.add(o, { name: `widget ${o}`, description: "" });
    expect(index.search("widget", 0, 150).ordinals).toHaveLength(150);
  });

  it("throws on caller bugs: bad ordinals, limits, over-long keywords", () => {
    const index = catalog();
    expect(() => index.add(1, { name: "again", description: "" })).toThrow();
    expect(() => index.add(0, { name: "zero", description: "" })).toThrow();
    expect(() => index.add(1.5, { name: "half", description: "" })).toThrow();
    expect(() => index.update(99, { name: "missing", description: "" })).toThrow();
    expect(() => index.remove(99)).toThrow();
    expect(() => index.search("apple", -1, 20)).toThrow();
    expect(() => index.search("apple", 0, 0)).toThrow();
    expect(() => index.search("a".repeat(201), 0, 20)).toThrow();
    expect(index.search("a".repeat(200), 0, 20).ordinals).toEqual([]);
  });
});

describe("ProductIndex paging", () => {
  it("pages through 250 matches 20 at a time: each once, in order, then more=false", () => {
    const index = new ProductIndex();
    const expected: number[] = [];
    for (let o = 1; o <= 500; o++) {
      // Every other product matches; the relevance of each differs (the word
      // sits at different positions), so flexsearch's order is not ours.
      const match = o % 2 === 0;
      const padding = "filler ".repeat(o % 7);
      index.add(o, {
        name: `${padding}${match ? "Laptop" : "Tablet"} model ${o}`,
        description: match ? "thin" : "light",
      });
      if (match) expected.push(o);
    }
    expect(index.size).toBe(500);
    const pages = allPages(index, "laptop thin", 20);
    expect(pages).toHaveLength(13);
    expect(pages.slice(0, 12).every((p) => p.length === 20)).toBe(true);
    expect(pages.at(-1)).toHaveLength(10);
    expect(pages.flat()).toEqual(expected);
    // The last full page of an exact multiple says there is no more.
    expect(index.search("laptop", 460, 20)).toEqual({
      ordinals: expected.filter((o) => o > 460),
      more: false,
      truncated: false,
    });
  });

  it("shows products added between pages after the cursor, skipping and repeating none", () => {
    const index = new ProductIndex();
    let next = 1;
    const add = (name: string) => {
      index.add(next, { name, description: "" });
      next += 1;
    };
    for (let i = 0; i < 45; i++) add(i % 3 === 0 ? "desk lamp" : "desk chair");
    const seen: number[] = [];
    let after = 0;
    for (let page = 0; ; page++) {
      const found = index.search("desk", after, 10);
      seen.push(...found.ordinals);
      // A few new products arrive between every two pages.
      for (let i = 0; i < 4; i++) add(i % 2 === 0 ? "desk fan" : "floor fan");
      if (!found.more) break;
      after = found.ordinals.at(-1)!;
      expect(page).toBeLessThan(100);
    }
    // Seen: strictly increasing (no repeats, in order)...
    expect(seen).toEqual([...new Set(seen)].sort((a, b) => a - b));
    // ...and every "desk" product up to the last ordinal seen (no skips).
    const last = seen.at(-1)!;
    expect(seen).toEqual(find(index, "desk").filter((o) => o <= last));
    // The ones added after the last page are found from its cursor.
    const rest = index.search("desk", last, 100).ordinals;
    expect(rest.every((o) => o > last)).toBe(true);
    expect([...seen, ...rest]).toEqual(allPages(index, "desk", 100).flat());
  });

  it("pages over the most relevant searchMatchCountMax matches and says truncated", () => {
    const index = new ProductIndex();
    const total = searchMatchCountMax + 50;
    for (let o = 1; o <= total; o++) index.add(o, { name: `bolt m${o % 10}`, description: "" });
    const first = index.search("bolt", 0, 100);
    expect(first.truncated).toBe(true);
    expect(first.more).toBe(true);
    const seen = allPages(index, "bolt", 100).flat();
    expect(seen).toHaveLength(searchMatchCountMax);
    expect(seen).toEqual([...new Set(seen)].sort((a, b) => a - b));
    // A narrower keyword is exact again.
    const narrow = index.search("bolt m3", 0, 100);
    expect(narrow.truncated).toBe(false);
    expect(allPages(index, "bolt m3", 100).flat()).toHaveLength(total / 10);
  });
});

describe("ProductIndex update and remove", () => {
  it("update replaces the text", () => {
    const index = catalog();
    index.update(2, { name: "Pixel 8", description: "Android phone by Google" });
    expect(find(index, "galaxy")).toEqual([]);
    expect(find(index, "samsung")).toEqual([]);
    expect(find(index, "pixel")).toEqual([2]);
    expect(find(index, "google android")).toEqual([2]);
    expect(index.size).toBe(5);
  });

  it("remove takes a product out", () => {
    const index = catalog();
    index.remove(1);
    expect(find(index, "apple")).toEqual([4]);
    expect(find(index, "iphone")).toEqual([]);
    expect(index.size).toBe(4);
    index.add(1, { name: "iPhone 15", description: "back again" });
    expect(find(index, "iphone")).toEqual([1]);
    expect(index.size).toBe(5);
  });

  it("indexes at most the first 32 characters of a word", () => {
    const index = new ProductIndex();
    const long = `super${"a".repeat(5000)}`;
    index.add(1, { name: "odd", description: long });
    expect(find(index, "super")).toEqual([1]);
    expect(find(index, long.slice(0, 32))).toEqual([1]);
    expect(find(index, long.slice(0, 200))).toEqual([1]);
    expect(find(index, "supera")).toEqual([1]);
    expect(find(index, "superb")).toEqual([]);
  });

  it("keeps a product whose text has no words, which flexsearch does not register", () => {
    const index = new ProductIndex();
    index.add(1, { name: "", description: "--" });
    expect(index.size).toBe(1);
    expect(() => index.add(1, { name: "again", description: "" })).toThrow();
    index.update(1, { name: "Lamp", description: "" });
    expect(find(index, "lamp")).toEqual([1]);
    index.update(1, { name: "", description: "" });
    expect(find(index, "lamp")).toEqual([]);
    index.remove(1);
    expect(index.size).toBe(0);
  });

  it("never joins the last word of the name to the first of the description", () => {
    const index = new ProductIndex();
    index.add(1, { name: "blue", description: "berry jam" });
    expect(find(index, "blueberry")).toEqual([]);
    expect(find(index, "blue berry")).toEqual([1]);
  });
});

describe("ProductIndex against a reference model (property)", () => {
  // Words that share prefixes, case and accents, so that prefix matching,
  // folding and re-indexing all matter.
  const vocabulary = [
    "Apple",
    "apples",
    "APP",
    "iPhone",
    "phone",
    "Café",
    "cafe",
    "crème",
    "Galaxy",
    "gal",
    "15",
    "150",
    "x-ray",
  ];
  const text = fc
    .array(fc.constantFrom(...vocabulary), { maxLength: 4 })
    .map((words) => words.join(" "));
  const op = fc.oneof(
    fc.record({ kind: fc.constant("add" as const), name: text, description: text }),
    fc.record({
      kind: fc.constant("update" as const),
      pick: fc.nat(),
      name: text,
      description: text,
    }),
    fc.record({ kind: fc.constant("remove" as const), pick: fc.nat() }),
    fc.record({
      kind: fc.constant("search" as const),
      keyword: fc
        .array(fc.constantFrom(...vocabulary, "ap", "C", "ph", "1", "zz"), {
          minLength: 1,
          maxLength: 3,
        })
        .map((w) => w.join(" ")),
      after: fc.nat({ max: 40 }),
      limit: fc.constantFrom(1, 2, 3, 20),
    }),
  );

  const words = (t: string) =>
    t
      .normalize("NFD")
      .replace(/[\u0300-\u036f]/g, "")
      .toLowerCase()
      .split(/[^a-z0-9]+/)
      .filter((w) => w !== "");

  it("answers every search as brute force over the same products", () => {
    fc.assert(
      fc.property(fc.array(op, { maxLength: 60 }), (ops) => {
        const index = new ProductIndex();
        const model = new Map<number, string>();
        let next = 1;
        for (const o of ops) {
          const live = [...model.keys()];
          if (o.kind === "add") {
            index.add(next, o);
            model.set(next, `${o.name} ${o.description}`);
            next += 1;
          } else if (o.kind === "update" && live.length > 0) {
            const ordinal = live[o.pick % live.length]!;
            index.update(ordinal, o);
            model.set(ordinal, `${o.name} ${o.description}`);
          } else if (o.kind === "remove" && live.length > 0) {
            const ordinal = live[o.pick % live.length]!;
            index.remove(ordinal);
            model.delete(ordinal);
          } else if (o.kind === "search") {
            const query = words(o.keyword);
            const matches = [...model]
              .filter(([, t]) => query.every((q) => words(t).some((w) => w.startsWith(q))))
              .map(([ordinal]) => ordinal)
              .filter((ordinal) => ordinal > o.after)
              .sort((a, b) => a - b);
            expect(index.search(o.keyword, o.after, o.limit)).toEqual({
              ordinals: matches.slice(0, o.limit),
              more: matches.length > o.limit,
              truncated: false,
            });
          }
          expect(index.size).toBe(model.size);
        }
      }),
      { numRuns: 300 },
    );
  });
});

describe("cursors", () => {
  it("round-trip for the same keyword, normalized", () => {
    for (const after of [0, 1, 20, 123456, Number.MAX_SAFE_INTEGER]) {
      const cursor = encodeCursor(after, "Apple iPhone");
      expect(cursor).toMatch(/^[A-Za-z0-9_-]+$/);
      expect(decodeCursor(cursor, "Apple iPhone")).toBe(after);
      expect(decodeCursor(cursor, "  apple   IPHONE ")).toBe(after);
    }
    expect(decodeCursor(encodeCursor(7, "café"), "CAFE")).toBe(7);
    expect(decodeCursor(encodeCursor(7, ""), "")).toBe(7);
    expect(normalizeKeyword("  Café,  Crème ")).toBe("cafe creme");
  });

  it("stay short whatever the keyword", () => {
    expect(encodeCursor(Number.MAX_SAFE_INTEGER, "क".repeat(200)).length).toBeLessThan(64);
  });

  it("refuse a cursor made for another keyword", () => {
    const cursor = encodeCursor(40, "apple");
    expect(decodeCursor(cursor, "apples")).toBeNull();
    expect(decodeCursor(cursor, "apple pie")).toBeNull();
    expect(decodeCursor(cursor, "")).toBeNull();
    expect(decodeCursor(encodeCursor(40, ""), "apple")).toBeNull();
  });

  it("refuse tampered cursors", () => {
    const cursor = encodeCursor(40, "apple");
    const body = JSON.parse(Buffer.from(cursor, "base64url").toString("utf8")) as {
      a: number;
      h: string;
    };
    const reencode = (value: unknown) =>
      Buffer.from(JSON.stringify(value), "utf8").toString("base64url");
    expect(decodeCursor(reencode(body), "apple")).toBe(40);
    expect(decodeCursor(reencode({ ...body, a: 41 }), "apple")).toBeNull();
    expect(decodeCursor(reencode({ ...body, a: "40" }), "apple")).toBeNull();
    expect(decodeCursor(reencode({ ...body, a: 40.5 }), "apple")).toBeNull();
    expect(decodeCursor(reencode({ ...body, a: -40 }), "apple")).toBeNull();
    expect(decodeCursor(reencode({ ...body, extra: 1 }), "apple")).toBeNull();
    expect(decodeCursor(reencode({ a: 40 }), "apple")).toBeNull();
    expect(decodeCursor(reencode([40, body.h]), "apple")).toBeNull();
    // Every single-character change of the text is refused.
    const alphabet = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";
    for (let i = 0; i < cursor.length; i++) {
      for (const c of "Aa0_") {
        const changed =
          cursor.slice(0, i) + (cursor[i] === c ? alphabet[1] : c) + cursor.slice(i + 1);
        expect(decodeCursor(changed, "apple")).toBeNull();
      }
    }
  });

  it.each([
    "",
    "garbage",
    "!!!!",
    "eyJhIjo0MH0",
    "e30",
    "bnVsbA",
    "x".repeat(129),
    "eyJhIjo0MCwiaCI6IngifQ==",
  ])("refuse garbage %j", (cursor) => {
    expect(decodeCursor(cursor, "apple")).toBeNull();
  });

  it("throws on a bug: a bad ordinal to encode", () => {
    expect(() => encodeCursor(-1, "apple")).toThrow();
    expect(() => encodeCursor(1.5, "apple")).toThrow();
  });
});
