import fc from "fast-check";
import { describe, expect, it } from "vitest";
import {
  currencyDigits,
  lineTotalMinor,
  type MoneyError,
  parseTaxRate,
  priceMinorUnitsMax,
  taxMinor,
  toMajorUnits,
  toMinorUnits,
} from "../../src/gateway/money.ts";

function errorOf(result: number | MoneyError): MoneyError {
  if (typeof result === "number") throw new Error(`expected an error, got ${result}`);
  return result;
}

describe("currencyDigits", () => {
  it.each([
    ["INR", 2],
    ["USD", 2],
    ["JPY", 0],
    ["KWD", 3],
  ])("%s has %i", (code, digits) => {
    expect(currencyDigits(code)).toBe(digits);
    expect(currencyDigits(code)).toBe(digits); // cached
  });

  it.each(["inr", "Inr", "IN", "INRR", "", " INR", "I1R", "ZZZ", "XYZ", "XXX", "€"])(
    "refuses %j",
    (code) => {
      expect(currencyDigits(code)).toBeNull();
    },
  );
});

describe("toMinorUnits", () => {
  it.each([
    [119000, "INR", 11900000],
    [119000.5, "INR", 11900050],
    [0.1, "INR", 10],
    [0.29, "INR", 29],
    [1.005, "KWD", 1005],
    [0.01, "USD", 1],
    [4.35, "USD", 435],
    [1e3, "JPY", 1000],
    [500, "JPY", 500],
    [1e11, "INR", 1e13],
  ])("%d %s is %i minor units", (major, currency, minor) => {
    expect(toMinorUnits(major, currency)).toBe(minor);
  });

  it("decides decimals from the number's digits, not float multiplication", () => {
    // 0.29 * 100 is 28.999999999999996 in floats.
    expect(0.29 * 100).not.toBe(29);
    expect(toMinorUnits(0.29, "INR")).toBe(29);
    expect(toMinorUnits(1.13, "INR")).toBe(113);
    expect(toMinorUnits(9007199254.74, "INR")).toBe(900719925474);
  });

  it("names the decimals the currency allows", () => {
    expect(errorOf(toMinorUnits(119000.505, "INR"))).toEqual({
      ok: false,
      code: "INVALID_ARGUMENT",
      message: "price must have at most 2 decimals for INR",
    });
    expect(errorOf(toMinorUnits(1.0001, "KWD")).message).toBe(
      "price must have at most 3 decimals for KWD",
    );
    expect(errorOf(toMinorUnits(100.5, "JPY")).message).toBe(
      "price must be a whole number for JPY",
    );
    // A sum that is not the decimal it looks like is refused, not rounded.
    expect(errorOf(toMinorUnits(0.1 + 0.2, "INR")).message).toContain("at most 2 decimals");
  });

  it("handles exponent forms exactly", () => {
    expect(String(1e-7)).toBe("1e-7");
    expect(errorOf(toMinorUnits(1e-7, "INR")).message).toContain("at most 2 decimals");
    expect(errorOf(toMinorUnits(1.5e-7, "KWD")).message).toContain("at most 3 decimals");
    expect(errorOf(toMinorUnits(1e21, "INR")).message).toBe(
      "price must be at most 100000000000 INR",
    );
    expect(errorOf(toMinorUnits(1.5e300, "JPY")).message).toContain("at most");
  });

  it("bounds the result at priceMinorUnitsMax", () => {
    expect(toMinorUnits(priceMinorUnitsMax / 100, "INR")).toBe(priceMinorUnitsMax);
    expect(typeof toMinorUnits(priceMinorUnitsMax / 100 + 0.01, "INR")).toBe("object");
    expect(toMinorUnits(priceMinorUnitsMax, "JPY")).toBe(priceMinorUnitsMax);
    expect(typeof toMinorUnits(priceMinorUnitsMax + 1, "JPY")).toBe("object");
    expect(toMinorUnits(priceMinorUnitsMax / 1000, "KWD")).toBe(priceMinorUnitsMax);
  });

  it.each([
    [0, "price must be greater than 0"],
    [-0, "price must be greater than 0"],
    [-5, "price must be greater than 0"],
    [Number.NaN, "price must be a finite number"],
    [Number.POSITIVE_INFINITY, "price must be a finite number"],
    ["100", "price must be a number"],
    [null, "price must be a number"],
    [undefined, "price must be a number"],
    [100n, "price must be a number"],
  ])("refuses %s", (major, message) => {
    expect(errorOf(toMinorUnits(major, "INR")).message).toBe(message);
  });

  it("refuses an unknown currency", () => {
    expect(errorOf(toMinorUnits(10, "ABC")).message).toBe("currency ABC is not an ISO 4217 code");
    expect(errorOf(toMinorUnits(10, "inr")).code).toBe("INVALID_ARGUMENT");
  });

  it("round-trips every minor amount through major units (property)", () => {
    fc.assert(
      fc.property(
        fc.oneof(
          fc.integer({ min: 1, max: priceMinorUnitsMax }),
          fc.constantFrom(1, 9, 10, 99, 100, 101, priceMinorUnitsMax - 1, priceMinorUnitsMax),
        ),
        fc.constantFrom("INR", "JPY", "KWD", "USD"),
        (minor, currency) => {
          const major = toMajorUnits(minor, currency);
          // What JSON carries is the shortest decimal of the double.
          expect(toMinorUnits(JSON.parse(JSON.stringify(major)), currency)).toBe(minor);
        },
      ),
    );
  });
});

