import assert from "node:assert/strict";

// Coordinates in and out of the gateway. Clients send them in the seed's
// format ("12.8576° N", "77.7864° E") or as plain decimal degrees (a string
// or a JSON number); inside they are signed decimal degrees, north and east
// positive. Expected bad input answers null (the caller names the field);
// only a bug (formatting a value that never passed the parser) throws.

/** Latitude bound in degrees: the poles. */
export const latitudeDegreesMax = 90;

/** Longitude bound in degrees: the antimeridian. */
export const longitudeDegreesMax = 180;

/** Characters in a coordinate string after trimming: "-179.1234567890123456° W"
 * is 25; anything much longer is not a coordinate, and the bound keeps the
 * parse cheap whatever a client sends. */
export const coordinateTextLengthMax = 64;

/** Decimals written back to clients: 10^-6 degree is 11 cm on the ground,
 * finer than any warehouse address. */
export const coordinateDecimalsMax = 6;

/** Mean Earth radius (IUGG), the usual constant for haversine distances. */
export const earthRadiusKm = 6371;

export interface Coordinates {
  latitude: number;
  longitude: number;
}

const Axis = {
  Latitude: { degreesMax: latitudeDegreesMax, positive: "N", negative: "S" },
  Longitude: { degreesMax: longitudeDegreesMax, positive: "E", negative: "W" },
} as const;
type Axis = (typeof Axis)[keyof typeof Axis];

// Plain decimals only: no exponent, no hex, no comma, no leading "+", "." or
// trailing ".". A hemisphere letter carries the sign, so it takes no "-".
const plainDegrees = /^-?\d+(?:\.\d+)?$/;
const hemisphereDegrees = /^(\d+(?:\.\d+)?)\s*(?:°\s*)?([NSEWnsew])$/;

/** Latitude in signed decimal degrees (north positive), or null. */
export function parseLatitude(input: unknown): number | null {
  return parseCoordinate(input, Axis.Latitude);
}

/** Longitude in signed decimal degrees (east positive), or null. */
export function parseLongitude(input: unknown): number | null {
  return parseCoordinate(input, Axis.Longitude);
}

function parseCoordinate(input: unknown, axis: Axis): number | null {
  let degrees: number;
  if (typeof input === "number") {
    degrees = input;
  } else if (typeof input === "string") {
    const text = input.trim();
    if (text.length > coordinateTextLengthMax) return null;
    if (plainDegrees.test(text)) {
      degrees = Number(text);
    } else {
      const match = hemisphereDegrees.exec(text);
      if (match === null) return null;
      const letter = match[2]!.toUpperCase();
      if (letter !== axis.positive && letter !== axis.negative) return null;
      degrees = letter === axis.negative ? -Number(match[1]) : Number(match[1]);
    }
  } else {
    return null;
  }
  if (!Number.isFinite(degrees) || Math.abs(degrees) > axis.degreesMax) return null;
  // -0 ("0 S", "-0") is stored and compared as 0.
  return degrees === 0 ? 0 : degrees;
}

/** "12.8576° N": the seed's format, at most 6 decimals, no trailing zeros. */
export function formatLatitude(degrees: number): string {
  return formatCoordinate(degrees, Axis.Latitude);
}

/** "77.7864° E": the seed's format, at most 6 decimals, no trailing zeros. */
export function formatLongitude(degrees: number): string {
  return formatCoordinate(degrees, Axis.Longitude);
}

function formatCoordinate(degrees: number, axis: Axis): string {
  assert(
    Number.isFinite(degrees) && Math.abs(degrees) <= axis.degreesMax,
    `geo: ${degrees} is not a coordinate within ±${axis.degreesMax}`,
  );
  const text = trimZeros(Math.abs(degrees).toFixed(coordinateDecimalsMax));
  // A value that rounds to 0 is "0° N", never "0° S".
  const letter = degrees < 0 && text !== "0" ? axis.negative : axis.positive;
  return `${text}° ${letter}`;
}

function trimZeros(fixed: string): string {
  return fixed.includes(".") ? fixed.replace(/\.?0+$/, "") : fixed;
}

/** Great-circle distance (haversine) on a sphere of radius `earthRadiusKm`. */
export function distanceKm(a: Coordinates, b: Coordinates): number {
  const radiansPerDegree = Math.PI / 180;
  const lat1 = a.latitude * radiansPerDegree;
  const lat2 = b.latitude * radiansPerDegree;
  const dLat = lat2 - lat1;
  const dLong = (b.longitude - a.longitude) * radiansPerDegree;
  const h = Math.sin(dLat / 2) ** 2 + Math.cos(lat1) * Math.cos(lat2) * Math.sin(dLong / 2) ** 2;
  // Rounding can push h a hair above 1 for antipodal points; asin would be NaN.
  return 2 * earthRadiusKm * Math.asin(Math.sqrt(Math.min(1, h)));
}
