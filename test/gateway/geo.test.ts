import { describe, expect, it } from "vitest";
import {
  distanceKm,
  formatLatitude,
  formatLongitude,
  parseLatitude,
  parseLongitude,
} from "../../src/gateway/geo.ts";

describe("parseLatitude", () => {
  it.each([
    ["12.8576° N", 12.8576],
    ["12.8576° S", -12.8576],
    ["12.8576°N", 12.8576],
    ["12.8576 N", 12.8576],
    ["12.8576N", 12.8576],
    ["12.8576 ° n", 12.8576],
    ["  12.8576° s\t", -12.8576],
    ["90° N", 90],
    ["90 S", -90],
    ["0° N", 0],
    ["12.8576", 12.8576],
    ["-33.9", -33.9],
    [" -33.9 ", -33.9],
    ["0", 0],
    ["90", 90],
    ["-90", -90],
    ["12.1234567890123", 12.1234567890123],
    [12.8576, 12.8576],
    [-33.9, -33.9],
    [90, 90],
    [0, 0],
  ])("accepts %j", (input, degrees) => {
    expect(parseLatitude(input)).toBe(degrees);
  });

  it.each([
    "-12 S",
    "-12° N",
    "+12",
    "12.5 E",
    "12.5 W",
    "90.5",
    "-90.1",
    "91° N",
    "12,5",
    "0x10",
    "1e1",
    "12.",
    ".5",
    "",
    "   ",
    "N",
    "12.5 N.",
    "12.5 N foo",
    "12.5 NN",
    "12.5°",
    "twelve",
    "NaN",
    "Infinity",
    "12 ° ° N",
    "1".repeat(65),
  ])("rejects %j", (input) => {
    expect(parseLatitude(input)).toBeNull();
  });

  it.each([
    Number.NaN,
    Number.POSITIVE_INFINITY,
    Number.NEGATIVE_INFINITY,
    90.0001,
    -91,
    null,
    undefined,
    true,
    {},
    [12],
    12n,
  ])("rejects %s", (input) => {
    expect(parseLatitude(input)).toBeNull();
  });

  it("returns -0 as 0", () => {
    expect(Object.is(parseLatitude("0° S"), 0)).toBe(true);
    expect(Object.is(parseLatitude("-0"), 0)).toBe(true);
    expect(Object.is(parseLatitude(-0), 0)).toBe(true);
    expect(Object.is(parseLatitude("0.000 S"), 0)).toBe(true);
  });
});

describe("parseLongitude", () => {
  it.each([
    ["77.7864° E", 77.7864],
    ["77.7864° W", -77.7864],
    ["77.7864 e", 77.7864],
    ["77.7864w", -77.7864],
    ["180° E", 180],
    ["180 W", -180],
    ["-179.5", -179.5],
    ["120", 120],
    [-180, -180],
  ])("accepts %j", (input, degrees) => {
    expect(parseLongitude(input)).toBe(degrees);
  });

  it.each(["77.7864° N", "77.7864° S", "-77 W", "180.0001", "181° E", "1e2", "77,7", ""])(
    "rejects %j",
    (input) => {
      expect(parseLongitude(input)).toBeNull();
    },
  );

  it("rejects non-finite and out-of-range numbers", () => {
    expect(parseLongitude(Number.NaN)).toBeNull();
    expect(parseLongitude(180.5)).toBeNull();
    expect(parseLongitude(-Number.MAX_VALUE)).toBeNull();
  });
});

describe("formatLatitude / formatLongitude", () => {
  it("writes the seed's format with at most 6 decimals and no trailing zeros", () => {
    expect(formatLatitude(12.8576)).toBe("12.8576° N");
    expect(formatLatitude(-33.9)).toBe("33.9° S");
    expect(formatLatitude(90)).toBe("90° N");
    expect(formatLatitude(-90)).toBe("90° S");
    expect(formatLatitude(0)).toBe("0° N");
    expect(formatLatitude(12.123456789)).toBe("12.123457° N");
    expect(formatLatitude(10.5000001)).toBe("10.5° N");
    expect(formatLongitude(77.7864)).toBe("77.7864° E");
    expect(formatLongitude(-122.4194)).toBe("122.4194° W");
    expect(formatLongitude(180)).toBe("180° E");
    expect(formatLongitude(100)).toBe("100° E");
  });

  it("never writes a southern or western zero", () => {
    expect(formatLatitude(-0)).toBe("0° N");
    expect(formatLatitude(-0.0000001)).toBe("0° N");
    expect(formatLongitude(-0.0000004)).toBe("0° E");
  });

  it("round-trips through the parser", () => {
    for (const lat of [12.8576, -33.9, 0, 89.999999, -0.5]) {
      expect(parseLatitude(formatLatitude(lat))).toBe(lat);
    }
    for (const long of [77.7864, -122.4194, 180, -179.000001]) {
      expect(parseLongitude(formatLongitude(long))).toBe(long);
    }
  });

  it("throws on a value that is not a coordinate (a bug, not input)", () => {
    expect(() => formatLatitude(91)).toThrow();
    expect(() => formatLongitude(Number.NaN)).toThrow();
  });
});

describe("distanceKm", () => {
  const bengaluru = { latitude: 12.9716, longitude: 77.5946 };
  const mumbai = { latitude: 19.076, longitude: 72.8777 };

  it("is zero for the same place", () => {
    expect(distanceKm(bengaluru, bengaluru)).toBe(0);
  });

  it("is symmetric and matches a known distance", () => {
    const d = distanceKm(bengaluru, mumbai);
    expect(d).toBeCloseTo(distanceKm(mumbai, bengaluru), 9);
    // Great-circle Bengaluru-Mumbai on a 6371 km sphere: about 845 km.
    expect(d).toBeGreaterThan(835);
    expect(d).toBeLessThan(855);
  });

  it("is a quarter circumference from the equator to a pole", () => {
    expect(distanceKm({ latitude: 0, longitude: 0 }, { latitude: 90, longitude: 0 })).toBeCloseTo(
      (Math.PI * 6371) / 2,
      6,
    );
  });

  it("is half the circumference between antipodes, never NaN", () => {
    const d = distanceKm({ latitude: 10, longitude: 20 }, { latitude: -10, longitude: -160 });
    // Haversine is ill-conditioned here: good to a metre, not to a millimetre.
    expect(d).toBeCloseTo(Math.PI * 6371, 3);
  });

  it("crosses the antimeridian the short way", () => {
    const d = distanceKm({ latitude: 0, longitude: 179.5 }, { latitude: 0, longitude: -179.5 });
    expect(d).toBeCloseTo((Math.PI * 6371) / 180, 6);
  });
});