describe("toMajorUnits", () => {
  it.each([
    [11900050, "INR", 119000.5],
    [11900000, "INR", 119000],
    [29, "INR", 0.29],
    [5, "INR", 0.05],
    [0, "INR", 0],
    [1005, "KWD", 1.005],
    [1, "KWD", 0.001],
    [500, "JPY", 500],
    [-250, "USD", -2.5],
  ])("%i %s is %d", (minor, currency, major) => {
    expect(toMajorUnits(minor, currency)).toBe(major);
  });

  it("writes the exact decimal in JSON", () => {
    expect(JSON.stringify(toMajorUnits(900719925474, "INR"))).toBe("9007199254.74");
    expect(JSON.stringify(toMajorUnits(28999, "INR"))).toBe("289.99");
  });

  it("throws on a bug: unknown currency or non-integer minor units", () => {
    expect(() => toMajorUnits(100, "XYZ")).toThrow();
    expect(() => toMajorUnits(1.5, "INR")).toThrow();
  });
});

describe("lineTotalMinor", () => {
  it("multiplies", () => {
    expect(lineTotalMinor(3, 11900050)).toBe(35700150);
    expect(lineTotalMinor(0, 11900050)).toBe(0);
    expect(lineTotalMinor(1_000_000_000, 9_007_199)).toBe(9_007_199_000_000_000);
  });

  it("refuses a product above 2^53 - 1", () => {
    const e = errorOf(lineTotalMinor(1_000_000_000, priceMinorUnitsMax));
    expect(e.code).toBe("INVALID_ARGUMENT");
    expect(e.message).toContain("exceeds 9007199254740991 minor units");
    expect(typeof lineTotalMinor(1, Number.MAX_SAFE_INTEGER)).toBe("number");
    expect(typeof lineTotalMinor(2, 2 ** 52)).toBe("object");
    // 3 x 3002399751580331 = 9007199254740993: above the limit, and its
    // double rounds to 2^53, still above.
    expect(typeof lineTotalMinor(3, 3002399751580331)).toBe("object");
  });

  it("throws on a bug: negative or fractional inputs", () => {
    expect(() => lineTotalMinor(-1, 100)).toThrow();
    expect(() => lineTotalMinor(1.5, 100)).toThrow();
  });
});

describe("taxMinor", () => {
  it("rounds half up to the minor unit", () => {
    expect(taxMinor(10000, 1800)).toBe(1800);
    expect(taxMinor(11900050, 1800)).toBe(2142009);
    expect(taxMinor(25, 1800)).toBe(5); // 4.5 -> 5
    expect(taxMinor(24, 1800)).toBe(4); // 4.32 -> 4
    expect(taxMinor(1, 5000)).toBe(1); // 0.5 -> 1
    expect(taxMinor(1, 4999)).toBe(0);
    expect(taxMinor(0, 1800)).toBe(0);
    expect(taxMinor(12345, 0)).toBe(0);
    expect(taxMinor(12345, 10000)).toBe(12345);
  });

  it("is exact for subtotals whose product with the rate passes 2^53", () => {
    const subtotal = Number.MAX_SAFE_INTEGER;
    // 9007199254740991 x 0.18 = 1621295865853378.38
    expect(taxMinor(subtotal, 1800)).toBe(1621295865853378);
    // 9007199254740991 x 0.0725 = 653021945968721.8475
    expect(taxMinor(subtotal, 725)).toBe(653021945968722);
  });

  it("agrees with integer arithmetic where that is exact (property)", () => {
    fc.assert(
      fc.property(
        fc.integer({ min: 0, max: 2 ** 39 }),
        fc.integer({ min: 0, max: 10000 }),
        (subtotal, rate) => {
          expect(taxMinor(subtotal, rate)).toBe(Math.floor((subtotal * rate + 5000) / 10000));
        },
      ),
    );
  });

  it("throws on a bug: bad rate or subtotal", () => {
    expect(() => taxMinor(100, -1)).toThrow();
    expect(() => taxMinor(100, 10001)).toThrow();
    expect(() => taxMinor(100, 18.5)).toThrow();
    expect(() => taxMinor(-1, 1800)).toThrow();
  });
});

describe("parseTaxRate", () => {
  it.each([
    ["18", 1800],
    ["18%", 1800],
    ["7.25%", 725],
    ["7.5", 750],
    ["0", 0],
    ["0%", 0],
    ["0.01%", 1],
    ["100", 10000],
    ["100.00%", 10000],
    [" 18% ", 1800],
  ])("%j is %i basis points", (text, basisPoints) => {
    expect(parseTaxRate(text)).toBe(basisPoints);
  });

  it.each([
    "-5",
    "-0",
    "100.01",
    "101%",
    "1000",
    "7.255",
    "7.",
    ".5",
    "",
    "%",
    "18%%",
    "18 %",
    "eighteen",
    "1e1",
    "0x12",
    "18,5",
    "+18",
  ])("refuses %j", (text) => {
    expect(parseTaxRate(text)).toBeNull();
  });
});
